import csv
import json
import statistics

import pytest

import pyg_mentor.train
from pyg_mentor.cli import main
from pyg_mentor.compare import (
    METRICS,
    compare,
    load_run_record,
    parse_model_assignments,
    plot_report,
)
from pyg_mentor.datasets.synthetic import make_planted


@pytest.fixture(scope='module')
def data():
    return make_planted(num_users=200, num_items=80, seed=1)


def run_compare(data, tmp_path, **kwargs):
    args = dict(dataset='tiny', models=['mf_bpr', 'lightgcn'], seeds=2,
                runs_dir=tmp_path / 'runs', out_dir=tmp_path / 'out',
                options={'epochs': 2}, grid=False, data=data)
    args.update(kwargs)
    return compare(**args)


def test_compare_aggregates_and_resumes(data, tmp_path, monkeypatch):
    # mf_bpr gets a 2-point grid: searched on the first seed only.
    report = run_compare(data, tmp_path,
                         model_options={'mf_bpr': {'reg_weight': [1e-3, 1e-4]}})
    assert report['seeds'] == [999, 1000]
    runs = {}
    for model in ('mf_bpr', 'lightgcn'):
        for seed in (999, 1000):
            path = tmp_path / 'runs' / model / f'seed-{seed}' / 'metrics.json'
            runs[model, seed] = json.loads(path.read_text())
            assert runs[model, seed]['train_config']['seed'] == seed
            assert runs[model, seed]['epochs_run'] == 2

    # The grid ran on seed 999 only; its winner was reused on seed 1000.
    first, second = runs['mf_bpr', 999], runs['mf_bpr', 1000]
    assert len(first['trials']) == 2 and 'trials' not in second
    assert second['model_kwargs']['reg_weight'] == first['varied']['reg_weight']

    entries = {e['model']: e for e in report['models']}
    saved = json.loads((tmp_path / 'out' / 'compare_tiny.json').read_text())
    assert [e['model'] for e in saved['models']] == ['mf_bpr', 'lightgcn']
    for model in ('mf_bpr', 'lightgcn'):
        summary = entries[model]['summary']
        assert summary['runs'] == 2
        for metric in METRICS:
            values = [runs[model, s]['test'][metric] for s in (999, 1000)]
            assert summary[metric]['mean'] == pytest.approx(statistics.fmean(values))
            assert summary[metric]['std'] == pytest.approx(statistics.stdev(values))
        spe = [runs[model, s]['seconds_per_epoch'] for s in (999, 1000)]
        assert summary['seconds_per_epoch']['mean'] == pytest.approx(statistics.fmean(spe))

    text = (tmp_path / 'out' / 'compare_tiny.md').read_text()
    rows = [line for line in text.splitlines() if line.startswith('| mf_bpr | 2 |')]
    assert len(rows) == 1
    mean = entries['mf_bpr']['summary']['recall@20']
    assert f"{mean['mean']:.4f} ± {mean['std']:.4f}" in rows[0]
    assert 'max_epochs=2 (capped!) x2' in rows[0]
    # One summary row and one row per run.
    assert sum(line.startswith('| lightgcn | ') for line in text.splitlines()) == 1 + 2
    assert 'pyg-mentor' not in text.splitlines()[2]  # A library call: no command.
    assert 'No paper numbers' in text
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert 'plot' not in report
    else:
        png = tmp_path / 'out' / 'compare_tiny.png'
        assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
        assert '![R@20 and N@20](compare_tiny.png)' in text

    # Rerunning skips every finished run.
    def fail(*args, **kwargs):
        raise AssertionError('a finished run was trained again')

    monkeypatch.setattr(pyg_mentor.train, 'train_model', fail)
    again = run_compare(data, tmp_path,
                        model_options={'mf_bpr': {'reg_weight': [1e-3, 1e-4]}})
    assert again['models'][0]['summary'] == report['models'][0]['summary']
    monkeypatch.undo()

    # An interrupted run (no metrics.json yet) is resumed from last.pt, exactly.
    lost = tmp_path / 'runs' / 'lightgcn' / 'seed-1000' / 'metrics.json'
    lost.unlink()
    calls = []
    train_model = pyg_mentor.train.train_model

    def spy(*args, **kwargs):
        calls.append(kwargs['resume'])
        return train_model(*args, **kwargs)

    monkeypatch.setattr(pyg_mentor.train, 'train_model', spy)
    resumed = run_compare(data, tmp_path, models=['lightgcn'])
    assert calls == [True]
    assert json.loads(lost.read_text())['test'] == runs['lightgcn', 1000]['test']
    assert resumed['models'][0]['summary'] == entries['lightgcn']['summary']

    # A higher epoch cap continues the capped runs; other changes are refused.
    longer = run_compare(data, tmp_path, models=['lightgcn'], options={'epochs': 3})
    assert [r['epochs_run'] for r in longer['models'][0]['runs']] == [3, 3]
    with pytest.raises(ValueError, match='other settings'):
        run_compare(data, tmp_path, models=['lightgcn'],
                    options={'epochs': 3, 'lr': 0.01})


def test_unknown_model_lists_the_registered_ones(data, tmp_path, capsys):
    with pytest.raises(KeyError, match="available: .*'lightgcn'"):
        run_compare(data, tmp_path, models=['mf_bpr', 'nope'])
    assert not (tmp_path / 'runs').exists()  # Checked before any training.
    assert main(['compare', '--dataset', 'synthetic', '--models', 'lightgcn,nope',
                 '--out', str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Unknown model(s) ['nope']" in err and 'mf_bpr' in err


def test_set_per_model():
    common, per_model = parse_model_assignments(
        ['epochs=5', 'mentor:epochs=10', 'mentor:cl_weight=[1e-4,1e-3]'],
        ['mentor', 'lightgcn'])
    assert common == {'epochs': 5}
    assert per_model == {'mentor': {'epochs': 10, 'cl_weight': [1e-4, 1e-3]}}
    with pytest.raises(ValueError, match="'vbpr', which is not compared"):
        parse_model_assignments(['vbpr:epochs=1'], ['mentor'])


def write_partial_run(path, rows, dataset='baby'):
    path.mkdir(parents=True)
    (path / 'run.json').write_text(json.dumps({
        'model': 'lightgcn', 'dataset': dataset, 'surrogate_features': None,
        'options': {'epochs': 1000, 'num_layers': 4}}))
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(path / 'log.csv', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def test_import_partial_run_beside_the_paper(data, tmp_path):
    test = {f'test/{m}': 0.01 * (i + 1) for i, m in enumerate(METRICS)}
    rows = [
        {'epoch': 0, 'train_seconds': 2.0, 'valid/recall@20': 0.05, **test},
        # 0.05004 rounds to 0.0500: not an improvement, as in the trainer.
        {'epoch': 1, 'train_seconds': 4.0, 'valid/recall@20': 0.05004},
        {'epoch': 2, 'train_seconds': 3.0, 'valid/recall@20': 0.04},
    ]
    run = tmp_path / 'lgn'
    write_partial_run(run, rows)
    record = load_run_record(run)
    assert record.model == 'lightgcn' and record.status == 'partial'
    assert record.best_epoch == 0 and record.epochs_run == 3
    assert record.test == {m: 0.01 * (i + 1) for i, m in enumerate(METRICS)}
    assert record.seconds_per_epoch == pytest.approx(3.0)
    assert record.model_kwargs['num_layers'] == 4

    report = compare('baby', [], 1, out_dir=tmp_path / 'out', data=data,
                     imports=[('lightgcn', run)], plot=False)
    text = (tmp_path / 'out' / 'compare_baby.md').read_text()
    assert '| lightgcn | 1 (imported) |' in text
    beside = text.split('## Beside the paper')[1].split('##')[0]
    row = next(line for line in beside.splitlines() if line.startswith('| lightgcn'))
    assert '| 0.0200 | 0.0754 |' in row  # Ours R@20 beside the paper's.
    notes = report['models'][0]['notes']
    assert any('unfinished (3 epochs so far' in n for n in notes)
    assert any('interactions only' in n for n in notes)

    with pytest.raises(ValueError, match="not of 'mentor'"):
        load_run_record(run, 'mentor')
    other = tmp_path / 'other'
    write_partial_run(other, rows, dataset='sports')
    with pytest.raises(ValueError, match="run on 'sports'"):
        compare('baby', [], 1, out_dir=tmp_path / 'out', data=data,
                imports=[('lightgcn', other)], plot=False)


def test_plot_report(tmp_path):
    pytest.importorskip('matplotlib')
    summary = {m: {'mean': 0.05, 'std': 0.001} for m in METRICS}
    report = {'dataset': 'baby', 'models': [
        {'model': 'lightgcn', 'imported': False, 'summary': summary,
         'paper': [.0479, .0754, .0257, .0328]},
        {'model': 'tiny', 'imported': True, 'paper': None,
         'summary': {m: {'mean': 0.02, 'std': float('nan')} for m in METRICS}},
    ]}
    path = plot_report(report, tmp_path / 'chart.png')
    assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_higher_cap_continues_grid_trials(data, tmp_path):
    grid = {'mf_bpr': {'reg_weight': [1e-3, 1e-4]}}
    run_compare(data, tmp_path, models=['mf_bpr'], seeds=1, model_options=grid)
    report = run_compare(data, tmp_path, models=['mf_bpr'], seeds=1,
                         model_options=grid, options={'epochs': 3})
    metrics = json.loads((tmp_path / 'runs' / 'mf_bpr' / 'seed-999' /
                          'metrics.json').read_text())
    assert report['models'][0]['runs'][0]['epochs_run'] == 3
    for trial in ('000', '001'):
        log = (tmp_path / 'runs' / 'mf_bpr' / 'seed-999' / 'trials' / trial /
               'log.csv').read_text().strip().splitlines()
        assert len(log) == 1 + 3  # Header and three epochs, none twice.
    assert len(metrics['trials']) == 2


def test_cli_import_and_note(tmp_path, capsys):
    from pyg_mentor.datasets.synthetic import write_mmrec

    write_mmrec(make_planted(num_users=200, num_items=80, seed=1), tmp_path, 'baby')
    test = {f'test/{m}': 0.02 for m in METRICS}
    run = tmp_path / 'lgn'
    write_partial_run(run, [{'epoch': 0, 'train_seconds': 1.0,
                             'valid/recall@20': 0.05, **test}])
    argv = ['compare', '--dataset', 'baby', '--root', str(tmp_path), '--models',
            'lightgcn', '--import', f'lightgcn={run}', '--note',
            'lightgcn=num_layers=4 from an earlier grid', '--no-plot',
            '--out', str(tmp_path / 'out')]
    assert main(argv) == 0
    text = (tmp_path / 'out' / 'compare_baby.md').read_text()
    assert f'- Command: `pyg-mentor compare --dataset baby --root {tmp_path}' in text
    assert 'num_layers=4 from an earlier grid.' in text
    assert text in capsys.readouterr().out
    assert main(argv[:-2] + ['--note', 'nope=x', '--out', str(tmp_path)]) == 2
    assert "--note for 'nope'" in capsys.readouterr().err

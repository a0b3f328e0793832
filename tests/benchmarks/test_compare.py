import csv
import json
import statistics

import pytest

import pyg_mentor.train
from benchmarks.compare import (
    METRICS,
    compare,
    load_run_record,
    paper_table,
    parse_model_assignments,
    plot_report,
)
from pyg_mentor.cli import main
from pyg_mentor.datasets.synthetic import make_planted


@pytest.fixture(scope='module')
def data():
    return make_planted(num_users=200, num_items=80, seed=1)


def run_compare(data, tmp_path, **kwargs):
    args = dict(
        dataset='tiny',
        models=['mf_bpr', 'lightgcn'],
        seeds=2,
        runs_dir=tmp_path / 'runs',
        out_dir=tmp_path / 'out',
        options={'epochs': 2},
        grid=False,
        data=data,
    )
    args.update(kwargs)
    return compare(**args)


def test_compare_aggregates_and_resumes(data, tmp_path, monkeypatch):
    # mf_bpr gets a 2-point grid: searched on the first seed only.
    report = run_compare(data, tmp_path, model_options={'mf_bpr': {'reg_weight': [1e-3, 1e-4]}})
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
    assert f'{mean["mean"]:.4f} ± {mean["std"]:.4f}' in rows[0]
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
    again = run_compare(data, tmp_path, model_options={'mf_bpr': {'reg_weight': [1e-3, 1e-4]}})
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
        run_compare(data, tmp_path, models=['lightgcn'], options={'epochs': 3, 'lr': 0.01})


def test_unknown_model_lists_the_registered_ones(data, tmp_path, capsys):
    with pytest.raises(KeyError, match="available: .*'lightgcn'"):
        run_compare(data, tmp_path, models=['mf_bpr', 'nope'])
    assert not (tmp_path / 'runs').exists()  # Checked before any training.
    assert (
        main(
            [
                'compare',
                '--dataset',
                'synthetic',
                '--models',
                'lightgcn,nope',
                '--out',
                str(tmp_path),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "Unknown model(s) ['nope']" in err and 'mf_bpr' in err


def test_set_per_model():
    common, per_model = parse_model_assignments(
        ['epochs=5', 'mentor:epochs=10', 'mentor:cl_weight=[1e-4,1e-3]'], ['mentor', 'lightgcn']
    )
    assert common == {'epochs': 5}
    assert per_model == {'mentor': {'epochs': 10, 'cl_weight': [1e-4, 1e-3]}}
    with pytest.raises(ValueError, match="'vbpr', which is not compared"):
        parse_model_assignments(['vbpr:epochs=1'], ['mentor'])


def write_partial_run(path, rows, dataset='baby'):
    path.mkdir(parents=True)
    (path / 'run.json').write_text(
        json.dumps(
            {
                'model': 'lightgcn',
                'dataset': dataset,
                'surrogate_features': None,
                'options': {'epochs': 1000, 'num_layers': 4},
            }
        )
    )
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

    report = compare(
        'baby', [], 1, out_dir=tmp_path / 'out', data=data, imports=[('lightgcn', run)], plot=False
    )
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
        compare(
            'baby',
            [],
            1,
            out_dir=tmp_path / 'out',
            data=data,
            imports=[('lightgcn', other)],
            plot=False,
        )


def test_plot_report(tmp_path):
    pytest.importorskip('matplotlib')
    summary = {m: {'mean': 0.05, 'std': 0.001} for m in METRICS}
    report = {
        'dataset': 'baby',
        'models': [
            {
                'model': 'lightgcn',
                'imported': False,
                'summary': summary,
                'paper': [0.0479, 0.0754, 0.0257, 0.0328],
            },
            {
                'model': 'tiny',
                'imported': True,
                'paper': None,
                'summary': {m: {'mean': 0.02, 'std': float('nan')} for m in METRICS},
            },
        ],
    }
    path = plot_report(report, tmp_path / 'chart.png')
    assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_higher_cap_continues_grid_trials(data, tmp_path):
    grid = {'mf_bpr': {'reg_weight': [1e-3, 1e-4]}}
    run_compare(data, tmp_path, models=['mf_bpr'], seeds=1, model_options=grid)
    report = run_compare(
        data, tmp_path, models=['mf_bpr'], seeds=1, model_options=grid, options={'epochs': 3}
    )
    metrics = json.loads((tmp_path / 'runs' / 'mf_bpr' / 'seed-999' / 'metrics.json').read_text())
    assert report['models'][0]['runs'][0]['epochs_run'] == 3
    for trial in ('000', '001'):
        log = (
            (tmp_path / 'runs' / 'mf_bpr' / 'seed-999' / 'trials' / trial / 'log.csv')
            .read_text()
            .strip()
            .splitlines()
        )
        assert len(log) == 1 + 3  # Header and three epochs, none twice.
    assert len(metrics['trials']) == 2


def test_cli_import_and_note(tmp_path, capsys):
    from pyg_mentor.datasets.synthetic import write_mmrec

    write_mmrec(make_planted(num_users=200, num_items=80, seed=1), tmp_path, 'baby')
    test = {f'test/{m}': 0.02 for m in METRICS}
    run = tmp_path / 'lgn'
    write_partial_run(run, [{'epoch': 0, 'train_seconds': 1.0, 'valid/recall@20': 0.05, **test}])
    argv = [
        'compare',
        '--dataset',
        'baby',
        '--root',
        str(tmp_path),
        '--models',
        'lightgcn',
        '--import',
        f'lightgcn={run}',
        '--note',
        'lightgcn=num_layers=4 from an earlier grid',
        '--no-plot',
        '--out',
        str(tmp_path / 'out'),
    ]
    assert main(argv) == 0
    text = (tmp_path / 'out' / 'compare_baby.md').read_text()
    assert f'- Command: `pyg-mentor compare --dataset baby --root {tmp_path}' in text
    assert 'num_layers=4 from an earlier grid.' in text
    assert text in capsys.readouterr().out
    assert main(argv[:-2] + ['--note', 'nope=x', '--out', str(tmp_path)]) == 2
    assert "--note for 'nope'" in capsys.readouterr().err


def test_report_says_what_the_runs_recorded(data, tmp_path):
    # Patience as each run recorded it (no literal); a label with its own options.
    report = run_compare(
        data,
        tmp_path,
        models=['lightgcn', 'lgn_deep=lightgcn'],
        seeds=1,
        model_options={'lgn_deep': {'num_layers': 3, 'patience': 7}},
    )
    runs = {e['model']: e['runs'][0] for e in report['models']}
    assert runs['lgn_deep']['model_kwargs']['num_layers'] == 3
    assert runs['lgn_deep']['patience'] == 7 and runs['lightgcn']['patience'] == 20
    assert (tmp_path / 'runs' / 'lgn_deep' / 'seed-999' / 'metrics.json').exists()
    text = (tmp_path / 'out' / 'compare_tiny.md').read_text()
    protocol = next(line for line in text.splitlines() if line.startswith('- Protocol'))
    assert 'patience lightgcn 20, lgn_deep 7' in protocol
    assert 'valid metric (recall@20)' in protocol
    assert 'patience 20' not in text.replace('patience lightgcn 20', '')

    same = run_compare(
        data, tmp_path / 'p', models=['lightgcn'], seeds=1, options={'epochs': 2, 'patience': 50}
    )
    assert same['models'][0]['runs'][0]['patience'] == 50
    protocol = next(
        line
        for line in (tmp_path / 'p' / 'out' / 'compare_tiny.md').read_text().splitlines()
        if line.startswith('- Protocol')
    )
    assert 'patience 50,' in protocol


def test_cap_note_names_the_registered_budget(data, tmp_path):
    from pyg_mentor.nn.models.base import get_model_spec

    report = run_compare(data, tmp_path, models=['mf_bpr'], seeds=1)
    budget = get_model_spec('mf_bpr').defaults.get('epochs', 1000)
    notes = ' '.join(report['models'][0]['notes'])
    assert f'the protocol trains up to {budget} epochs' in notes


def test_paper_numbers_come_from_the_data_file(data, tmp_path):
    table = paper_table()
    assert table['metrics'] == list(METRICS)
    assert 'MENTOR' in table['source'] and 'Table 2' in table['source']
    # Every model of the paper, on its three datasets, four metrics each.
    assert {d: len(m) for d, m in table['results'].items()} == {
        'baby': 9,
        'sports': 9,
        'clothing': 9,
    }
    assert table['results']['baby']['lightgcn'] == [0.0479, 0.0754, 0.0257, 0.0328]
    run = tmp_path / 'lgn'
    write_partial_run(
        run,
        [
            {
                'epoch': 0,
                'train_seconds': 1.0,
                'valid/recall@20': 0.05,
                **{f'test/{m}': 0.02 for m in METRICS},
            }
        ],
    )
    compare(
        'baby', [], 1, out_dir=tmp_path / 'out', data=data, imports=[('lightgcn', run)], plot=False
    )
    text = (tmp_path / 'out' / 'compare_baby.md').read_text()
    assert f'## Beside the paper ({table["source"]})' in text


def test_default_report_goes_beside_the_runs(data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    report = compare(
        'tiny', ['mf_bpr'], 1, options={'epochs': 1}, grid=False, data=data, plot=False
    )
    assert (tmp_path / 'runs' / 'compare-tiny' / 'compare_tiny.md').exists()
    assert report['meta']['runs_dir'] == 'runs/compare-tiny'


def test_rerun_with_the_same_models_skips_finished_runs(tmp_path, monkeypatch, capsys):
    # As the long comparisons are used: several processes over one --runs folder,
    # then one command over all models writes the report without training.
    from benchmarks.compare import main as compare_main

    args = [
        '--dataset',
        'synthetic',
        '--no-grid',
        '--seeds',
        '1',
        '--set',
        'epochs=1',
        '--runs',
        str(tmp_path / 'runs'),
        '--no-plot',
    ]
    assert compare_main(args + ['--models', 'mf_bpr', '--name', 'a']) == 0
    assert compare_main(args + ['--models', 'lightgcn', '--name', 'b']) == 0
    stamp = json.loads((tmp_path / 'runs' / 'mf_bpr' / 'seed-999' / 'compare.json').read_text())
    assert set(stamp) == {'model', 'dataset', 'data', 'options'}

    def fail(*args, **kwargs):
        raise AssertionError('a finished run was trained again')

    monkeypatch.setattr(pyg_mentor.train, 'train_model', fail)
    capsys.readouterr()
    assert compare_main(args + ['--models', 'mf_bpr,lightgcn']) == 0
    out = capsys.readouterr().out
    assert f'report: {tmp_path / "runs" / "compare_synthetic.md"}' in out
    assert '| mf_bpr | 1 |' in out and '| lightgcn | 1 |' in out
    assert '- Command: `python benchmarks/compare.py --dataset synthetic' in out


def test_report_only_reports_what_exists(data, tmp_path, monkeypatch):
    run_compare(data, tmp_path, models=['mf_bpr'])
    run_compare(data, tmp_path, models=['lightgcn'], seeds=1, options={'epochs': 3})
    # lightgcn seed 999 is interrupted (no metrics.json); seed 1000 never started.
    partial = tmp_path / 'runs' / 'lightgcn' / 'seed-999'
    (partial / 'metrics.json').unlink()
    with open(partial / 'log.csv', newline='') as f:
        log = list(csv.DictReader(f))
    # The trainer's rule, re-derived: first epoch with the best valid R@20 (4 decimals).
    best = max(log, key=lambda r: (round(float(r['valid/recall@20']), 4), -int(r['epoch'])))

    def fail(*args, **kwargs):
        raise AssertionError('report_only trained a model')

    monkeypatch.setattr(pyg_mentor.train, 'train_model', fail)
    report = run_compare(
        data,
        tmp_path,
        models=['mf_bpr', 'lightgcn', 'lgn_b=lightgcn'],
        model_options={'lightgcn': {'epochs': 3}, 'lgn_b': {'num_layers': 1}},
        report_only=True,
    )
    entries = {e['model']: e for e in report['models']}
    assert list(entries) == ['mf_bpr', 'lightgcn']  # lgn_b has no run: left out
    assert entries['mf_bpr']['summary']['runs'] == 2
    (run,) = entries['lightgcn']['runs']
    assert run['status'] == 'partial' and run['seed'] == 999
    assert run['best_epoch'] == int(best['epoch'])
    assert run['test']['recall@20'] == pytest.approx(float(best['test/recall@20']))
    text = (tmp_path / 'out' / 'compare_tiny.md').read_text()
    assert '**Report only**' in text and 'partial (unfinished)' in text
    assert any(n.startswith(f'run {partial} is unfinished') for n in entries['lightgcn']['notes'])
    assert report['compute_seconds'] > 0  # a partial run's missing eval time is not NaN


def test_report_names_the_modalities_of_an_ablation(data, tmp_path):
    report = run_compare(
        data,
        tmp_path,
        models=['vbpr', 'vbpr_text=vbpr'],
        seeds=1,
        model_options={'vbpr_text': {'modalities': 'text'}},
        plot=False,
    )
    runs = {e['model']: e['runs'][0] for e in report['models']}
    assert runs['vbpr']['modalities'] is None and runs['vbpr_text']['modalities'] == ['text']
    rows = {
        line.split(' | ')[0][2:]: line
        for line in (tmp_path / 'out' / 'compare_tiny.md').read_text().splitlines()
        if line.startswith('| vbpr')
    }
    assert 'modalities: text only' in rows['vbpr_text']
    assert 'modalities' not in rows['vbpr']


def test_unfinished_runs_stay_out_of_the_mean_of_finished_ones():
    from benchmarks.compare import RunRecord, aggregate

    def record(seed, status, r20):
        return RunRecord(
            model='mf_bpr', seed=seed, path='p', source='trained', status=status,
            best_epoch=5, epochs_run=6, epochs_cap=10, seconds_per_epoch=1.0,
            eval_seconds_per_epoch=0.1, test={m: r20 for m in METRICS},
        )  # fmt: skip

    done = [record(999, 'early_stopped', 0.4), record(1000, 'early_stopped', 0.5)]
    summary = aggregate([*done, record(1001, 'partial', 0.1)])
    assert summary['scored_runs'] == 2 and summary['partial_left_out'] == 1
    assert summary['recall@20']['mean'] == pytest.approx(0.45)
    assert summary['recall@20']['std'] == pytest.approx(statistics.stdev([0.4, 0.5]))
    # Only unfinished runs (e.g. one imported partial run): they are what there is.
    only = aggregate([record(1001, 'partial', 0.1)])
    assert only['scored_runs'] == 1 and only['partial_left_out'] == 0
    assert only['recall@20']['mean'] == pytest.approx(0.1)

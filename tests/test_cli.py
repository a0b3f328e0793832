import json

from pyg_mentor.cli import main
from pyg_mentor.datasets.synthetic import make_planted, write_mmrec


def test_train_and_evaluate_on_mmrec_files(tmp_path, capsys):
    write_mmrec(make_planted(num_users=200, num_items=80, seed=1), tmp_path, 'toy')
    out = tmp_path / 'run'
    code = main(
        [
            'train',
            '--model',
            'mf_bpr',
            '--dataset',
            'toy',
            '--root',
            str(tmp_path),
            '--out',
            str(out),
            '--set',
            'epochs=2',
            'progress=false',
            'batch_size=256',
        ]
    )
    assert code == 0
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['model'] == 'mf_bpr' and metrics['epochs_run'] == 2
    assert 0 <= metrics['best_epoch'] < 2
    assert 'recall@20' in metrics['valid'] and 'ndcg@10' in metrics['test']
    assert '| valid |' in capsys.readouterr().out

    assert main(['evaluate', '--run', str(out), '--split', 'test']) == 0
    printed = capsys.readouterr().out
    row = next(line for line in printed.splitlines() if line.startswith('| test |'))
    assert f'{metrics["test"]["recall@20"]:.4f}' in row

    assert main(['recommend', '--run', str(out), '--users', '0,3', '--k', '5']) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split('\t') == ['user', 'rank', 'item', 'score']
    rows = [line.split('\t') for line in lines[1:]]
    assert [r[0] for r in rows] == ['0'] * 5 + ['3'] * 5
    assert [r[1] for r in rows] == [str(i) for i in range(1, 6)] * 2
    data = make_planted(num_users=200, num_items=80, seed=1)
    train = data['user', 'rates', 'item'].edge_index
    for user in (0, 3):
        items = [int(r[2]) for r in rows if r[0] == str(user)]
        scores = [float(r[3]) for r in rows if r[0] == str(user)]
        assert len(set(items)) == 5 and scores == sorted(scores, reverse=True)
        seen = set(train[1, train[0] == user].tolist())
        assert not seen & set(items)  # Training items are never recommended.
    assert main(['recommend', '--run', str(out), '--users', '0,999']) == 2


def test_grid_from_config_file(tmp_path):
    config = tmp_path / 'grid.json'
    config.write_text(json.dumps({'reg_weight': [1e-4, 1e-3], 'epochs': 1, 'progress': False}))
    out = tmp_path / 'run'
    assert (
        main(
            [
                'train',
                '--model',
                'mf_bpr',
                '--dataset',
                'synthetic',
                '--out',
                str(out),
                '--config',
                str(config),
            ]
        )
        == 0
    )
    metrics = json.loads((out / 'metrics.json').read_text())
    assert len(metrics['trials']) == 2 and metrics['selected_on'] == 'valid'


def test_bad_input_gives_one_clear_line(tmp_path, capsys):
    assert main(['train', '--model', 'nope', '--dataset', 'synthetic']) == 2
    assert "Unknown model 'nope'" in capsys.readouterr().err
    assert (
        main(
            [
                'train',
                '--model',
                'mf_bpr',
                '--dataset',
                'missing',
                '--root',
                str(tmp_path),
                '--out',
                str(tmp_path / 'o'),
            ]
        )
        == 2
    )
    assert 'missing' in capsys.readouterr().err


def test_models_lists_registry(capsys):
    assert main(['models']) == 0
    out = capsys.readouterr().out
    assert 'lightgcn' in out and 'mf_bpr' in out

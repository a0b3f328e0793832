r"""Issue 14, case 3 (and issue 16's run folders): a run folder is one run."""

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pyg_mentor.cli import main
from pyg_mentor.datasets.synthetic import make_planted, write_mmrec

EXAMPLES = Path(__file__).resolve().parents[2] / 'examples'


def test_failed_command_leaves_run_json_untouched(toy, tmp_path, capsys, h):
    root, _ = toy
    write_mmrec(make_planted(num_users=90, num_items=50, seed=7), root, 'other')
    out = tmp_path / 'run'
    assert h.train(root, out) == 0
    before = (out / 'run.json').read_bytes()
    metrics = h.read_json(out / 'metrics.json')
    capsys.readouterr()
    for args in (['--resume'], ['--overwrite']):
        assert h.train(root, out, *args, dataset='other', sets=[*h.FAST, 'lr=abc']) == 2
        h.one_line_error(capsys, 'lr must be a float')
        assert (out / 'run.json').read_bytes() == before
    # So `evaluate` still scores the model on the data set it was trained on.
    assert main(['evaluate', '--run', str(out), '--split', 'test']) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith('| test |'))
    assert f'{metrics["test"]["recall@20"]:.4f}' in row


def test_evaluate_refuses_a_changed_dataset(toy, tmp_path, capsys, h):
    root, _ = toy
    out = tmp_path / 'run'
    assert h.train(root, out) == 0
    # Same users and items, another split: the model still loads, but the
    # metrics would be of another data set.
    path = root / 'toy' / 'toy.inter'
    lines = path.read_text().splitlines()
    i = next(i for i, line in enumerate(lines[1:], 1) if line.endswith('\t1'))
    lines[i] = lines[i][:-1] + '2'
    path.write_text('\n'.join(lines) + '\n')
    capsys.readouterr()
    assert main(['evaluate', '--run', str(out)]) == 2
    h.one_line_error(capsys, "dataset 'toy'", 'not the one this run was trained on')
    assert main(['recommend', '--run', str(out), '--users', '0']) == 2
    h.one_line_error(capsys, 'not the one this run was trained on')


def test_evaluate_refuses_changed_features(toy, tmp_path, capsys, h):
    root, _ = toy
    gen = np.random.default_rng(0)
    np.save(root / 'toy' / 'image_feat.npy', gen.standard_normal((60, 4)).astype('f4'))
    out = tmp_path / 'run'
    assert h.train(root, out) == 0
    capsys.readouterr()
    assert main(['evaluate', '--run', str(out)]) == 0  # Unchanged: fine.
    np.save(root / 'toy' / 'image_feat.npy', gen.standard_normal((60, 4)).astype('f4'))
    capsys.readouterr()
    assert main(['evaluate', '--run', str(out)]) == 2
    h.one_line_error(
        capsys, 'not the one this run was trained on (it differs in the values of item.x_image)'
    )


def test_resume_refuses_a_changed_model_option(toy, tmp_path, capsys, h):
    root, _ = toy
    out = tmp_path / 'run'
    assert h.train(root, out, model='lightgcn', sets=[*h.FAST, 'num_layers=2']) == 0
    capsys.readouterr()
    assert (
        h.train(root, out, '--resume', model='lightgcn', sets=[*h.FAST, 'num_layers=4', 'epochs=3'])
        == 2
    )
    h.one_line_error(capsys, '--resume refused', 'num_layers', '2 -> 4')
    assert h.read_json(out / 'metrics.json')['model_kwargs']['num_layers'] == 2
    # Other model, other data set content: refused too.
    assert h.train(root, out, '--resume', model='mf_bpr', sets=[*h.FAST, 'epochs=3']) == 2
    h.one_line_error(capsys, "model: 'lightgcn' -> 'mf_bpr'")


def test_resume_may_change_epochs_and_patience(toy, tmp_path, h):
    root, _ = toy
    out, whole = tmp_path / 'run', tmp_path / 'whole'
    sets = ['progress=false', 'tensorboard=false', 'batch_size=256']
    assert h.train(root, out, sets=[*sets, 'epochs=2', 'patience=0']) == 0
    assert (
        h.train(
            root,
            out,
            '--resume',
            sets=[*sets, 'epochs=4', 'patience=5', 'progress=true', 'tensorboard=true'],
        )
        == 0
    )
    assert h.train(root, whole, sets=[*sets, 'epochs=4', 'patience=5']) == 0
    resumed, straight = h.read_json(out / 'metrics.json'), h.read_json(whole / 'metrics.json')
    assert resumed['epochs_run'] == straight['epochs_run']
    assert resumed['test'] == straight['test']


def test_existing_run_needs_resume_or_overwrite(toy, tmp_path, capsys, h):
    root, _ = toy
    out = tmp_path / 'run'
    assert h.train(root, out) == 0
    first = h.read_json(out / 'metrics.json')
    capsys.readouterr()
    assert h.train(root, out, sets=[*h.FAST, 'seed=5']) == 2
    h.one_line_error(capsys, 'already holds a run', '--resume', '--overwrite')
    assert h.read_json(out / 'metrics.json') == first
    assert h.train(root, out, '--overwrite', sets=[*h.FAST, 'seed=5']) == 0
    assert h.read_json(out / 'metrics.json')['train_config']['seed'] == 5


LOCKER = """
import sys
from pyg_mentor.run_folder import RunLock
RunLock(sys.argv[1]).acquire()
print('locked', flush=True)
sys.stdin.read()
"""


def test_second_training_into_the_same_out_fails_naming_the_holder(toy, tmp_path, capsys, h):
    root, _ = toy
    out = tmp_path / 'run'
    holder = subprocess.Popen(
        [sys.executable, '-c', LOCKER, str(out)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == 'locked'
        assert h.train(root, out) == 2
        h.one_line_error(capsys, 'in use by another training', f'pid {holder.pid}')
        assert not (out / 'run.json').exists() and not (out / 'log.csv').exists()
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    # A holder killed with -9 leaves its lock file; it does not block anyone.
    holder = subprocess.Popen(
        [sys.executable, '-c', LOCKER, str(out)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == 'locked'
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    assert (out / '.lock').exists()
    assert h.train(root, out) == 0
    assert not (out / '.lock').exists()


def test_orphan_temp_files_are_removed_at_start(toy, tmp_path, h):
    root, _ = toy
    out = tmp_path / 'run'
    assert h.train(root, out) == 0
    orphans = [
        out / '.last.pt.k3j_x9q.tmp',
        out / '.best.pt.a1b2c3.tmp',
        out / '.metrics.json.zz81.tmp',
        out / 'metrics.json.tmp',
    ]
    for path in orphans:
        path.write_bytes(b'partial')
    keep = out / 'notes.txt'
    keep.write_text('mine')
    assert h.train(root, out, '--resume', sets=[*h.FAST[1:], 'epochs=3']) == 0
    assert not any(p.exists() for p in orphans)
    assert keep.read_text() == 'mine'


def test_evaluate_detects_a_folder_that_mixes_runs(toy, tmp_path, capsys, h):
    root, _ = toy
    a, b = tmp_path / 'a', tmp_path / 'b'
    assert h.train(root, a) == 0
    assert h.train(root, b, sets=[*h.FAST, 'seed=7', 'embedding_dim=64']) == 0
    shutil.copy(b / 'best.pt', a / 'best.pt')
    capsys.readouterr()
    assert main(['evaluate', '--run', str(a)]) == 2
    h.one_line_error(capsys, str(a / 'best.pt'), 'mixes runs', 'seed')
    # run.json of another model beside this run's metrics.json:
    shutil.copy(b / 'best.pt', a / 'best.pt')
    meta = h.read_json(b / 'run.json')
    meta['model'] = 'lightgcn'
    (b / 'run.json').write_text(json.dumps(meta))
    assert main(['evaluate', '--run', str(b)]) == 2
    h.one_line_error(capsys, 'run.json', "'lightgcn'", 'mixes runs')


def test_evaluate_an_interrupted_run(toy, tmp_path, capsys, h):
    root, _ = toy
    out = tmp_path / 'run'
    assert h.train(root, out, sets=[*h.FAST[1:], 'epochs=3']) == 0
    (out / 'metrics.json').unlink()  # As if killed after its third epoch.
    capsys.readouterr()
    assert main(['evaluate', '--run', str(out), '--checkpoint', 'last']) == 0
    captured = capsys.readouterr()
    assert 'interrupted at epoch 3' in captured.err and '--resume' in captured.err
    assert '| test |' in captured.out
    # --resume finishes it, and then it is an ordinary run.
    assert h.train(root, out, '--resume', sets=[*h.FAST[1:], 'epochs=3']) == 0
    capsys.readouterr()
    assert main(['evaluate', '--run', str(out)]) == 0
    assert 'interrupted' not in capsys.readouterr().err


def test_evaluate_compare_and_example_run_folders(tmp_path, capsys, h):
    # Issue 16: any run folder with a checkpoint and its config.
    runs = tmp_path / 'runs'
    assert (
        main(
            [
                'compare',
                '--dataset',
                'synthetic',
                '--models',
                'mf_bpr',
                '--seeds',
                '1',
                '--no-grid',
                '--max-epochs',
                '1',
                '--runs',
                str(runs),
                '--out',
                str(tmp_path / 'report'),
                '--no-plot',
                '--set',
                'progress=false',
                'tensorboard=false',
            ]
        )
        == 0
    )
    run = runs / 'mf_bpr' / 'seed-999'
    expected = h.read_json(run / 'metrics.json')['test']['recall@20']
    (run / 'run.json').unlink(missing_ok=True)  # As compare wrote them before.
    capsys.readouterr()
    assert main(['evaluate', '--run', str(run), '--split', 'test']) == 0
    assert f'{expected:.4f}' in capsys.readouterr().out

    spec = importlib.util.spec_from_file_location('example_train_baby', EXAMPLES / 'train_baby.py')
    train_baby = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_baby)
    out = tmp_path / 'train_baby'
    result = train_baby.main(
        [
            '--synthetic',
            '--scale',
            '0.02',
            '--epochs',
            '1',
            '--model',
            'mf_bpr',
            '--out',
            str(out),
            '--device',
            'cpu',
        ]
    )
    capsys.readouterr()
    assert main(['evaluate', '--run', str(out), '--split', 'test']) == 0
    assert f'{result["test"]["recall@20"]:.4f}' in capsys.readouterr().out


@pytest.mark.parametrize('damage', ['truncate', 'garbage', 'empty'])
def test_damaged_checkpoints_give_one_line(toy, tmp_path, capsys, h, damage):
    root, _ = toy
    out = tmp_path / 'run'
    assert h.train(root, out) == 0
    for name in ('best.pt', 'last.pt'):
        path = out / name
        data = path.read_bytes()
        path.write_bytes(
            {'truncate': data[: len(data) // 2], 'garbage': os.urandom(4096), 'empty': b''}[damage]
        )
    capsys.readouterr()
    assert main(['evaluate', '--run', str(out)]) == 2
    h.one_line_error(capsys, str(out / 'best.pt'), 'not a readable checkpoint')
    assert main(['recommend', '--run', str(out), '--users', '1']) == 2
    h.one_line_error(capsys, 'not a readable checkpoint')
    assert h.train(root, out, '--resume', sets=[*h.FAST[1:], 'epochs=3']) == 2
    h.one_line_error(
        capsys, str(out / 'last.pt'), 'not a readable checkpoint', 'delete it to restart'
    )


def test_out_pointing_at_a_file(toy, tmp_path, capsys, h):
    root, _ = toy
    out = tmp_path / 'a_file'
    out.write_text('not a folder')
    assert h.train(root, out) == 2
    h.one_line_error(capsys, str(out), 'is an existing file, not a folder')
    assert out.read_text() == 'not a folder'


def test_read_only_out_folder(toy, tmp_path, capsys, h, read_only):
    root, _ = toy
    parent = tmp_path / 'locked'
    parent.mkdir()
    read_only(parent)
    assert h.train(root, parent / 'run') == 2
    h.one_line_error(capsys, str(parent / 'run'), 'Permission denied')
    read_only_run = tmp_path / 'ro_run'
    read_only_run.mkdir()
    read_only(read_only_run)
    assert h.train(root, read_only_run) == 2
    h.one_line_error(capsys, str(read_only_run), 'cannot write')

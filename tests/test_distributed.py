"""Multi-process training (:mod:`pyg_mentor.distributed`): two gloo processes on a
tiny graph train, resume and evaluate as one process does on the same global batches.

Two processes are started for real (``pyg-mentor train --nproc 2``, and the Python
API under :func:`~pyg_mentor.distributed.launch`); a time limit stops them, so that
a failure never hangs the suite. Expected values come from one process in this test
process, on the same data and options: the loss of every epoch to float rounding
(the ranks add their shards' sums in another order), and the metrics of the same
weights to float32 rounding (the float32 sums of per-user values in another order;
a value exactly between two 4-decimal roundings may therefore round apart).
"""

from __future__ import annotations

import csv
import functools
import json
import math
import sys
import textwrap

import pytest
import torch

from pyg_mentor import cli, distributed
from pyg_mentor.datasets.load import load_dataset
from pyg_mentor.datasets.synthetic import make_planted, write_mmrec
from pyg_mentor.distributed import shard
from pyg_mentor.evaluation import Evaluator
from pyg_mentor.typing import RATES

pytestmark = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason='torch.distributed with gloo is not available',
)

#: Seconds before the processes of a test are stopped (the test then fails).
TIMEOUT = 300
#: Relative tolerance of values summed in another order (float32).
RTOL = 1e-5


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp('data')
    write_mmrec(
        make_planted(num_users=120, num_items=50, seed=7, modalities={'image': 8, 'text': 6}),
        root,
        'toy',
    )
    return root


def odd_batch_size(num_pairs: int) -> int:
    r"""A batch size whose epoch ends with a one-row batch: with two processes,
    the second one's shard of it is empty."""
    for size in range(num_pairs // 5, num_pairs // 2):
        if num_pairs % size == 1:
            return size
    raise AssertionError(f'no batch size leaves one row of {num_pairs}')


def read_log(folder):
    with open(folder / 'log.csv') as f:
        return list(csv.DictReader(f))


def assert_same_run(one, two):
    r"""Two ``log.csv`` of the same run: every logged loss and metric equal to
    float rounding."""
    assert len(one) == len(two)
    assert list(one[0]) == list(two[0])
    for a, b in zip(one, two):
        for key in a:
            if key == 'train_seconds' or not a[key]:
                continue
            x, y = float(a[key]), float(b[key])
            assert y == pytest.approx(x, rel=RTOL, abs=1e-7), (a['epoch'], key)


def test_shard_splits_batches_in_order():
    batch = torch.arange(21).view(3, 7)
    parts = [shard(batch, r, 3) for r in range(3)]
    assert [p.size(1) for p in parts] == [3, 2, 2]
    assert torch.equal(torch.cat(parts, dim=1), batch)
    assert shard(batch[:, :1], 1, 2).shape == (3, 0)  # fewer rows than ranks


def test_child_argv_drops_nproc():
    argv = ['-v', 'train', '--model', 'mf_bpr', '--nproc', '2', '--nproc=3', '--epochs', '1']
    assert cli.child_argv(argv) == ['-v', 'train', '--model', 'mf_bpr', '--epochs', '1']
    assert cli.child_argv(['train', '--nproc', '2'], debug=True) == ['train', '--debug']


def test_refusals(toy, monkeypatch, capsys):
    from pyg_mentor.nn.models import MENTOR, MMSSL, LightGCN

    data = load_dataset('toy', toy)
    LightGCN.from_data(data).check_distributed()
    with pytest.raises(ValueError, match="cl_scope='batch'"):
        MENTOR.from_data(data, cl_scope='batch').check_distributed()
    MENTOR.from_data(data).check_distributed()
    with pytest.raises(ValueError, match='distinct users'):
        MMSSL.from_data(data).check_distributed()
    # --nproc inside torchrun's processes.
    monkeypatch.setenv('RANK', '0')
    monkeypatch.setenv('WORLD_SIZE', '2')
    code = cli.main(['train', '--model', 'mf_bpr', '--dataset', 'toy', '--nproc', '2'])
    assert code == 2 and 'not under torchrun' in capsys.readouterr().err


def test_nproc_trains_and_evaluates_as_one_process(toy, tmp_path, monkeypatch):
    r"""``train --nproc 2`` (LightGCN: BPR and the norm regulariser as batch
    reductions; the last batch of an epoch has one row, so the second
    process's shard of it is empty) against one process; the sharded
    evaluation against one process evaluating the same weights."""
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    # Never hang: the processes of `--nproc` are stopped after TIMEOUT.
    monkeypatch.setattr(
        distributed, 'launch', functools.partial(distributed.launch, timeout=TIMEOUT)
    )
    size = odd_batch_size(load_dataset('toy', toy)[RATES].edge_index.size(1))
    common = [
        'train', '--model', 'lightgcn', '--dataset', 'toy', '--root', str(toy),
        '--set', f'batch_size={size}', 'progress=false', 'tensorboard=false',
    ]  # fmt: skip
    one, two = tmp_path / 'one', tmp_path / 'two'
    assert cli.main([*common, '--out', str(one), '--epochs', '3']) == 0
    assert cli.main([*common, '--out', str(two), '--epochs', '3', '--nproc', '2']) == 0
    assert_same_run(read_log(one), read_log(two))
    metrics = json.loads((two / 'metrics.json').read_text())
    assert metrics['processes'] == 2
    assert metrics['best_epoch'] == json.loads((one / 'metrics.json').read_text())['best_epoch']
    # The metrics of the two processes' sharded evaluation are those of one
    # process evaluating the same weights.
    data, model, saved = cli.load_run(two, 'best')
    assert saved.epoch == metrics['best_epoch']
    scorer = model.scorer(data)
    for split in ('valid', 'test'):
        alone = Evaluator(data, split).evaluate(scorer)
        for key, value in alone.items():
            assert metrics[split][key] == pytest.approx(value, rel=RTOL, abs=1e-7), key


WORKER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path

    from pyg_mentor.datasets.load import load_dataset
    from pyg_mentor.distributed import process_group
    from pyg_mentor.train import train_model

    root, out, cases = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
    data = load_dataset('toy', root)
    with process_group('cpu') as group:
        for name, (model, options) in cases.items():
            # One epoch, then resumed to two: the resume of every rank.
            train_model(model, data, {**options, 'epochs': 1}, out / name,
                        process_group=group)
            train_model(model, data, {**options, 'epochs': 2}, out / name,
                        resume=True, process_group=group)
    """
)


def test_models_train_as_one_process(toy, tmp_path, monkeypatch):
    r"""MENTOR (batch reductions next to terms over all users and items with
    random masks and noise, the same on every rank), FREEDOM (the epoch's
    pruned graph), and LightGCN on sampled subgraphs with all neighbours (one
    subgraph per rank), each on two processes and resumed there, against
    one process."""
    from pyg_mentor.train import train_model

    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    data = load_dataset('toy', toy)
    common = {'progress': False, 'tensorboard': False}
    common['batch_size'] = odd_batch_size(data[RATES].edge_index.size(1))
    cases = {
        'mentor': ('mentor', common),
        'freedom': ('freedom', common),
        'lightgcn': ('lightgcn', {**common, 'sampler': 'neighbor', 'num_neighbors': [-1, -1]}),
    }
    script = tmp_path / 'worker.py'
    script.write_text(WORKER)
    args = [str(script), str(toy), str(tmp_path / 'two'), json.dumps(cases)]
    assert distributed.launch(args, 2, module=None, timeout=TIMEOUT) == 0
    for name, (model, options) in cases.items():
        train_model(model, data, {**options, 'epochs': 2}, tmp_path / 'one' / name)
        one, two = read_log(tmp_path / 'one' / name), read_log(tmp_path / 'two' / name)
        assert_same_run(one, two)
        assert all(math.isfinite(float(row['train/loss'])) for row in two)


def test_launch_stops_the_others_when_one_fails(tmp_path):
    script = tmp_path / 'fail.py'
    script.write_text(
        "import os, sys, time\nif os.environ['RANK'] == '1':\n    sys.exit(5)\ntime.sleep(600)\n"
    )
    assert distributed.launch([str(script)], 2, module=None, timeout=TIMEOUT) == 5
    with pytest.raises(TimeoutError):
        slow = tmp_path / 'slow.py'
        slow.write_text('import time\ntime.sleep(600)\n')
        distributed.launch([str(slow)], 2, module=None, timeout=1)


def test_launch_validates_nproc():
    with pytest.raises(ValueError, match='nproc'):
        distributed.launch([sys.executable], 0)

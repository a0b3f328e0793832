"""The trainer's rules as functions: the best epoch, the plan line, the busy-CPU note;
and the one reader of run folders applying the same best-epoch rule."""

from __future__ import annotations

import math

from pyg_mentor.config import TrainConfig
from pyg_mentor.datasets.synthetic import make_planted
from pyg_mentor.run_folder import read_log, read_run
from pyg_mentor.train import best_epoch, cpu_contention_note, train_model, training_plan


def test_best_epoch_is_the_first_highest_rounded_value():
    rows = [
        {'epoch': 0, 'valid/recall@20': 0.0500},
        {'epoch': 1, 'valid/recall@20': 0.06122},  # rounds to .0612
        {'epoch': 2, 'valid/recall@20': 0.06118},  # also .0612: not better
        {'epoch': 3, 'valid/recall@20': math.nan},
        {'epoch': 4},
    ]
    assert best_epoch(rows, 'valid/recall@20') == 1
    rows.append({'epoch': 5, 'valid/recall@20': 0.06126})  # .0613
    assert best_epoch(rows, 'valid/recall@20') == 5
    assert best_epoch([{'epoch': 0}], 'valid/recall@20') is None


def test_trainer_and_readers_agree_on_the_best_epoch(tmp_path):
    data = make_planted(num_users=150, num_items=60, seed=4)
    out = tmp_path / 'run'
    result = train_model(
        'mf_bpr', data, {'epochs': 6, 'progress': False, 'lr': 0.05}, out, dataset='toy'
    )
    rows = read_log(out)
    assert len(rows) == 6
    assert best_epoch(rows, 'valid/recall@20') == result['best_epoch']
    # An interrupted run is read from its log by the same rule.
    (out / 'metrics.json').unlink()
    saved = read_run(out, checkpoint=None)
    assert saved.state is None and saved.checkpoint is None
    assert saved.interrupted.startswith(f'{out}: interrupted at epoch 6 (6 of 6 epochs done)')
    assert saved.result['status'] == 'partial'
    assert saved.result['best_epoch'] == result['best_epoch']
    assert saved.result['test'] == result['test']
    assert saved.result['valid'] == result['valid']


def test_plan_line_and_busy_cpu_note(monkeypatch):
    config = TrainConfig(epochs=300, patience=7, batch_size=512)
    plan = training_plan(config, num_batches=12)
    assert plan == (
        'plan: up to 300 epochs; early stopping after 8 epochs without a gain '
        'in valid recall@20 (patience 7); 12 batches of 512 per epoch, '
        'full-ranking validation after each'
    )
    assert 'resuming at epoch 40' in training_plan(config, 12, start=40)
    monkeypatch.delenv('OMP_WAIT_POLICY', raising=False)
    monkeypatch.setattr('os.getloadavg', lambda: (3.0, 3.0, 3.0))
    assert 'OMP_WAIT_POLICY=PASSIVE' in cpu_contention_note('cpu')
    assert cpu_contention_note('cuda:0') is None
    monkeypatch.setenv('OMP_WAIT_POLICY', 'PASSIVE')
    assert cpu_contention_note('cpu') is None
    monkeypatch.delenv('OMP_WAIT_POLICY')
    monkeypatch.setattr('os.getloadavg', lambda: (0.2, 0.2, 0.2))
    assert cpu_contention_note('cpu') is None

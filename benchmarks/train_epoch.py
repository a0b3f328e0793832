"""Seconds per training epoch of the trainer, with and without torch's NaN-filling of new tensors.

``torch.use_deterministic_algorithms(True)`` (the trainer's ``deterministic=True``, the
default) also makes torch fill every newly allocated tensor with NaN
(:attr:`torch.utils.deterministic.fill_uninitialized_memory`), a write pass over every
allocation. The trainer turns that fill off during training; this benchmark trains the
same model on the same data alternately with the trainer as it is (``fill off``) and with
the fill forced back on (``fill on``, the trainer's behaviour before), ``--reps`` times
each, and prints the per-epoch seconds, their medians (the first epoch of each run left
out) and the ratio, plus whether both settings gave the same valid metrics (they must:
the fill changes no result)::

    python benchmarks/train_epoch.py --model mentor --dataset lfm2k --root <data> \\
        --out benchmarks/results/train_epoch.json

``--quick`` trains MENTOR on a small planted dataset for a smoke test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if not __package__:  # `python benchmarks/train_epoch.py`: import the checkout's package
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import torch

from benchmarks._common import check_out, default_out, machine_line, out_help, save_result
from pyg_mentor.run_folder import read_log

SETTINGS = ('fill off', 'fill on')


def train_once(model: str, data: Any, epochs: int, fill: bool) -> list[dict[str, float]]:
    r"""Trains :obj:`model` for :obj:`epochs` epochs in a temporary folder; per epoch
    its train seconds and valid metrics. With :obj:`fill`, deterministic algorithms
    and torch's filling of new tensors are on for the whole run (the trainer's own
    switch is bypassed with ``deterministic=False``)."""
    from pyg_mentor.train import train_model

    options = {'epochs': epochs, 'progress': False, 'tensorboard': False}
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.utils.deterministic.fill_uninitialized_memory,
    )
    if fill:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.utils.deterministic.fill_uninitialized_memory = True
        options['deterministic'] = False
    try:
        with tempfile.TemporaryDirectory() as tmp:
            train_model(model, data, options, tmp)
            rows = read_log(tmp)
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.utils.deterministic.fill_uninitialized_memory = previous[2]
    return [
        {k: float(v) for k, v in r.items() if k == 'train_seconds' or k.startswith('valid/')}
        for r in rows
    ]


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', default='mentor')
    parser.add_argument('--dataset', default='lfm2k')
    parser.add_argument('--root', default=None, help='folder holding <dataset>/')
    parser.add_argument('--epochs', type=int, default=3)
    parser.add_argument('--reps', type=int, default=2)
    parser.add_argument('--quick', action='store_true', help='small planted data, 2 epochs')
    parser.add_argument(
        '--out', type=Path, default=default_out('train_epoch'), help=out_help('train_epoch')
    )
    args = parser.parse_args(argv)
    out = check_out(args.out, args.quick)
    if args.quick:
        from pyg_mentor.datasets.synthetic import make_planted

        data, name, args.epochs, args.reps = make_planted(300, 120, seed=0), 'planted', 2, 1
    else:
        from pyg_mentor.datasets.load import load_dataset

        data, name = load_dataset(args.dataset, args.root), args.dataset
    if args.epochs < 2:
        parser.error('--epochs must be >= 2 (the first epoch is left out of the medians)')
    started = machine_line()
    runs: dict[str, list[list[dict[str, float]]]] = {s: [] for s in SETTINGS}
    for rep in range(args.reps):
        for setting in SETTINGS:
            print(f'rep {rep + 1}/{args.reps}: {setting}', flush=True)
            runs[setting].append(train_once(args.model, data, args.epochs, setting == 'fill on'))
    medians = {
        s: statistics.median(r['train_seconds'] for run in rs for r in run[1:])
        for s, rs in runs.items()
    }
    same = all(
        [{k: v for k, v in r.items() if k != 'train_seconds'} for r in a]
        == [{k: v for k, v in r.items() if k != 'train_seconds'} for r in b]
        for a, b in zip(runs['fill off'], runs['fill on'])
    )
    lines = [
        f"# Training epoch of {args.model} on {name}: torch's filling of new tensors",
        '',
        f'- {started}',
        f'- {args.reps} reps x {args.epochs} epochs per setting, alternating; medians over '
        'epochs >= 1 of all reps',
        '',
        '| setting | s / epoch (median) | per-epoch seconds | ratio to fill off |',
        '|---|---:|---|---:|',
    ]
    for s in SETTINGS:
        seconds = ', '.join(f'{r["train_seconds"]:.2f}' for run in runs[s] for r in run)
        lines.append(
            f'| {s} | {medians[s]:.2f} | {seconds} | {medians[s] / medians["fill off"]:.2f}x |'
        )
    lines += ['', f'Same valid metrics at every epoch in both settings: {"yes" if same else "NO"}.']
    text = '\n'.join(lines) + '\n'
    print(text)
    result = save_result(
        out, 'train_epoch', model=args.model, dataset=name, epochs=args.epochs,
        reps=args.reps, quick=args.quick, runs=runs, medians=medians, same_metrics=same,
    )  # fmt: skip
    out.with_suffix('.md').write_text(text)
    return result


if __name__ == '__main__':
    main()

"""Per-epoch learning curves of several training runs side by side, as a markdown table.

Reads each run folder's ``log.csv`` (written by ``pyg-mentor train``; the run may still be
training) and prints one row per epoch with the chosen metrics of every run, plus the
best-valid epoch of each run (the trainer's rule, :func:`pyg_mentor.train.best_epoch`: the
first epoch with the highest valid metric rounded to 4 decimals) and the run's test metrics
there::

    python benchmarks/curves.py runs/baby-mentor-release runs/baby-mentor-batch \\
        --labels all batch --metrics valid/recall@10 valid/recall@20 test/recall@20

Test metrics exist only at the epochs where a run computed them (improving epochs, or
every epoch with ``test_every_epoch=true``); missing cells are ``-``. Any column of the
log can be shown (``train_seconds``, ``train/loss``, ...).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

if not __package__:  # `python benchmarks/curves.py`: import the checkout's package
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from pyg_mentor.run_folder import read_log
from pyg_mentor.train import best_epoch


def _cell(value: float) -> str:
    if math.isnan(value):
        return '-'
    if abs(value) >= 100:  # seconds
        return f'{value:.0f}'
    return f'{value:.4f}'.removeprefix('0')


def curves_table(
    runs: Sequence[Path], labels: Sequence[str], metrics: Sequence[str], valid_metric: str
) -> str:
    """Markdown: one row per epoch, ``len(runs) x len(metrics)`` metric columns, then
    one row per run with its best-valid epoch and the metrics there."""
    if len(labels) != len(runs):
        raise ValueError(f'{len(labels)} labels for {len(runs)} runs')
    logs = [{int(r['epoch']): r for r in read_log(run)} for run in runs]
    for run, log in zip(runs, logs):
        missing = [m for m in metrics if log and m not in next(iter(log.values()))]
        if missing:
            raise KeyError(f'{run}/log.csv has no column(s) {missing}')
    head = ['epoch'] + [f'{lab} {m}' for m in metrics for lab in labels]
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---:|' * len(head)]
    epochs = sorted(set().union(*logs))
    for epoch in epochs:
        cells = [str(epoch)]
        for m in metrics:
            for log in logs:
                cells.append(_cell(log.get(epoch, {}).get(m, math.nan)))
        lines.append('| ' + ' | '.join(cells) + ' |')
    lines += [
        '',
        f'| run | epochs | best epoch (on {valid_metric}) | ' + ' | '.join(metrics) + ' |',
        '|---|---:|---:|' + '---:|' * len(metrics),
    ]
    for label, log in zip(labels, logs):
        best = best_epoch(list(log.values()), valid_metric)
        row = log.get(best, {}) if best is not None else {}
        lines.append(
            f'| {label} | {len(log)} | {best if best is not None else "-"} | '
            + ' | '.join(_cell(row.get(m, math.nan)) for m in metrics)
            + ' |'
        )
    return '\n'.join(lines) + '\n'


def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('runs', nargs='+', type=Path, help='run folders (with log.csv)')
    parser.add_argument(
        '--labels', nargs='+', default=None, help='column labels (default: the folder names)'
    )
    parser.add_argument('--metrics', nargs='+', default=['valid/recall@20', 'test/recall@20'])
    parser.add_argument(
        '--valid-metric',
        default=None,
        help='early-stopping metric (default: the first --metrics one)',
    )
    parser.add_argument('--out', type=Path, default=None, help='write markdown here')
    args = parser.parse_args(argv)
    labels = args.labels or [run.name for run in args.runs]
    text = curves_table(args.runs, labels, args.metrics, args.valid_metric or args.metrics[0])
    if args.out is not None:
        args.out.write_text(text)
    print(text, end='')
    return text


if __name__ == '__main__':
    main()

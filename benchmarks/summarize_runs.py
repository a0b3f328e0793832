"""Summarise finished training runs (``pyg-mentor train`` output folders) as a markdown
table beside the numbers of the MENTOR paper (Baby / Sports / Clothing, MMRec protocol).

    python benchmarks/summarize_runs.py runs/baby-lightgcn runs/baby-mf_bpr \\
        --out benchmarks/results/baselines_baby.md
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

if not __package__:  # `python benchmarks/summarize_runs.py`: import the checkout's package
    sys.path[0] = str(Path(__file__).resolve().parents[1])

# The paper's numbers (R@10, R@20, N@10, N@20): one copy, benchmarks/paper_results.json.
from benchmarks.compare import METRICS as COLUMNS
from benchmarks.compare import paper_results
from pyg_mentor.run_folder import read_run


def load(run: Path) -> dict:
    """What ``metrics.json`` holds (a grid's, with its trials), read with
    :func:`~pyg_mentor.run_folder.read_run` (no checkpoint loaded)."""
    saved = read_run(run, checkpoint=None)
    if saved.interrupted:
        raise ValueError(f'{saved.interrupted}; only finished runs are summarised')
    return {**saved.result, 'dataset': saved.source.dataset, 'path': str(run)}


def table(runs: Sequence[dict]) -> str:
    lines = [
        '| model | dataset | trials | winner (chosen on valid) | best epoch / run | s/epoch '
        '| valid R@20 | test R@10 | test R@20 | test N@10 | test N@20 | paper R@20 '
        '| ours / paper |',
        '|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ]
    for m in runs:
        trials = m.get('trials', [m])
        paper = paper_results(m['model'], m['dataset'])
        ratio = f'{m["test"]["recall@20"] / paper[1]:.3f}' if paper else '-'
        winner = ', '.join(f'{k}={v}' for k, v in m.get('varied', {}).items()) or 'default'
        test = ' | '.join(f'{m["test"][c]:.4f}' for c in COLUMNS)
        lines.append(
            f'| {m["model"]} | {m["dataset"]} | {len(trials)} | {winner} '
            f'| {m["best_epoch"]} / {m["epochs_run"]} | {m["seconds_per_epoch"]:.2f} '
            f'| {m["valid"]["recall@20"]:.4f} | {test} '
            f'| {paper[1] if paper else "-"} | {ratio} |'
        )
    return '\n'.join(lines)


def trials_table(m: dict) -> str:
    lines = [
        '| trial | valid R@20 | test R@20 | best epoch | s/epoch |',
        '|---|---:|---:|---:|---:|',
    ]
    for t in m.get('trials', []):
        name = ', '.join(f'{k}={v}' for k, v in t['varied'].items())
        lines.append(
            f'| {name} | {t["valid"].get("recall@20", float("nan")):.4f} '
            f'| {t["test"].get("recall@20", float("nan")):.4f} '
            f'| {t["best_epoch"]} | {t["seconds_per_epoch"]:.2f} |'
        )
    return '\n'.join(lines)


def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('runs', nargs='+', type=Path, help='run folders (or grid roots)')
    parser.add_argument('--out', type=Path, default=None, help='write markdown here')
    args = parser.parse_args(argv)
    runs = [load(r) for r in args.runs]
    parts = [table(runs)]
    for m in runs:
        if 'trials' in m:
            parts.append(f'\n{m["model"]} on {m["dataset"]} ({m["path"]}): every trial\n')
            parts.append(trials_table(m))
    text = '\n'.join(parts) + '\n'
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return text


if __name__ == '__main__':
    main()

"""Why MENTOR's former default peaked early on real features, and what the defaults are now.

Builds the markdown report from run folders of ``pyg-mentor train`` / ``mentor_terms.py``
(``log.csv``, ``run.json`` / ``metrics.json``, and ``terms.csv`` where the run recorded
per-term gradients) and from the released MENTOR's per-epoch log parsed by the
official-anchor harness (``parse_log.py LOG --csv OUT``)::

    python benchmarks/mentor_lfm2k.py \\
        --run 'old default=runs/terms-default' --run 'default=runs/terms-nograd-lr1e-3' \\
        --terms 'old default=runs/terms-default' --release release.csv \\
        --release-anchor 'ours, release settings=runs/lfm2k-mentor-anchor' \\
        --out benchmarks/results/mentor_lfm2k.md

Every number in the report comes from those files: valid Recall@10 per epoch (MENTOR's
early-stopping metric), the best-valid epoch by the trainer's rule
(:func:`pyg_mentor.train.best_epoch`) and the test metrics there, the options each run
recorded, and, per loss term, the gradient norm and its cosine with the BPR gradient.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path

from pyg_mentor.run_folder import read_log
from pyg_mentor.train import best_epoch

METRIC = 'valid/recall@10'
TERMS = ('bpr', 'align', 'mask', 'cl', 'reg', 'total')


def _pairs(values: Sequence[str], option: str) -> list[tuple[str, Path]]:
    out = []
    for value in values:
        label, sep, path = value.partition('=')
        if not sep or not label or not path:
            raise SystemExit(f"{option} expects LABEL=PATH, got '{value}'")
        out.append((label, Path(path)))
    return out


def _options(run: Path) -> str:
    """The options a run was started with that differ from the model's defaults."""
    for name in ('run.json', 'metrics.json'):
        path = run / name
        if path.exists():
            meta = json.loads(path.read_text())
            options = meta.get('options') or meta.get('varied') or {}
            if 'identity' in meta:
                options = meta.get('options', options)
            shown = {
                k: v
                for k, v in options.items()
                if k not in ('tensorboard', 'progress', 'checkpoint')
            }
            return ', '.join(f'`{k}={v}`' for k, v in shown.items()) or 'defaults'
    return 'not recorded (see the label)'


def _cell(value: float | None) -> str:
    return '-' if value is None or math.isnan(value) else f'{value:.4f}'.removeprefix('0')


def read_release(path: Path) -> list[dict[str, float]]:
    """The release's per-epoch rows (``parse_log.py --csv``) in ``log.csv`` naming."""
    rows = []
    with path.open(newline='') as f:
        for row in csv.DictReader(f):
            out = {'epoch': float(row['epoch']), 'train_seconds': float(row['train_s'])}
            for key, value in row.items():
                if key.startswith(('valid_', 'test_')) and value not in ('', None):
                    split, _, metric = key.partition('_')
                    out[f'{split}/{metric}'] = float(value)
            rows.append(out)
    return rows


def curve_table(curves: dict[str, list[dict[str, float]]], epochs: Sequence[int]) -> str:
    labels = list(curves)
    lines = ['| epoch | ' + ' | '.join(labels) + ' |', '|---:|' + '---:|' * len(labels)]
    for epoch in epochs:
        cells = []
        for label in labels:
            row = next((r for r in curves[label] if int(r['epoch']) == epoch), None)
            cells.append(_cell(row.get(METRIC) if row else None))
        if any(c != '-' for c in cells):
            lines.append(f'| {epoch} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def summary_table(curves: dict[str, list[dict[str, float]]], options: dict[str, str]) -> str:
    lines = [
        '| run | options | epochs logged | best valid epoch | valid R@10 | '
        'test R@20 | test N@20 | s / train epoch (median) |',
        '|---|---|---:|---:|---:|---:|---:|---:|',
    ]
    for label, rows in curves.items():
        best = best_epoch(rows, METRIC)
        row = next((r for r in rows if int(r['epoch']) == best), {})
        seconds = sorted(r['train_seconds'] for r in rows if 'train_seconds' in r)
        median = seconds[len(seconds) // 2] if seconds else math.nan
        lines.append(
            f'| {label} | {options.get(label, "")} | {len(rows)} | {best} | '
            f'{_cell(row.get(METRIC))} | {_cell(row.get("test/recall@20"))} | '
            f'{_cell(row.get("test/ndcg@20"))} | {median:.1f} |'
        )
    return '\n'.join(lines)


def terms_table(path: Path, epochs: Sequence[int]) -> str:
    with path.open(newline='') as f:
        rows = list(csv.DictReader(f))
    lines = [
        '| epoch | ' + ' | '.join(f'{t}: norm / cos' for t in TERMS) + ' |',
        '|---:|' + '---:|' * len(TERMS),
    ]
    for epoch in epochs:
        sel = {r['term']: r for r in rows if int(r['epoch']) == epoch}
        if not sel:
            continue
        cells = []
        for term in TERMS:
            r = sel.get(term)
            if r is None:
                cells.append('-')
                continue
            cos = float(r['cos_with_bpr'])
            cos_text = '' if math.isnan(cos) else f' / {cos:+.2f}'
            cells.append(f'{float(r["grad_norm"]):.3g}{cos_text}')
        lines.append(f'| {epoch} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def mask_findings(path: Path) -> str:
    """What the per-term gradients say about the feature-mask term, from terms.csv."""
    with path.open(newline='') as f:
        rows = list(csv.DictReader(f))
    by = {(int(r['epoch']), r['term']): r for r in rows}
    first = min(e for e, _ in by)
    ratio = float(by[first, 'mask']['grad_norm']) / float(by[first, 'bpr']['grad_norm'])
    total_cos = float(by[first, 'total']['cos_with_bpr'])
    against = sorted(
        e for (e, t), r in by.items() if t == 'mask' and float(r['cos_with_bpr']) < -0.8
    )
    later = [float(by[e, 'mask']['cos_with_bpr']) for e in against]
    text = (
        f'At epoch {first} the feature-mask gradient is {ratio:.0f}x the BPR gradient '
        f'in norm, and the cosine of the total gradient with the BPR gradient is '
        f'{total_cos:+.2f}: the first steps follow the mask term, not the ranking loss.'
    )
    if against:
        text += (
            f' From epoch {against[0]} on ({len(against)} of the recorded epochs) the '
            f'mask gradient points against the BPR gradient (cosine '
            f'{min(later):+.2f} to {max(later):+.2f}) with a norm of the same order: '
            'the term pulls the fused representations away from what ranks well.'
        )
    return text


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument(
        '--run',
        action='append',
        default=[],
        metavar='LABEL=FOLDER',
        help='a run whose valid curve is shown (repeatable)',
    )
    parser.add_argument(
        '--terms',
        action='append',
        default=[],
        metavar='LABEL=FOLDER',
        help='a run folder with terms.csv (mentor_terms.py)',
    )
    parser.add_argument(
        '--release',
        type=Path,
        default=None,
        help="the released MENTOR's per-epoch CSV (parse_log.py --csv)",
    )
    parser.add_argument(
        '--release-anchor',
        action='append',
        default=[],
        metavar='LABEL=FOLDER',
        help="our run with the release's settings, shown beside it",
    )
    parser.add_argument(
        '--epochs', default='0,1,2,3,4,5,6,8,10,12,15,20,25,30,40,50,60,70,80,90,100,120,150,200'
    )
    parser.add_argument(
        '--preamble',
        type=Path,
        default=None,
        help='markdown placed before the generated tables (setup, commands)',
    )
    parser.add_argument('--out', type=Path, required=True)
    args = parser.parse_args(argv)

    epochs = [int(e) for e in args.epochs.split(',')]
    runs = _pairs(args.run, '--run')
    curves = {label: read_log(path) for label, path in runs}
    options = {label: _options(path) for label, path in runs}
    parts = [args.preamble.read_text().rstrip(), ''] if args.preamble else []
    parts += [
        '## Runs (valid R@10 is the early-stopping metric)',
        '',
        summary_table(curves, options),
        '',
        '## Valid R@10 per epoch',
        '',
        curve_table(curves, epochs),
    ]
    for label, path in _pairs(args.terms, '--terms'):
        parts += [
            '',
            f'## Per-term gradients: {label}',
            '',
            mask_findings(path / 'terms.csv'),
            '',
            "L2 norm of each term's gradient w.r.t. the parameters the terms share "
            '(all but the feature-mask map), and its cosine with the BPR gradient, '
            'on the first batch of the epoch.',
            '',
            terms_table(path / 'terms.csv', epochs),
        ]
    if args.release is not None:
        anchor = {
            label: read_log(path) for label, path in _pairs(args.release_anchor, '--release-anchor')
        }
        release = {'release (2 threads)': read_release(args.release), **anchor}
        release_options = {
            'release (2 threads)': 'its first grid combination',
            **{
                label: _options(path)
                for label, path in _pairs(args.release_anchor, '--release-anchor')
            },
        }
        parts += [
            '',
            '## The released MENTOR beside ours, same inputs',
            '',
            summary_table(release, release_options),
            '',
            curve_table({**release, **curves}, epochs),
        ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text('\n'.join(parts) + '\n')
    print(args.out.read_text())


if __name__ == '__main__':
    main()

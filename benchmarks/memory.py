"""Benchmark: peak memory of MENTOR's graph-perturbation InfoNCE over all users and items.

MENTOR's GRAPH_PERTURB loss is an InfoNCE over ALL users and over ALL items of the
dataset (two noise views, ``2 x 64 = 128`` columns, tau 0.2), forward and backward, every
training step. The release materialises the full ``N x N`` similarity matrix for it;
:func:`pyg_mentor.nn.functional.info_nce` computes the same value in row chunks
(``chunk_size='auto'``, MENTOR's default). For the shapes of Baby and Sports this script
measures, in a fresh subprocess per cell (Linux ``VmHWM``, reset before the call), the
peak resident memory the call adds beyond its inputs:

* **chunked (ours)**: ``info_nce(a, b, 0.2)`` with the default ``chunk_size='auto'``;
* **full matrices (release)**: the dense formula (``chunk_size=None``), measured where
  its estimate (four ``N x N`` float32 matrices forward + backward) fits in half of the
  available memory, otherwise reported as that estimate and marked *not run*.

Every chunked value is also checked against an independent float64 evaluation of the
formula (computed here row block by row block, without :mod:`pyg_mentor`): it must agree
to 1e-6 relative, or the run fails. The target of the benchmarks issue: at most 300 MB
extra on Sports.

    python benchmarks/memory.py            # Baby and Sports users and items
    python benchmarks/memory.py --quick    # small shapes (smoke test)

Writes JSON to ``runs/benchmarks/memory.json`` and markdown next to it (``--out
benchmarks/results/memory.json`` updates the committed one). Memory on this
shared machine is not affected by other processes' load, so one measurement per cell.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

if not __package__:  # `python benchmarks/memory.py`: import the checkout's package
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import torch
from torch import Tensor

from benchmarks import info_nce as bench
from benchmarks._common import (
    QUICK_TARGETS,
    available_bytes,
    check_out,
    default_out,
    fmt_bytes,
    machine_info,
    out_help,
    save_result,
)
from pyg_mentor.nn.functional import auto_chunk_size, info_nce

#: (dataset, side, rows): MMRec's Baby and Sports (users, items).
SHAPES = [
    ('Baby', 'users', 19445),
    ('Baby', 'items', 7050),
    ('Sports', 'users', 35598),
    ('Sports', 'items', 18357),
]
QUICK_SHAPES = [('quick', 'users', 3000), ('quick', 'items', 1200)]
TARGET_BYTES = 300 * 2**20  # Sports, issue 5


def reference_value(a: Tensor, b: Tensor, tau: float, block: int = 1024) -> float:
    r"""The InfoNCE value in float64, row block by row block:
    :math:`\frac{1}{N}\sum_i \big(\log \sum_j e^{\hat a_i \cdot \hat b_j / \tau}
    - \hat a_i \cdot \hat b_i / \tau\big)` on L2-normalised rows."""
    a = a.double() / a.double().norm(dim=1, keepdim=True)
    b = b.double() / b.double().norm(dim=1, keepdim=True)
    total = 0.0
    for start in range(0, a.size(0), block):
        s = a[start : start + block] @ b.t() / tau
        diag = s.diagonal(offset=start)  # row i's positive is column start + i
        total += float((torch.logsumexp(s, dim=1) - diag).sum())
    return total / a.size(0)


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--dim', type=int, default=128, help='columns (2 x embedding 64)')
    parser.add_argument('--tau', type=float, default=0.2)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--quick', action='store_true', help='small shapes (smoke test)')
    parser.add_argument('--out', type=Path, default=default_out('memory'), help=out_help('memory'))
    args = parser.parse_args(argv)
    check_out(args.out, args.quick)
    command = 'python benchmarks/memory.py ' + ' '.join(
        sys.argv[1:] if argv is None else list(argv)
    )
    wall_start = time.perf_counter()

    rows = []
    for dataset, side, n in QUICK_SHAPES if args.quick else SHAPES:
        a, b = bench.make_views(n, args.dim, args.seed)
        value = float(info_nce(a, b, args.tau))
        ref = reference_value(a, b, args.tau)
        rel = abs(value - ref) / abs(ref)
        if not rel < 1e-6:
            raise RuntimeError(
                f'{dataset} {side}: chunked InfoNCE {value} differs from the '
                f'float64 reference {ref} (rel. {rel:.1e})'
            )
        chunk = auto_chunk_size(n)
        chunked = bench.measure_memory(n, args.dim, chunk, True, args.tau)
        dense_est = bench.estimate_bytes(n, args.dim, None, True)
        avail = available_bytes()
        dense_runs = avail is not None and dense_est < 0.5 * avail
        dense = bench.measure_memory(n, args.dim, None, True, args.tau) if dense_runs else None
        rows.append(dict(
            dataset=dataset, side=side, rows=n, dim=args.dim, chunk_size=chunk,
            value=value, reference_value=ref, value_rel_diff=rel,
            chunked_peak_extra_bytes=chunked, dense_peak_extra_bytes=dense,
            dense_estimated_bytes=dense_est, dense_measured=dense is not None,
            available_bytes=avail,
        ))  # fmt: skip
        print(
            f'{dataset} {side}: chunked {fmt_bytes(chunked)}, full '
            f'{fmt_bytes(dense) if dense is not None else "~" + fmt_bytes(dense_est)}',
            flush=True,
        )

    # Per dataset: the user and the item calls run one after the other, so the step's
    # extra peak is the larger of the two.
    datasets = {}
    for row in rows:
        d = datasets.setdefault(row['dataset'], dict(chunked=0, dense=0, dense_measured=True))
        if row['chunked_peak_extra_bytes'] is not None:
            d['chunked'] = max(d['chunked'], row['chunked_peak_extra_bytes'])
        dense = row['dense_peak_extra_bytes']
        d['dense'] = max(d['dense'], dense if dense is not None else row['dense_estimated_bytes'])
        d['dense_measured'] &= row['dense_measured']
    run_time_s = time.perf_counter() - wall_start
    info = machine_info()

    lines = [
        '# Memory: graph-perturbation InfoNCE over all users and items',
        '',
        f'Command: `{command.strip()}`; {info["date"]}, commit {info["commit"]}; run time '
        f'{run_time_s:.0f} s; torch {torch.__version__}, {info["cores"]} cores. '
        f'Peak resident memory added by one forward + backward call '
        f'(VmHWM of a fresh process, reset before the call, minus the resident set '
        f'before it), d={args.dim}, tau={args.tau}, float32. "full" = the release\'s dense '
        f'N x N formula: measured where it fits in half the free memory, otherwise '
        f'its estimate (4 N x N float32 matrices) and not run.',
        '',
        '| dataset | side | rows | chunk (auto) | chunked (ours) | full matrices (release) '
        '| ours / full | value rel. diff vs float64 |',
        '|---|---|---:|---:|---:|---:|---:|---:|',
    ]
    for row in rows:
        chunked, dense = row['chunked_peak_extra_bytes'], row['dense_peak_extra_bytes']
        full = dense if dense is not None else row['dense_estimated_bytes']
        full_text = (
            fmt_bytes(dense)
            if dense is not None
            else (f'~{fmt_bytes(row["dense_estimated_bytes"])} (est., not run)')
        )
        ratio = f'{chunked / full:.3f}x' if chunked and full else 'n/a'
        lines.append(
            f'| {row["dataset"]} | {row["side"]} | {row["rows"]:,} | {row["chunk_size"]} | '
            f'{fmt_bytes(chunked)} | {full_text} | {ratio} | {row["value_rel_diff"]:.1e} |'
        )
    lines += [
        '',
        '| dataset | step peak, chunked | step peak, full matrices | ratio |',
        '|---|---:|---:|---:|',
    ]
    for name, d in datasets.items():
        full = fmt_bytes(d['dense']) + ('' if d['dense_measured'] else ' (est.)')
        ratio = f'{d["chunked"] / d["dense"]:.3f}x' if d['chunked'] and d['dense'] else 'n/a'
        lines.append(f'| {name} | {fmt_bytes(d["chunked"])} | {full} | {ratio} |')
    sports = datasets.get('Sports')
    if args.quick:
        lines += ['', f'Target <= 300 MB extra on Sports: {QUICK_TARGETS}.']
    elif sports is not None and sports['chunked']:
        verdict = 'met' if sports['chunked'] <= TARGET_BYTES else 'NOT met'
        lines += [
            '',
            f'Target <= 300 MB extra on Sports: {verdict} ({fmt_bytes(sports["chunked"])}).',
        ]
    text = '\n'.join(lines) + '\n'
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix('.md').write_text(text)
    return save_result(
        args.out,
        'memory',
        command=command.strip(),
        run_time_s=run_time_s,
        dim=args.dim,
        tau=args.tau,
        quick=args.quick,
        rows=rows,
        datasets=datasets,
    )


if __name__ == '__main__':
    main()

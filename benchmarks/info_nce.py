"""Benchmark: chunked InfoNCE against the dense formula, forward and backward.

Times :func:`pyg_mentor.nn.functional.info_nce` with ``chunk_size=None`` (the
dense formula of the release: the whole N x N similarity matrix under
autograd) and chunked (a custom autograd function that never holds more than
``chunk_size x N`` and computes the gradients in its forward pass), on the
shapes of MENTOR's graph-perturbation loss: all users / all items of a
dataset against their second noise view, 128 columns (2 x 64), tau = 0.2.
Both are timed in the same process, alternating, and their values and
gradients compared.

    python benchmarks/info_nce.py                        # Baby users and items
    python benchmarks/info_nce.py --chunk-sizes 1024 2048 4096 8192   # sweep
    python benchmarks/info_nce.py --full --measure-memory   # + Sports users, RSS
    python benchmarks/info_nce.py --quick                # small smoke run

Prints a markdown table (median milliseconds, time relative to dense, peak
extra memory) and writes JSON to ``runs/benchmarks/info_nce.json`` (``--out
benchmarks/results/info_nce.json`` updates the committed one). The
memory column is an estimate of what each version allocates beyond its
inputs: dense holds 2 N x N float matrices in the forward pass and 4 during
its backward pass; chunked one ``chunk_size x N`` block plus about eight
N x d matrices (calibrated against the measured peak RSS, which
``--measure-memory`` reports too, one fresh subprocess per measurement).
Dense is skipped where its estimate exceeds 80% of the available memory.
"""

from __future__ import annotations

import argparse
import inspect
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

if not __package__:  # `python benchmarks/info_nce.py`: import the checkout's package
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import torch
from torch import Tensor

from benchmarks._common import (
    available_bytes,
    check_out,
    default_out,
    fmt_bytes,
    out_help,
    save_result,
    status_bytes,
    time_interleaved,
)
from pyg_mentor.nn.functional import auto_chunk_size, info_nce

# (name, rows): MENTOR's InfoNCE runs over all users and over all items.
SHAPES = [('Baby users', 19445), ('Baby items', 7050)]
FULL_SHAPES = [('Sports users', 35598)]
QUICK_SHAPES = [('quick', 600)]
DEFAULT_CHUNK: int | str = inspect.signature(info_nce).parameters['chunk_size'].default


def chunk_arg(text: str) -> int | str:
    """A ``--chunk-sizes`` value: a positive integer or ``auto``."""
    if text == 'auto':
        return text
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'chunk size must be >= 1 or auto (got {text})')
    return value


def make_views(rows: int, dim: int, seed: int) -> tuple[Tensor, Tensor]:
    """Two correlated views, like MENTOR's two noise-perturbed views."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(rows, dim, generator=gen)
    return a, a + 0.3 * torch.randn(rows, dim, generator=gen)


def run_once(
    a: Tensor, b: Tensor, tau: float, chunk_size: int | None, backward: bool
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    if not backward:
        with torch.no_grad():
            return info_nce(a, b, tau, chunk_size), None, None
    a, b = a.detach().requires_grad_(), b.detach().requires_grad_()
    loss = info_nce(a, b, tau, chunk_size)
    loss.backward()
    return loss.detach(), a.grad, b.grad


def estimate_bytes(rows: int, dim: int, chunk_size: int | None, backward: bool) -> int:
    """Peak bytes allocated beyond the inputs (float32); see the module doc."""
    if chunk_size is None:
        return (4 if backward else 2) * rows * rows * 4
    return (min(chunk_size, rows) * rows + 8 * rows * (dim + 1)) * 4


def probe_memory(rows: int, dim: int, chunk_size: int | None, backward: bool, tau: float) -> int:
    """Run in a fresh process: peak RSS growth (bytes) of one call."""
    a, b = make_views(rows, dim, seed=0)
    run_once(a[:64], b[:64], tau, chunk_size, backward)  # lazy initialisation
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # reset the high-water mark VmHWM
    base = status_bytes('VmRSS:')
    run_once(a, b, tau, chunk_size, backward)
    return status_bytes('VmHWM:') - base


def measure_memory(
    rows: int, dim: int, chunk_size: int | None, backward: bool, tau: float
) -> int | None:
    if not os.path.exists('/proc/self/clear_refs'):
        return None
    spec = f'{rows},{dim},{chunk_size or 0},{int(backward)},{tau}'
    out = subprocess.run(
        [sys.executable, __file__, '--probe', spec], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip().splitlines()[-1])


def max_rel_diff(x: Tensor, y: Tensor) -> float:
    return float((x.double() - y.double()).abs().max() / y.double().abs().max())


def bench_cell(
    shape_name: str, a: Tensor, b: Tensor, backward: bool, args: argparse.Namespace
) -> list[dict]:
    """Times dense and every chunk size on one shape, one pass, interleaved."""
    rows, dim = a.shape
    methods: dict[str, int | None] = {'dense': None}
    for c in args.chunk_sizes:
        if c == 'auto':
            methods[f'chunked auto ({auto_chunk_size(rows)})'] = auto_chunk_size(rows)
        else:
            methods[f'chunked {c}'] = c
    avail = available_bytes()
    dense_bytes = estimate_bytes(rows, dim, None, backward)
    skipped = None
    if avail is not None and dense_bytes > 0.8 * avail:
        skipped = f'dense needs ~{fmt_bytes(dense_bytes)}, {fmt_bytes(avail)} available'
        del methods['dense']
    outs: dict[str, tuple] = {}

    def make_fn(name: str, chunk: int | None) -> Callable[[], None]:
        def fn() -> None:
            outs[name] = run_once(a, b, args.tau, chunk, backward)

        return fn

    times = time_interleaved(
        {name: make_fn(name, chunk) for name, chunk in methods.items()}, args.repeat, warmup=1
    )
    dense_ms = statistics.median(times['dense']) * 1e3 if 'dense' in times else None
    results = []
    for name, chunk in methods.items():
        row = dict(
            shape=shape_name, rows=rows, dim=dim, pass_='fwd+bwd' if backward else 'fwd',
            method=name, chunk_size=chunk, times_ms=[t * 1e3 for t in times[name]],
            median_ms=statistics.median(times[name]) * 1e3,
            estimated_peak_extra_bytes=estimate_bytes(rows, dim, chunk, backward),
            value=float(outs[name][0]), dense_skipped=skipped,
        )  # fmt: skip
        row['time_vs_dense'] = row['median_ms'] / dense_ms if dense_ms else None
        if 'dense' in outs and chunk is not None:
            ref = outs['dense']
            row['value_rel_diff'] = abs(row['value'] - float(ref[0])) / abs(float(ref[0]))
            if backward:
                row['grad_max_rel_diff'] = max(
                    max_rel_diff(outs[name][1], ref[1]), max_rel_diff(outs[name][2], ref[2])
                )
        if args.measure_memory:
            row['measured_peak_extra_bytes'] = measure_memory(rows, dim, chunk, backward, args.tau)
        results.append(row)
    return results


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--dim', type=int, default=128)
    parser.add_argument('--tau', type=float, default=0.2)
    parser.add_argument(
        '--chunk-sizes', type=chunk_arg, nargs='+', default=[DEFAULT_CHUNK],
        help=f'chunk sizes to time, integers or auto (default: {DEFAULT_CHUNK})',
    )  # fmt: skip
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--threads', type=int, default=None, help='torch threads (default: leave as is)'
    )
    parser.add_argument('--full', action='store_true', help='add Sports users (35,598 rows)')
    parser.add_argument(
        '--quick', action='store_true', help='small shape, 1 repetition (smoke test)'
    )
    parser.add_argument(
        '--measure-memory', action='store_true',
        help='also measure the peak RSS growth, one subprocess per cell (Linux)',
    )  # fmt: skip
    parser.add_argument(
        '--out', type=Path, default=default_out('info_nce'), help=out_help('info_nce')
    )
    parser.add_argument('--probe', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    check_out(args.out, args.quick)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.probe:  # child process of --measure-memory
        rows, dim, chunk, backward, tau = args.probe.split(',')
        print(probe_memory(int(rows), int(dim), int(chunk) or None, bool(int(backward)),
                           float(tau)))  # fmt: skip
        return {}
    shapes = SHAPES + (FULL_SHAPES if args.full else [])
    if args.quick:
        shapes, args.repeat = QUICK_SHAPES, 1
        rows = QUICK_SHAPES[0][1]  # only chunk sizes that do split the quick shape
        args.chunk_sizes = [
            c for c in args.chunk_sizes if (auto_chunk_size(rows) if c == 'auto' else c) < rows
        ] or [128]

    results = []
    for shape_name, rows in shapes:
        a, b = make_views(rows, args.dim, args.seed)
        for backward in (False, True):
            results += bench_cell(shape_name, a, b, backward, args)

    header = (
        f'InfoNCE, d={args.dim}, tau={args.tau}, float32, median of {args.repeat}, '
        f'{torch.get_num_threads()} threads, torch {torch.__version__}'
    )
    measured = args.measure_memory
    lines = [
        header,
        '',
        '| shape | rows x dim | pass | method | median ms | time / dense '
        '| peak extra memory (est.) |' + (' measured |' if measured else ''),
        '|---|---|---|---|---:|---:|---:|' + ('---:|' if measured else ''),
    ]
    for row in results:
        ratio = f'{row["time_vs_dense"]:.2f}x' if row['time_vs_dense'] else 'dense skipped'
        line = (
            f'| {row["shape"]} | {row["rows"]:,} x {row["dim"]} | {row["pass_"]} | '
            f'{row["method"]} | {row["median_ms"]:,.0f} | {ratio} | '
            f'{fmt_bytes(row["estimated_peak_extra_bytes"])} |'
        )
        if measured:
            line += f' {fmt_bytes(row["measured_peak_extra_bytes"])} |'
        lines.append(line)
    diffs = [r['value_rel_diff'] for r in results if 'value_rel_diff' in r]
    gdiffs = [r['grad_max_rel_diff'] for r in results if 'grad_max_rel_diff' in r]
    if diffs:
        summary = f'chunked vs dense: value rel. diff <= {max(diffs):.1e}'
        if gdiffs:
            summary += f', gradient max rel. diff <= {max(gdiffs):.1e}'
        lines += ['', summary]
        if not max(diffs) < 1e-6:
            raise RuntimeError('chunked and dense InfoNCE disagree')
    for row in results:
        if row['dense_skipped'] and row['method'] != 'dense':
            lines.append(f'{row["shape"]} {row["pass_"]}: {row["dense_skipped"]}; dense skipped')
    print('\n'.join(dict.fromkeys(lines)))

    result = save_result(
        args.out, 'info_nce',
        dim=args.dim, tau=args.tau, repeat=args.repeat, quick=args.quick, full=args.full,
        chunk_sizes=args.chunk_sizes,
        rows=results,
    )  # fmt: skip
    return result


if __name__ == '__main__':
    main()

"""Run the benchmark suite: every table, one command.

    python benchmarks/run.py --quick            # smoke run, a few minutes on 2 cores
    python benchmarks/run.py                    # default sizes
    python benchmarks/run.py --full             # adds Sports-sized / 1M-item / 10M-edge cells
    python benchmarks/run.py --only evaluation info_nce
    python benchmarks/run.py --out-dir benchmarks/results   # update the committed tables

``pyg-mentor benchmark ...`` runs the same from a checkout. Each benchmark writes its JSON
(and markdown where it has one) into ``--out-dir``: by default ``runs/benchmarks/``
(``runs/benchmarks/quick/`` with ``--quick``), both git-ignored; the committed tables under
``benchmarks/results/`` change only with ``--out-dir benchmarks/results``, which a quick run
refuses. Timings on a shared machine are noisy: every table reports medians and ratios
against a baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path

if not __package__:  # `python benchmarks/run.py`: import the checkout's package
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks._common import DEFAULT_OUT_DIR, check_out

# name -> options the script understands besides --quick / --out.
BENCHMARKS = {
    'startup': (),
    'evaluation': (),
    'info_nce': ('--full',),
    'propagation': ('--full',),
    'knn': ('--full',),
    'epoch': (),
    'memory': (),
}


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument('--quick', action='store_true', help='small shapes, 1 repetition')
    mode.add_argument('--full', action='store_true', help='add the largest cells')
    parser.add_argument(
        '--only',
        nargs='+',
        choices=list(BENCHMARKS),
        default=None,
        metavar='NAME',
        help=f'run only these ({", ".join(BENCHMARKS)})',
    )
    parser.add_argument(
        '--out-dir',
        type=Path,
        default=None,
        help=f'where results go (default: {DEFAULT_OUT_DIR}, or '
        f'{DEFAULT_OUT_DIR / "quick"} with --quick; '
        'benchmarks/results updates the committed tables)',
    )
    return parser


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> dict[str, float]:
    args = build_parser(prog).parse_args(argv)
    out_dir = args.out_dir
    if out_dir is None:
        out_dir = DEFAULT_OUT_DIR / 'quick' if args.quick else DEFAULT_OUT_DIR
    check_out(out_dir, args.quick)
    seconds = {}
    for name in args.only or BENCHMARKS:
        flags = ['--out', str(out_dir / f'{name}.json')]
        if args.quick:
            flags.append('--quick')
        elif args.full and '--full' in BENCHMARKS[name]:
            flags.append('--full')
        print(f'\n## {name} ({" ".join(flags)})\n', flush=True)
        start = time.perf_counter()
        importlib.import_module(f'benchmarks.{name}').main(flags)
        seconds[name] = time.perf_counter() - start
    print('\n| benchmark | seconds |\n|---|---:|')
    for name, value in seconds.items():
        print(f'| {name} | {value:.1f} |')
    print(f'\nresults: {out_dir}')
    return seconds


if __name__ == '__main__':
    sys.exit(0 if main() is not None else 1)

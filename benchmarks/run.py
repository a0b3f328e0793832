"""Run the benchmark suite: every table, one command.

    python benchmarks/run.py --quick            # smoke run, a few minutes on 2 cores
    python benchmarks/run.py                    # default sizes
    python benchmarks/run.py --full             # adds Sports-sized / 1M-item / 10M-edge cells
    python benchmarks/run.py --only evaluation info_nce

Each benchmark writes its JSON (and markdown where it has one) under
``benchmarks/results/``; quick runs write into ``--out-dir`` (default: a temporary
folder) so they never overwrite the committed full-run results. Timings on a shared
machine are noisy: every table reports medians and ratios against a baseline measured in
the same run.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name -> options the script understands besides --quick / --out.
BENCHMARKS = {
    'evaluation': (),
    'info_nce': ('--full',),
    'propagation': ('--full',),
    'knn': ('--full',),
    'epoch': (),
    'memory': (),
}


def load(name: str):
    spec = importlib.util.spec_from_file_location(f'benchmark_{name}', HERE / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument('--quick', action='store_true', help='small shapes, 1 repetition')
    mode.add_argument('--full', action='store_true', help='add the largest cells')
    parser.add_argument('--only', nargs='+', choices=sorted(BENCHMARKS), default=None)
    parser.add_argument('--out-dir', type=Path, default=None,
                        help='where results go (default: benchmarks/results, or a '
                             'temporary folder with --quick)')
    args = parser.parse_args(argv)

    out_dir = args.out_dir
    if out_dir is None:
        out_dir = Path(tempfile.mkdtemp(prefix='pyg_mentor_bench_')) if args.quick \
            else HERE / 'results'
    seconds = {}
    for name in args.only or BENCHMARKS:
        if not (HERE / f'{name}.py').exists():
            print(f'## {name}: skipped (benchmarks/{name}.py not present)')
            continue
        flags = ['--out', str(out_dir / f'{name}.json')]
        if args.quick:
            flags.append('--quick')
        elif args.full and '--full' in BENCHMARKS[name]:
            flags.append('--full')
        print(f'\n## {name} ({" ".join(flags)})\n', flush=True)
        start = time.perf_counter()
        load(name).main(flags)
        seconds[name] = time.perf_counter() - start
    print('\n| benchmark | seconds |\n|---|---:|')
    for name, value in seconds.items():
        print(f'| {name} | {value:.1f} |')
    print(f'\nresults: {out_dir}')
    return seconds


if __name__ == '__main__':
    sys.exit(0 if main() is not None else 1)

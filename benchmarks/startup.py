"""Benchmark: start-up time of the ``pyg-mentor`` command line.

Times, in fresh processes, what a user waits for before anything happens: ``--help``,
a subcommand's ``--help``, an argument error (a required option missing, an unknown
option), against the bare interpreter (``python -c pass``) and ``import torch`` measured
in the same run, interleaved. "cold" is the first call of ``pyg-mentor --help`` with an
empty bytecode cache (``PYTHONPYCACHEPREFIX`` set to a new folder: every module compiled
again), the others are warm (median of ``--repeat`` calls). Target: under 2 s for
``--help`` and argument errors on an idle machine; a busy machine multiplies every time
(the table records the load average).

    python benchmarks/startup.py            # 5 calls each
    python benchmarks/startup.py --quick    # 1 call each (smoke test)

Prints a markdown table and writes JSON to ``runs/benchmarks/startup.json`` and markdown
beside it (``--out benchmarks/results/startup.json`` updates the committed one). The
``imports torch`` column says whether the command imported torch at all (it should not
for help and argument errors).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if not __package__:  # `python benchmarks/startup.py`: import the checkout's package
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks._common import (
    QUICK_TARGETS,
    check_out,
    default_out,
    machine_info,
    machine_line,
    out_help,
    save_result,
)

TARGET_S = 2.0
#: What ``pyg-mentor`` runs (the console script's code), then reports whether torch
#: was imported, on stderr's last line.
CLI = (
    'import atexit, sys\n'
    "atexit.register(lambda: print('torch imported:', 'torch' in sys.modules, "
    'file=sys.stderr))\n'
    'from pyg_mentor.cli import main\n'
    'sys.exit(main())\n'
)
#: (label, arguments after ``pyg-mentor``, expected exit status, judged by the target)
COMMANDS = [
    ('pyg-mentor --help', ['--help'], 0, True),
    ('pyg-mentor train --help', ['train', '--help'], 0, True),
    ('pyg-mentor train (argument error: --model missing)', ['train', '--dataset', 'x'], 2, True),
    ('pyg-mentor train --bogus (argument error)', ['train', '--bogus'], 2, True),
    ('pyg-mentor compare --help', ['compare', '--help'], 0, True),
    # A command that needs the library (torch, PyG, which imports transformers where
    # that is installed): for scale, not judged.
    ('pyg-mentor models (loads the library)', ['models'], 0, False),
]
BASELINES = [
    ('python -c pass (interpreter)', ['-c', 'pass']),
    ('python -c "import torch"', ['-c', 'import torch']),
]


def call(args: Sequence[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """Seconds, exit status and stderr of ``python ARGS`` in a fresh process."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    return time.perf_counter() - start, done.returncode, done.stderr


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeat', type=int, default=5, help='warm calls per command')
    parser.add_argument('--quick', action='store_true', help='1 call each (smoke test)')
    parser.add_argument(
        '--out', type=Path, default=default_out('startup'), help=out_help('startup')
    )
    args = parser.parse_args(argv)
    check_out(args.out, args.quick)
    repeat = 1 if args.quick else args.repeat
    command = 'python benchmarks/startup.py ' + shlex.join(
        sys.argv[1:] if argv is None else list(argv)
    )
    started = time.perf_counter()

    cache = tempfile.mkdtemp(prefix='pyg_mentor_pycache_')
    try:
        cold_s, cold_status, _ = call(['-c', CLI, '--help'], {'PYTHONPYCACHEPREFIX': cache})
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    if cold_status != 0:
        raise RuntimeError(f'pyg-mentor --help exited with {cold_status}')

    cells = [
        (label, ['-c', CLI, *cli_args], status, judged)
        for label, cli_args, status, judged in COMMANDS
    ]
    cells += [(label, base, 0, False) for label, base in BASELINES]
    times: dict[str, list[float]] = {label: [] for label, *_ in cells}
    torch_imported: dict[str, bool | None] = {}
    for _ in range(repeat):  # interleaved, so that load hits every command alike
        for label, cmd, expected, _judged in cells:
            seconds, status, stderr = call(cmd)
            if status != expected:
                raise RuntimeError(
                    f'{label}: exit status {status}, expected {expected}:\n{stderr[-2000:]}'
                )
            times[label].append(seconds)
            if cmd[1] == CLI:
                torch_imported[label] = 'torch imported: True' in stderr

    python_s = statistics.median(times[BASELINES[0][0]])
    rows: list[dict[str, Any]] = [
        dict(
            command='pyg-mentor --help, cold (empty bytecode cache)',
            times_s=[cold_s],
            median_s=cold_s,
            judged=True,
            imports_torch=None,
        )
    ]
    rows += [
        dict(
            command=label,
            times_s=times[label],
            median_s=statistics.median(times[label]),
            judged=judged,
            imports_torch=torch_imported.get(label),
        )
        for label, _cmd, _status, judged in cells
    ]
    for row in rows:
        row['vs_python'] = row['median_s'] / python_s
        row['met'] = (row['median_s'] < TARGET_S) if row['judged'] and not args.quick else None
    run_time_s = time.perf_counter() - started
    info = machine_info()

    lines = [
        '# Start-up of the command line',
        '',
        f'Command: `{command.strip()}`; run time {run_time_s:.0f} s; {machine_line(info)}.',
        '',
        f'Fresh process per call, median of {repeat} (interleaved); "cold": one call with '
        'an empty bytecode cache. Target: under '
        f'{TARGET_S:g} s for help and argument errors on an idle machine.',
        '',
        '| command | median s | / python -c pass | imports torch | target |',
        '|---|---:|---:|---|---|',
    ]
    for row in rows:
        verdict = (
            '-'
            if not row['judged']
            else QUICK_TARGETS
            if args.quick
            else 'met'
            if row['met']
            else 'NOT met'
        )
        torch_cell = {None: '-', True: 'yes', False: 'no'}[row['imports_torch']]
        lines.append(
            f'| {row["command"]} | {row["median_s"]:.2f} | '
            f'{row["vs_python"]:.1f}x | {torch_cell} | {verdict} |'
        )
    text = '\n'.join(lines) + '\n'
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix('.md').write_text(text)
    return save_result(
        args.out,
        'startup',
        command=command.strip(),
        run_time_s=run_time_s,
        repeat=repeat,
        quick=args.quick,
        target_s=TARGET_S,
        rows=rows,
    )


if __name__ == '__main__':
    main()

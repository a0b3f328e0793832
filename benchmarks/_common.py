r"""What the benchmark and report scripts share: where results go, what every result
records about the machine, interleaved timing, and the markdown of the machine line.

Results go to ``runs/benchmarks/`` (git-ignored) unless ``--out`` names another place;
the committed tables under ``benchmarks/results/`` are rewritten only when asked
(``--out benchmarks/results/<name>.json``), and never by a quick (smoke) run.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

#: The checkout this package lives in.
REPO = Path(__file__).resolve().parents[1]
#: The committed result tables (written only on request, never by a quick run).
RESULTS = REPO / 'benchmarks' / 'results'
#: Where results go by default (relative to the working folder, git-ignored).
DEFAULT_OUT_DIR = Path('runs') / 'benchmarks'
#: What a quick (smoke) run prints where a full-size run states its targets.
QUICK_TARGETS = 'quick mode: targets not applicable'


def default_out(name: str) -> Path:
    r"""The default JSON output of benchmark :obj:`name`: ``runs/benchmarks/<name>.json``."""
    return DEFAULT_OUT_DIR / f'{name}.json'


def out_help(name: str) -> str:
    r"""The ``--out`` help text of benchmark :obj:`name`."""
    return (
        f'JSON output, markdown beside it where the script writes one (default: '
        f'{default_out(name)}; to update the committed table: '
        f'--out benchmarks/results/{name}.json)'
    )


def check_out(path: str | Path, quick: bool) -> Path:
    r"""The output path, after refusing a quick run that would write into the
    committed ``benchmarks/results/``.

    Raises:
        ValueError: If :obj:`quick` and :obj:`path` lies in ``benchmarks/results/``.
    """
    path = Path(path)
    if quick and path.resolve().is_relative_to(RESULTS.resolve()):
        raise ValueError(
            f'{path}: a quick run does not write into benchmarks/results/ '
            '(the committed full-size tables); choose another --out'
        )
    return path


def time_interleaved(
    fns: Mapping[str, Callable[[], object]], repeat: int, warmup: int = 0
) -> dict[str, list[float]]:
    r"""Seconds of :obj:`repeat` calls of every function, alternating between them so
    that load from other processes hits all of them alike, after :obj:`warmup`
    untimed calls of each. A function that must keep its output stores it itself."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def _commit() -> str | None:
    try:
        # e.g. 'bf43582', or 'bf43582-dirty' when the working tree has uncommitted changes
        out = subprocess.run(
            ['git', 'describe', '--always', '--dirty', '--abbrev=7'],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=REPO,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def machine_info() -> dict[str, Any]:
    r"""Date, commit, library versions, threads, cores, load and OpenMP wait policy."""
    import torch
    import torch_geometric

    return {
        'date': datetime.datetime.now().isoformat(timespec='seconds'),
        'commit': _commit(),
        'torch': torch.__version__,
        'torch_geometric': torch_geometric.__version__,
        'python': platform.python_version(),
        'threads': torch.get_num_threads(),
        'cores': os.cpu_count(),
        'omp_wait_policy': os.environ.get('OMP_WAIT_POLICY'),
        'load_average': os.getloadavg() if hasattr(os, 'getloadavg') else None,
    }


def machine_line(info: Mapping[str, Any] | None = None) -> str:
    r"""``'<date>, commit <c>; torch <v>, <t> threads on <n> cores, load average
    <a, b, c>, OMP_WAIT_POLICY=<p>'``: the line every markdown table starts with."""
    info = machine_info() if info is None else info
    load = info['load_average']
    return (
        f'{info["date"]}, commit {info["commit"]}; torch {info["torch"]}, '
        f'{info["threads"]} threads on {info["cores"]} cores, load average '
        f'{"n/a" if load is None else ", ".join(f"{x:.1f}" for x in load)}, '
        f'OMP_WAIT_POLICY={info["omp_wait_policy"] or "unset"}'
    )


def save_result(path: str | Path, benchmark: str, **fields: Any) -> dict[str, Any]:
    r"""Writes ``{'benchmark': ..., **machine_info(), **fields}`` as JSON."""
    result = {'benchmark': benchmark, **machine_info(), **fields}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + '\n')
    return result


def status_bytes(key: str) -> int:
    r"""A memory field of ``/proc/self/status`` in bytes, e.g. ``'VmRSS:'`` (the
    resident set) or ``'VmHWM:'`` (its peak). Linux only."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def available_bytes() -> int | None:
    r"""``MemAvailable`` of ``/proc/meminfo`` in bytes, or :obj:`None` off Linux."""
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def fmt_bytes(n: int | float | None) -> str:
    r"""``'241 MB'``, ``'5.67 GB'``, ``'3.6 TB'`` (binary units), ``'n/a'`` for :obj:`None`."""
    if n is None:
        return 'n/a'
    if n >= 2**40:
        return f'{n / 2**40:.1f} TB'
    return f'{n / 2**30:.2f} GB' if n >= 2**30 else f'{n / 2**20:.0f} MB'

r"""What every benchmark result records about the machine it ran on."""
from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch


def _commit() -> str | None:
    try:
        # e.g. 'bf43582', or 'bf43582-dirty' when the working tree has uncommitted changes
        out = subprocess.run(['git', 'describe', '--always', '--dirty', '--abbrev=7'],
                             capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def machine_info() -> dict[str, Any]:
    r"""Date, commit, library versions, threads, cores, load and OpenMP wait policy."""
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

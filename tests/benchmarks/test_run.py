"""The benchmark runner as a user calls it: a command in a fresh process."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import run

REPO = Path(__file__).resolve().parents[2]


def command(*args, cwd, env=None):
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, **(env or {})},
    )


def test_script_runs_the_quick_suite_into_runs(tmp_path):
    # propagation's quick mode crashed when its module was loaded from a path
    # (PyG inspects `sys.modules[cls.__module__]`); evaluation is the cheapest.
    done = command(
        str(REPO / 'benchmarks' / 'run.py'),
        '--quick',
        '--only',
        'propagation',
        'evaluation',
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / 'runs' / 'benchmarks' / 'quick'  # the default, git-ignored
    for name in ('propagation', 'evaluation'):
        assert json.loads((out / f'{name}.json').read_text())['quick'] is True
    assert (
        '| propagation |' in done.stdout
        and f'results: {Path("runs/benchmarks/quick")}' in done.stdout
    )
    assert 'MISSED' not in done.stdout


def test_cli_benchmark_from_a_checkout(tmp_path):
    done = command(
        '-m',
        'pyg_mentor.cli',
        'benchmark',
        '--quick',
        '--only',
        'evaluation',
        '--out-dir',
        str(tmp_path / 'b'),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / 'b' / 'evaluation.json').exists()
    helped = command('-m', 'pyg_mentor.cli', 'benchmark', '--help', cwd=tmp_path)
    assert helped.returncode == 0 and helped.stdout.startswith('usage: pyg-mentor benchmark')


def test_without_a_checkout_the_cli_says_so(tmp_path):
    # An installed wheel: the package without the source tree beside it.
    shutil.copytree(
        REPO / 'pyg_mentor',
        tmp_path / 'site' / 'pyg_mentor',
        ignore=shutil.ignore_patterns('__pycache__'),
    )
    for tool in ('benchmark', 'compare'):
        done = command(
            '-c',
            'import sys; from pyg_mentor.cli import main; sys.exit(main())',
            tool,
            '--quick',
            cwd=tmp_path,
            env={'PYTHONPATH': str(tmp_path / 'site')},
        )
        assert done.returncode == 2
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f'pyg-mentor: error: `pyg-mentor {tool}`')
        assert 'source checkout' in lines[0] and 'pip install -e .' in lines[0]


def test_quick_never_writes_the_committed_results(tmp_path):
    results = REPO / 'benchmarks' / 'results'
    with pytest.raises(ValueError, match='quick run does not write into benchmarks/results'):
        run.main(['--quick', '--only', 'evaluation', '--out-dir', str(results)])
    from benchmarks import evaluation

    with pytest.raises(ValueError, match='benchmarks/results'):
        evaluation.main(['--quick', '--out', str(results / 'evaluation.json')])

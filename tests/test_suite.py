"""The test suite keeps its promise: slow, data-heavy tests are marked and left out by
default, and `pytest -m slow` runs them."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def collect(*args: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, '-m', 'pytest', '--collect-only', '-q', '-p', 'no:cacheprovider', *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {line for line in done.stdout.splitlines() if '::' in line}


def test_slow_tests_are_marked_and_deselected_by_default():
    slow = collect('-m', 'slow', 'tests/features', 'tests/benchmarks', 'tests/test_examples.py')
    assert {
        'tests/features/test_cli_features.py::test_reproduces_the_published_lfm2k_text_features',
        'tests/benchmarks/test_knn.py::test_quick_run',
        'tests/benchmarks/test_memory.py::test_quick_run',
        'tests/test_examples.py::test_train_baby_defaults_to_mentor_with_a_cpu_cap',
    } <= slow
    default = collect('tests/features', 'tests/benchmarks', 'tests/test_examples.py')
    assert default and not default & slow

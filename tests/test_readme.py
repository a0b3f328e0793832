"""The README's command-line section, run as a user runs it: every command in a fresh
process, in a copy of the repository, and afterwards `git status` shows no change.

Only the lengths are shortened (1 epoch, 2 when resuming; one benchmark of the quick
suite), and the copy's `datasets/baby` holds a small planted dataset (the same files as
MMRec's, no item features, like the real Baby), so the walk takes a minute or two.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def readme_commands() -> list[list[str]]:
    r"""The commands of the first bash block of the README's "Command line" section,
    continuation lines joined, comments removed."""
    section = (REPO / 'README.md').read_text().split('\n## Command line\n')[1]
    block = section.split('```bash\n', 1)[1].split('\n```', 1)[0]
    commands, current = [], ''
    for line in block.splitlines():
        current += line.rstrip()
        if current.endswith('\\'):
            current = current[:-1] + ' '
            continue
        commands.append(shlex.split(current, comments=True))
        current = ''
    return [c for c in commands if c]


def shorten(args: list[str]) -> list[str]:
    r"""The same command with fewer epochs (the only change made to it)."""
    args = list(args)
    option, value = {
        'train': ('--epochs', '2' if '--resume' in args else '1'),
        'compare': ('--max-epochs', '1'),
    }.get(args[1], (None, None))
    if option is not None:
        assert not any(a.startswith('epochs=') for a in args), args  # use --epochs
        if option in args:
            args[args.index(option) + 1] = value
        else:
            args += [option, value]
    if args[1] == 'benchmark':
        args += ['--only', 'evaluation']  # the suite runs in tests/benchmarks/test_run.py
    return args


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ['git', '-c', 'user.name=test', '-c', 'user.email=test@test', *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


@pytest.fixture(scope='module')
def clone(tmp_path_factory) -> Path:
    r"""A copy of the repository's files (tracked and new, not ignored) as a git
    repository of its own, with a small planted dataset as `datasets/baby`."""
    if shutil.which('git') is None:
        pytest.skip('needs git')
    from pyg_mentor.datasets.synthetic import make_planted, write_mmrec

    root = tmp_path_factory.mktemp('clone')
    files = git('ls-files', '-co', '--exclude-standard', '-z', cwd=REPO).split('\0')
    for name in filter(None, files):
        if (REPO / name).is_file() and not name.startswith('datasets/baby/'):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    data = make_planted(num_users=150, num_items=60, seed=0)
    for modality in ('image', 'text'):
        del data['item'][f'x_{modality}']
    write_mmrec(data, root / 'datasets', 'baby')
    git('init', '-q', cwd=root)
    git('add', '-A', cwd=root)
    git('commit', '-qm', 'clone', cwd=root)
    return root


def test_readme_commands_run_and_change_no_tracked_file(clone):
    commands = readme_commands()
    assert [c[1] for c in commands].count('train') >= 5 and len(commands) >= 12
    script = Path(sys.executable).parent / 'pyg-mentor'
    program = [str(script)] if script.exists() else [sys.executable, '-m', 'pyg_mentor.cli']
    env = {**os.environ, 'PYTHONPATH': str(clone), 'OMP_NUM_THREADS': '1'}
    env.pop('PYG_MENTOR_DATA', None)
    for args in map(shorten, commands):
        assert args[0] == 'pyg-mentor', args
        done = subprocess.run(
            program + args[1:], cwd=clone, env=env, capture_output=True, text=True, timeout=900
        )
        command = shlex.join(args)
        assert done.returncode == 0, f'{command}\n{done.stderr[-4000:]}'
        for noise in ('Traceback', 'UserWarning', 'Processing...', 'Done!'):
            assert noise not in done.stderr, f'{command}: {noise!r} in\n{done.stderr[-4000:]}'
        if args[1] == 'train':
            plan = [line for line in done.stderr.splitlines() if 'plan: up to' in line]
            assert plan, f'{command}: no plan line in\n{done.stderr[-2000:]}'
            assert done.stdout.count('| valid |') == 1  # the table, once
    assert git('status', '--porcelain', '--untracked-files=all', cwd=clone) == ''
    # What the commands wrote is under runs/ (git-ignored).
    assert (clone / 'runs' / 'lgn' / 'metrics.json').exists()
    assert (clone / 'runs' / 'compare-baby' / 'compare_baby.md').exists()
    assert (clone / 'runs' / 'benchmarks' / 'quick' / 'evaluation.json').exists()

r"""Helpers of the reliability suite: one test per case of issue 14 (trust
boundaries and run-folder integrity), each written to fail on the code the
issue was filed against and to pass after it."""

import builtins
import errno
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from pyg_mentor.cli import main
from pyg_mentor.datasets.synthetic import make_planted, write_mmrec

# The training options of every test run: tiny and quiet.
FAST = ['epochs=2', 'progress=false', 'tensorboard=false', 'batch_size=256']


class Payload:
    r"""Pickles to a call of ``subprocess.check_call`` that creates
    :obj:`marker`: if any loader unpickles it, the marker appears."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (
            subprocess.check_call,
            ([sys.executable, '-c', f'open({self.marker!r}, "w").close()'],),
        )


@pytest.fixture
def toy(tmp_path):
    r"""An MMRec data set ``<tmp>/data/toy`` of planted data: ``(root, data)``."""
    data = make_planted(num_users=120, num_items=60, seed=1)
    root = tmp_path / 'data'
    write_mmrec(data, root, 'toy')
    return root, data


def train(root, out, *args, dataset='toy', model='mf_bpr', sets=FAST):
    r"""``pyg-mentor train`` in-process; returns the exit status."""
    return main(
        [
            'train',
            '--model',
            model,
            '--dataset',
            dataset,
            '--root',
            str(root),
            '--out',
            str(out),
            '--set',
            *sets,
            *args,
        ]
    )


def one_line_error(capsys, *fragments) -> str:
    r"""Asserts that stderr ends with exactly one ``error:`` line holding every
    fragment and no traceback; returns it."""
    err = capsys.readouterr().err
    assert 'Traceback' not in err, err
    lines = [line for line in err.splitlines() if 'error:' in line]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def read_json(path):
    return json.loads(Path(path).read_text())


@pytest.fixture
def read_only(monkeypatch):
    r"""Makes folders read-only: ``chmod 555`` (enough for a normal user) and,
    since root ignores modes, every write below them fails with EACCES as it
    would on a read-only file system."""
    blocked: list[str] = []

    def inside(path) -> bool:
        try:
            path = os.path.realpath(os.fspath(path))
        except TypeError:  # a file descriptor
            return False
        return any(path == b or path.startswith(b + os.sep) for b in blocked)

    def deny(path):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))

    real_open, real_os_open = builtins.open, os.open
    real_mkdir, real_replace, real_unlink = os.mkdir, os.replace, os.unlink

    def fake_open(file, mode='r', *args, **kwargs):
        if inside(file) and any(c in mode for c in 'wax+'):
            deny(file)
        return real_open(file, mode, *args, **kwargs)

    def fake_os_open(path, flags, *args, **kwargs):
        writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
        if inside(path) and flags & writes:
            deny(path)
        return real_os_open(path, flags, *args, **kwargs)

    def fake_mkdir(path, *args, **kwargs):
        if inside(path):
            if os.path.isdir(path):
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), path)
            deny(path)
        return real_mkdir(path, *args, **kwargs)

    def fake_replace(src, dst, *args, **kwargs):
        if inside(dst):
            deny(dst)
        return real_replace(src, dst, *args, **kwargs)

    def fake_unlink(path, *args, **kwargs):
        if inside(path):
            deny(path)
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(builtins, 'open', fake_open)
    monkeypatch.setattr(io, 'open', fake_open)
    monkeypatch.setattr(os, 'open', fake_os_open)
    monkeypatch.setattr(os, 'mkdir', fake_mkdir)
    monkeypatch.setattr(os, 'replace', fake_replace)
    monkeypatch.setattr(os, 'unlink', fake_unlink)
    monkeypatch.setattr(tempfile, '_os', os)
    modes = []

    def make(folder):
        folder = Path(folder)
        for path in [folder, *folder.rglob('*')]:
            if path.is_dir():
                modes.append((path, path.stat().st_mode))
                path.chmod(0o555)
        blocked.append(os.path.realpath(folder))

    yield make
    for path, mode in modes:
        path.chmod(mode)


def tensor_of(text: str) -> torch.Tensor:
    return torch.tensor([int(x) for x in text.split(',')])


@pytest.fixture
def h():
    r"""The helpers of this suite (test modules cannot import conftest)."""
    return SimpleNamespace(
        Payload=Payload,
        train=train,
        one_line_error=one_line_error,
        read_json=read_json,
        FAST=FAST,
        main=main,
    )

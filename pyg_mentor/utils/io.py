r"""Small, general file and tensor helpers: crash-safe saving, loading files that
came from outside the process without running code, and content digests."""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

#: The only globals a file loaded by :func:`safe_torch_load` may reference
#: beyond tensors and plain containers (what ``weights_only=True`` allows by
#: default): the pieces of a NumPy array, for the NumPy random state
#: (``np.random.get_state()``) kept in training checkpoints. None of them runs
#: code of the file's choosing.
try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover  (NumPy < 2)
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]

SAFE_GLOBALS: tuple[Any, ...] = (
    _reconstruct,
    np.ndarray,
    np.dtype,
    type(np.dtype(np.uint32)),
)

_ZIP_MAGIC = b'PK\x03\x04'


class UnsafeFileError(ValueError):
    r"""A file would run code if it were loaded (it references a Python
    function or class that is not on the allow-list); it is refused."""


class CorruptFileError(ValueError):
    r"""A file is truncated, empty, or not in the expected format."""


def safe_torch_load(
    path: str | Path,
    map_location: Any = 'cpu',
    *,
    what: str = 'file',
) -> Any:
    r"""Loads a file written by :func:`torch.save` without ever running code
    from it: :func:`torch.load` with :obj:`weights_only=True`, the explicit
    allow-list :obj:`SAFE_GLOBALS` and no fallback.

    Only PyTorch's zip format is read; raw pickle files (which can run code
    whatever :obj:`weights_only` says about them) and the legacy format are
    refused before any byte is unpickled.

    Args:
        path (str or pathlib.Path): The file.
        map_location: Where tensors go, as in :func:`torch.load`.
        what (str, optional): What the file is, for the messages (e.g.
            ``'checkpoint'``).

    Raises:
        FileNotFoundError: If the file does not exist.
        UnsafeFileError: If loading it would call a function or build an
            object outside the allow-list (code execution).
        CorruptFileError: If the file is empty, truncated or not a
            :func:`torch.save` file.
    """
    path = Path(path)
    with open(path, 'rb') as f:
        head = f.read(4)
    if not head:
        raise CorruptFileError(f'{path}: not a readable {what}: the file is empty')
    if head != _ZIP_MAGIC:
        raise CorruptFileError(
            f'{path}: not a readable {what}: it is not a file written by torch.save '
            '(no zip archive); raw pickle and legacy files are never loaded, since '
            'they can run code'
        )
    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r'GLOBAL (\S+)', str(e))
        if found or 'Unsupported global' in str(e):
            name = found.group(1) if found else 'a global'
            raise UnsafeFileError(
                f'{path}: refused to load this {what}: it references {name}, which '
                'could run code when loaded (only tensors, numbers, strings and '
                "containers are loaded; see README, 'Trust and safety')"
            ) from None
        raise CorruptFileError(f'{path}: not a readable {what}: {_first_line(e)}') from None
    except Exception as e:  # noqa: BLE001  Any other failure: a damaged file.
        raise CorruptFileError(
            f'{path}: not a readable {what} (truncated or damaged): '
            f'{type(e).__name__}: {_first_line(e)}'
        ) from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else repr(e)


def atomic_write_text(path: str | Path, text: str) -> Path:
    r"""Writes :obj:`text` to :obj:`path` so that :obj:`path` is either left
    untouched or holds the complete new text (temporary file in the same
    folder, :func:`os.fsync`, :func:`os.replace`), like
    :func:`atomic_torch_save`. Concurrent writers never share a temporary
    file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'w') as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    return path


def file_digest(paths: Iterable[str | Path], chunk_size: int = 1 << 20) -> str:
    r"""A SHA-256 hex digest of the names and bytes of files, in the given
    order: two lists of files have the same digest exactly when their base
    names and contents are equal (modification times do not enter)."""
    hasher = hashlib.sha256(b'file_digest:v1;')
    for path in paths:
        path = Path(path)
        hasher.update(f'{path.name}|{path.stat().st_size};'.encode())
        with open(path, 'rb') as f:
            while chunk := f.read(chunk_size):
                hasher.update(chunk)
    return hasher.hexdigest()


def _tensors(data: Any):
    r"""``(name, tensor or value)`` of every store attribute of a data object,
    in a fixed order."""
    for store in sorted(data.stores, key=lambda s: repr(getattr(s, '_key', None))):
        owner = getattr(store, '_key', None)
        owner = '__'.join(owner) if isinstance(owner, tuple) else owner or 'global'
        for key in sorted(store.keys()):
            value = store[key]
            if isinstance(value, Tensor) and value.layout != torch.strided:
                value = value.to_dense()
            yield f'{owner}.{key}', value


def hetero_digest(data: Any) -> str:
    r"""A SHA-256 hex digest that identifies the dataset a run was trained on:
    the exact content of every integer and boolean tensor of a
    :class:`~torch_geometric.data.HeteroData` (interactions, splits; see
    :func:`tensor_digest`), the plain attributes (node counts), and the name,
    dtype and shape of every floating tensor (features).

    Floating values are left to :func:`hetero_fingerprint`, because features
    computed rather than read (e.g. surrogate features from a truncated SVD)
    differ in their last bits with the number of threads."""
    hasher = hashlib.sha256(b'hetero_digest:v2;')
    for name, value in _tensors(data):
        if isinstance(value, Tensor) and value.is_floating_point():
            hasher.update(f'{name}=float:{value.dtype}:{tuple(value.shape)};'.encode())
        elif isinstance(value, Tensor):
            hasher.update(f'{name}=tensor:{tensor_digest(value)};'.encode())
        else:
            hasher.update(f'{name}={value!r};'.encode())
    return hasher.hexdigest()


def hetero_fingerprint(data: Any) -> dict[str, list[float]]:
    r"""Sums of every floating tensor of a data object that change when its
    values change, but not with rounding noise. With :math:`x` viewed as a
    matrix :math:`[N, d]` (rows: nodes): :math:`[\sum |x|, \sum x, \sum x^2,
    \sum_i w_i \sum_j x_{ij}, \sum_j v_j \sum_i x_{ij}]`, accumulated in
    float64, with fixed weights :math:`w, v \in [-1, 1]`. Compare two with
    :func:`fingerprint_changes`; a change far below the rounding noise of the
    sums (e.g. one entry of a large matrix moved by a tiny amount) can go
    unnoticed."""
    out = {}
    for name, value in _tensors(data):
        if not (isinstance(value, Tensor) and value.is_floating_point()):
            continue
        x = value.detach().to('cpu')
        x = x.reshape(x.size(0), -1) if x.dim() > 0 else x.reshape(1, 1)
        f64 = torch.float64
        rows, cols = x.sum(dim=1, dtype=f64), x.sum(dim=0, dtype=f64)
        w = torch.remainder(torch.arange(x.size(0), dtype=f64) * 7919, 251) / 125 - 1
        v = torch.remainder(torch.arange(x.size(1), dtype=f64) * 104729 + 17, 509) / 254 - 1
        out[name] = [
            float(x.abs().sum(dtype=f64)),
            float(rows.sum()),
            float(x.square().sum(dtype=f64)),
            float(w @ rows),
            float(v @ cols),
        ]
    return out


def fingerprint_changes(
    saved: dict[str, list[float]], now: dict[str, list[float]], rtol: float = 1e-6
) -> list[str]:
    r"""The names of the floating tensors whose :func:`hetero_fingerprint`
    differs beyond :obj:`rtol` (relative to :math:`\sum |x_i|`, and to
    :math:`\sum x_i^2` for that sum), or that exist in only one of them."""
    changed = sorted(set(saved) ^ set(now))
    for name in sorted(set(saved) & set(now)):
        a, b = saved[name], now[name]
        if len(a) != len(b):
            changed.append(name)
            continue
        scale = max(abs(a[0]), abs(b[0]), 1e-30)
        squares = max(abs(a[2]), abs(b[2]), 1e-30)
        if any(
            abs(x - y) > rtol * (squares if j == 2 else scale) for j, (x, y) in enumerate(zip(a, b))
        ):
            changed.append(name)
    return changed


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    r"""Saves :obj:`obj` with :func:`torch.save` so that :obj:`path` is either
    left untouched or holds the complete new file, never a partial one.

    The object is first written to a temporary file in the same folder as
    :obj:`path` (hence on the same file system), flushed and :func:`os.fsync`-ed,
    then moved over :obj:`path` with :func:`os.replace`, which is atomic on
    POSIX and Windows. A crash or an exception while writing leaves no file
    behind at :obj:`path` and removes the temporary file. Missing parent
    folders are created.

    Args:
        obj (Any): Any object :func:`torch.save` accepts.
        path (str or pathlib.Path): The destination file.

    Returns:
        pathlib.Path: The destination path.

    Example:
        >>> atomic_torch_save({'w': torch.ones(2)}, 'ckpt/model.pt')
        PosixPath('ckpt/model.pt')
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not supported on every platform
    # (e.g. Windows cannot open a folder), where it is skipped.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def tensor_digest(*tensors: Tensor) -> str:
    r"""Returns a SHA-256 hex digest of the content of one or more tensors.

    Each tensor contributes its dtype, its shape and the bytes of its
    contiguous CPU copy, in order, so two argument lists have the same digest
    exactly when they hold tensors of equal dtypes, shapes and bit-identical
    values. The device, strides and :obj:`requires_grad` do not enter the
    digest. Use it to key caches by the data they were derived from.

    Args:
        *tensors (torch.Tensor): Dense (strided) tensors of any dtype.

    Returns:
        str: 64 hexadecimal characters.

    Example:
        >>> tensor_digest(torch.zeros(2, 3)) == tensor_digest(torch.zeros(2, 3))
        True
        >>> tensor_digest(torch.zeros(2, 3)) == tensor_digest(torch.zeros(3, 2))
        False
    """
    hasher = hashlib.sha256()
    hasher.update(f'tensor_digest:v1:{len(tensors)};'.encode())
    for i, tensor in enumerate(tensors):
        if not isinstance(tensor, Tensor):
            raise TypeError(
                f"Argument {i} of 'tensor_digest' must be a "
                f'torch.Tensor (got {type(tensor).__name__})'
            )
        if tensor.layout != torch.strided:
            raise TypeError(
                f"Argument {i} of 'tensor_digest' must be a dense "
                f'tensor (got layout {tensor.layout})'
            )
        t = tensor.detach().cpu().resolve_conj().resolve_neg().contiguous()
        header = f'{t.dtype}|{tuple(t.shape)}|{t.numel() * t.element_size()};'
        hasher.update(header.encode())
        if t.numel() > 0:
            # A byte view works for every dtype, including those numpy lacks
            # (e.g. bfloat16), and avoids copying the data once more.
            hasher.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return hasher.hexdigest()

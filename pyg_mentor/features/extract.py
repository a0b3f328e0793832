r"""Batched, resumable writing of MMRec feature files ``<modality>_feat.npy``.

:func:`extract_features` encodes the value (a text, an image path, ...) of every
MMRec item with an *encoder* and writes a float32 matrix whose row :obj:`i` belongs
to item :obj:`i`. An item without a value, or whose value fails to encode (e.g. an
image that does not decode), never shifts a row: it is counted, reported by id and
handled by the :obj:`missing` policy:

* :obj:`'error'` (default): raise, listing the items (nothing is written);
* :obj:`'zero'`: a zero row;
* :obj:`'mean'`: the mean of the encoded rows.

Work is kept across a crash or a kill: the items are encoded in a fixed order in
batches of :obj:`batch_size`, and each finished batch is saved (atomically) in a side
folder ``.<name>.partial-<key>`` next to the output, where ``key`` is a hash of the
encoder's fingerprint, the batch size and every (item, value) pair. A rerun with the
same inputs and options continues after the last saved batch and writes the same
file as an uninterrupted run; the side folder is removed once the file is written.
The output itself is written to a temporary file and renamed, so it is either
absent or complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, Protocol

import numpy as np
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

#: The policies for items without a usable value.
MISSING_POLICIES = ('error', 'zero', 'mean')
#: Bump when the side-folder layout changes, so older partial results are not used.
_PARTIAL_VERSION = 1
_SHOW = 20


class FeatureExtractionError(ValueError):
    r"""Items without a usable value under :obj:`missing='error'`, or an encoder
    that returned something other than one finite row per item."""


class MissingDependencyError(ImportError):
    r"""An optional package needed for feature extraction is not installed; the
    message says how to install it."""


class Encoder(Protocol):
    r"""What :func:`extract_features` needs from an encoder.

    :obj:`encode(values)` returns a float array of shape :obj:`[len(values), dim]`,
    or a pair of that array and, per value, :obj:`None` (encoded) or the reason it
    failed (its row is then ignored). :obj:`fingerprint` identifies the model and
    its options (it keys the partial results). Optionally, :obj:`describe(value)`
    gives the string hashed for a value (default: the value; e.g. an image path
    with the file's size and modification time) and :obj:`precheck(values)` gives,
    per value, :obj:`None` or the reason it will certainly fail (e.g. a missing
    file), so that :obj:`missing='error'` fails before any encoding.
    """

    fingerprint: str

    def encode(
        self, values: Sequence[str]
    ) -> np.ndarray | tuple[np.ndarray, Sequence[str | None]]: ...


@dataclass
class FeatureReport:
    r"""What :func:`extract_features` did.

    Args:
        path (pathlib.Path): The written ``.npy`` file.
        num_items (int): Rows written.
        dim (int): Columns written.
        encoded (int): Items whose row comes from the encoder.
        missing (list[int]): MMRec ids without a value.
        failed (dict[int, str]): MMRec id -> why its value failed to encode.
        policy (str): How :obj:`missing` and :obj:`failed` rows were filled.
        batches (int): Number of batches.
        resumed_batches (int): Batches read back from an interrupted run.
        seconds (float): Wall time.
        original_ids (list[str | None]): Original id of every MMRec id, if known.
    """

    path: Path
    num_items: int
    dim: int
    encoded: int
    missing: list[int]
    failed: dict[int, str]
    policy: str
    batches: int
    resumed_batches: int
    seconds: float
    original_ids: list[str | None] | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        r"""A JSON-serialisable summary listing every missing and failed item."""

        def original(i: int) -> str | None:
            return self.original_ids[i] if self.original_ids else None

        return {
            'path': str(self.path),
            'num_items': self.num_items,
            'dim': self.dim,
            'dtype': 'float32',
            'encoded': self.encoded,
            'policy': self.policy,
            'missing': [{'item': i, 'original_id': original(i)} for i in self.missing],
            'failed': [
                {'item': i, 'original_id': original(i), 'reason': r}
                for i, r in sorted(self.failed.items())
            ],
            'batches': self.batches,
            'resumed_batches': self.resumed_batches,
            'seconds': round(self.seconds, 3),
        }


def _describe_items(
    ids: Sequence[int],
    original_ids: Sequence[str | None] | None,
    reasons: Mapping[int, str] | None = None,
) -> str:
    parts = []
    for i in ids[:_SHOW]:
        text = str(i)
        if original_ids is not None and i < len(original_ids):
            text += (
                f" (original '{original_ids[i]}')"
                if original_ids[i] is not None
                else ' (not in the id map)'
            )
        if reasons is not None:
            text += f': {reasons[i]}'
        parts.append(text)
    more = f'; and {len(ids) - _SHOW} more' if len(ids) > _SHOW else ''
    return ('; ' if reasons is not None else ', ').join(parts) + more


def _atomic_write(path: Path, write: Callable[[IO[bytes]], None], public: bool = False) -> None:
    r"""Writes :obj:`path` through a temporary file in the same folder, fsync and
    :func:`os.replace`, so that it is either absent/old or complete. With
    :obj:`public`, the file gets the permissions of a plainly created file (the
    temporary file is private to its owner)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if public:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def partial_dir(out: str | Path, key: str) -> Path:
    r"""The side folder of the partial results of :obj:`out` for :obj:`key`."""
    out = Path(out)
    return out.parent / f'.{out.name}.partial-{key[:16]}'


def _split_output(result: Any, n: int, batch: Sequence[int]) -> tuple[np.ndarray, list[str]]:
    r"""Validates an encoder's output; returns float32 rows and per-row reasons
    (``''`` for success)."""
    reasons: Sequence[str | None]
    if isinstance(result, tuple):
        if len(result) != 2:
            raise FeatureExtractionError(
                'an encoder must return an array or a pair '
                f'(array, reasons), got a {len(result)}-tuple'
            )
        rows, reasons = result
        if len(reasons) != n:
            raise FeatureExtractionError(
                f'the encoder returned {len(reasons)} reasons for {n} values'
            )
    else:
        rows, reasons = result, [None] * n
    if hasattr(rows, 'detach'):  # A torch tensor.
        rows = rows.detach().cpu().numpy()
    rows = np.asarray(rows)
    if rows.ndim != 2 or rows.shape[0] != n or rows.shape[1] == 0:
        raise FeatureExtractionError(
            f'the encoder must return an array of shape [{n}, dim] '
            f'for {n} values, got shape {tuple(rows.shape)}'
        )
    if not np.issubdtype(rows.dtype, np.number) or np.iscomplexobj(rows):
        raise FeatureExtractionError(
            f'the encoder returned a {rows.dtype} array, expected real numbers'
        )
    rows = rows.astype(np.float32)
    out_reasons = ['' if r is None else (str(r) or 'failed') for r in reasons]
    ok = np.array([not r for r in out_reasons], dtype=bool)
    bad = np.flatnonzero(ok & ~np.isfinite(rows).all(axis=1))
    if bad.size:
        raise FeatureExtractionError(
            f'the encoder returned NaN or infinite values for MMRec item(s) '
            f'{[batch[j] for j in bad[:_SHOW]]}'
        )
    rows[~ok] = 0.0
    return rows, out_reasons


def _load_batch(path: Path, batch: Sequence[int]) -> tuple[np.ndarray, list[str]] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            ids, rows, reasons = z['ids'], z['rows'], z['reasons']
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        log.warning('%s: unreadable partial result, encoding that batch again (%s)', path, e)
        return None
    if (
        ids.shape != (len(batch),)
        or not np.array_equal(ids, np.asarray(batch))
        or rows.ndim != 2
        or rows.shape[0] != len(batch)
        or rows.dtype != np.float32
        or reasons.shape != (len(batch),)
    ):
        log.warning('%s: partial result does not match its batch, encoding it again', path)
        return None
    return rows, [str(r) for r in reasons.tolist()]


def extract_features(
    values: Mapping[int, str],
    num_items: int,
    encoder: Encoder,
    out: str | Path,
    *,
    batch_size: int = 64,
    missing: Literal['error', 'zero', 'mean'] = 'error',
    original_ids: Sequence[str | None] | None = None,
    progress: bool = True,
    desc: str | None = None,
) -> FeatureReport:
    r"""Encodes the value of every item and writes a ``[num_items, dim]`` float32
    ``.npy`` file whose row :obj:`i` is item :obj:`i` (see the module docstring for
    missing items, resuming and atomic writing).

    Items are encoded in increasing id order, :obj:`batch_size` values per call of
    :obj:`encoder.encode`, so the result depends only on the inputs and options
    (not on interruptions).

    Args:
        values (Mapping[int, str]): MMRec item id -> value (text, image path, ...).
            Ids must lie in ``[0, num_items)``; an empty or white-space value counts
            as missing.
        num_items (int): Number of rows.
        encoder (Encoder): The encoder.
        out (str or pathlib.Path): The ``.npy`` file to write.
        batch_size (int, optional): Values per encoder call. (default: :obj:`64`)
        missing (str, optional): :obj:`'error'`, :obj:`'zero'` or :obj:`'mean'`
            for items without a usable value. (default: :obj:`'error'`)
        original_ids (Sequence[str | None], optional): Original id of each MMRec
            id, for messages and the report.
        progress (bool, optional): Show a tqdm progress bar. (default: :obj:`True`)
        desc (str, optional): Label of the progress bar.

    Returns:
        FeatureReport: Counts and the ids of missing and failed items.

    Raises:
        FeatureExtractionError: With :obj:`missing='error'`, if an item has no
            value or its value fails (the message lists them; encoded batches
            are kept, so a rerun with another policy does not encode them
            again); or if the encoder misbehaves.
    """
    start = time.perf_counter()
    out = Path(out)
    if missing not in MISSING_POLICIES:
        raise ValueError(f'missing must be one of {MISSING_POLICIES}, got {missing!r}')
    if batch_size < 1:
        raise ValueError(f'batch_size must be positive, got {batch_size}')
    if num_items < 1:
        raise ValueError(f'num_items must be positive, got {num_items}')
    outside = sorted(i for i in values if not 0 <= i < num_items)
    if outside:
        raise ValueError(f'MMRec item ids {outside[:_SHOW]} are outside [0, {num_items})')

    present = [i for i in range(num_items) if i in values and values[i].strip()]
    absent = [i for i in range(num_items) if not (i in values and values[i].strip())]
    failed: dict[int, str] = {}
    precheck = getattr(encoder, 'precheck', None)
    if precheck is not None and present:
        reasons = list(precheck([values[i] for i in present]))
        failed = {i: r for i, r in zip(present, reasons) if r}
        present = [i for i in present if i not in failed]

    what = desc or out.name
    if missing == 'error' and (absent or failed):
        parts = []
        if absent:
            parts.append(
                f'{len(absent)} item(s) have no value: {_describe_items(absent, original_ids)}'
            )
        if failed:
            parts.append(
                f'{len(failed)} value(s) cannot be used: '
                f'{_describe_items(sorted(failed), original_ids, failed)}'
            )
        raise FeatureExtractionError(
            f'{what}: ' + '. '.join(parts) + '. Choose how to fill their rows with '
            "missing='zero' or 'mean' (--missing), or complete the input"
        )
    if not present:
        raise FeatureExtractionError(f'{what}: no item has a usable value')

    describe = getattr(encoder, 'describe', None) or (lambda value: value)
    hasher = hashlib.sha256()
    hasher.update(f'v{_PARTIAL_VERSION}\0{encoder.fingerprint}\0{batch_size}\0'.encode())
    for i in present:
        described = describe(values[i])
        hasher.update(f'{i}\t{len(described)}\t{described}\n'.encode())
    key = hasher.hexdigest()
    side = partial_dir(out, key)

    batches = [present[s : s + batch_size] for s in range(0, len(present), batch_size)]
    results: list[tuple[np.ndarray, list[str]]] = []
    resumed = 0
    bar = tqdm(total=len(present), desc=what, unit='item', disable=not progress)
    try:
        for b, batch in enumerate(batches):
            path = side / f'batch-{b:06d}.npz'
            loaded = _load_batch(path, batch) if path.exists() else None
            if loaded is None:
                if not side.exists():
                    side.mkdir(parents=True)
                    (side / 'meta.json').write_text(
                        json.dumps(
                            {
                                'output': str(out),
                                'fingerprint': encoder.fingerprint,
                                'batch_size': batch_size,
                                'items': len(present),
                                'batches': len(batches),
                                'key': key,
                            },
                            indent=1,
                        )
                    )
                rows, reasons = _split_output(
                    encoder.encode([values[i] for i in batch]), len(batch), batch
                )

                def write(f: IO[bytes], rows=rows, reasons=reasons, batch=batch) -> None:
                    np.savez(
                        f,
                        ids=np.asarray(batch, dtype=np.int64),
                        rows=rows,
                        reasons=np.asarray(reasons, dtype=str),
                    )

                _atomic_write(path, write)
            else:
                resumed += 1
                rows, reasons = loaded
            if results and rows.shape[1] != results[0][0].shape[1]:
                raise FeatureExtractionError(
                    f'the encoder returned {rows.shape[1]} columns for batch {b} but '
                    f'{results[0][0].shape[1]} before'
                )
            results.append((rows, reasons))
            bar.update(len(batch))
    finally:
        bar.close()
    if resumed:
        log.info('%s: resumed %d of %d batches from %s', what, resumed, len(batches), side)

    dim = results[0][0].shape[1]
    matrix = np.zeros((num_items, dim), dtype=np.float32)
    for batch, (rows, reasons) in zip(batches, results):
        matrix[batch] = rows
        failed.update({i: r for i, r in zip(batch, reasons) if r})
    if failed and missing == 'error':
        raise FeatureExtractionError(
            f'{what}: {len(failed)} value(s) failed to encode: '
            f'{_describe_items(sorted(failed), original_ids, failed)}. Choose how to fill '
            "their rows with missing='zero' or 'mean' (--missing); the encoded batches "
            f'are kept in {side}, so a rerun does not encode them again'
        )
    fill = sorted([*absent, *failed])
    encoded = num_items - len(fill)
    if fill:
        if encoded == 0:
            raise FeatureExtractionError(f'{what}: every value failed to encode')
        if missing == 'mean':
            keep = np.ones(num_items, dtype=bool)
            keep[fill] = False
            matrix[fill] = matrix[keep].mean(axis=0, dtype=np.float64).astype(np.float32)
        if absent:
            log.warning(
                '%s: %d item(s) have no value, filled with %s: %s',
                what,
                len(absent),
                'zeros' if missing == 'zero' else 'the mean row',
                _describe_items(absent, original_ids),
            )
        if failed:
            log.warning(
                '%s: %d value(s) failed, filled with %s: %s',
                what,
                len(failed),
                'zeros' if missing == 'zero' else 'the mean row',
                _describe_items(sorted(failed), original_ids, failed),
            )

    _atomic_write(out, lambda f: np.save(f, matrix, allow_pickle=False), public=True)
    shutil.rmtree(side, ignore_errors=True)
    stale = sorted(p.name for p in out.parent.glob(f'.{out.name}.partial-*'))
    if stale:
        log.info(
            '%s: partial results of runs with other inputs or options remain in %s '
            '(delete them if they are not needed)',
            what,
            ', '.join(stale),
        )
    report = FeatureReport(
        out,
        num_items,
        dim,
        encoded,
        absent,
        failed,
        missing,
        len(batches),
        resumed,
        time.perf_counter() - start,
        list(original_ids) if original_ids is not None else None,
    )
    log.info(
        '%s: wrote %d x %d float32 (%d encoded, %d missing, %d failed) in %.1f s',
        out,
        num_items,
        dim,
        encoded,
        len(absent),
        len(failed),
        report.seconds,
    )
    return report

r"""A run folder is one run: its lock, its identity, and the one reader of run
folders (:func:`read_run`, with :func:`read_log` for ``log.csv``) that ``evaluate``,
``recommend`` and the reports of ``benchmarks/`` use.

A run folder (``--out``) holds:

* ``run.json`` — how the run was started: the model, the dataset and how to
  load it again (``source``), the content digest of the dataset
  (:func:`~pyg_mentor.utils.io.hetero_digest`) and the options; written only
  after every check of a training command passed;
* ``metrics.json`` — the result, once the run finished (a grid: its winner,
  with one folder per trial under ``trials/``);
* ``best.pt`` / ``last.pt`` — checkpoints, each with the run's identity
  (model, model options, data options, training options, dataset digest);
* ``log.csv`` and ``tensorboard/``;
* ``.lock`` while a process trains into it.

Folders written by ``pyg-mentor compare`` (``compare.json``) or by a script
that calls :func:`~pyg_mentor.train.train_model` (``metrics.json`` only), and
folders of earlier versions, are read as well.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import re
import shutil
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RUN_FILE = 'run.json'
METRICS_FILE = 'metrics.json'
COMPARE_FILE = 'compare.json'
LOG_FILE = 'log.csv'
LOCK_FILE = '.lock'
#: Training options a ``--resume`` may change: they change when a run stops
#: or what it shows, not what it computes.
RESUME_MAY_CHANGE = frozenset(
    {'epochs', 'patience', 'progress', 'tensorboard', 'device', 'eval_batch_size'}
)
#: What a training writes into a run folder (removed when a run is replaced).
RUN_FILES = ('run.json', 'metrics.json', 'log.csv', 'best.pt', 'last.pt')
RUN_DIRS = ('tensorboard', 'trials')
# Temporary files of atomic writes (`.last.pt.<random>.tmp`, ...) and of the
# JSON writer of earlier versions (`metrics.json.tmp`).
_TEMP_FILE = re.compile(
    r'\.(?:last|best)\.pt\.\w+\.tmp'
    r'|\.(?:run|metrics|compare)\.json\.\w+\.tmp'
    r'|(?:run|metrics|compare)\.json\.tmp'
)


class RunFolderError(ValueError):
    r"""A run folder is missing, busy, mixes runs, or does not match the
    command (a user error: the CLI prints it as one line)."""


class RunLockedError(RunFolderError):
    r"""Another process is training into the run folder."""


# Locking #####################################################################

_HELD: dict[str, list[Any]] = {}  # real path of the folder -> [fd, count]


class RunLock:
    r"""An exclusive lock on a run folder: the file ``<folder>/.lock``, locked
    with :func:`fcntl.flock` and naming its holder (pid, host, start time,
    command). The kernel releases it when the process ends, even on ``kill -9``;
    a lock file left behind is then taken over. The lock is re-entrant within
    a process.

    Raises:
        RunLockedError: If another process holds it (the message names it).
        RunFolderError: If the folder is a file or cannot be written.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self._key: str | None = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def acquire(self) -> None:
        if self.folder.exists() and not self.folder.is_dir():
            raise RunFolderError(f"output folder '{self.folder}' is an existing file, not a folder")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunFolderError(
                f"cannot create the output folder '{self.folder}' ({e.strerror or e})"
            ) from None
        key = os.path.realpath(self.folder)
        if key in _HELD:
            _HELD[key][1] += 1
            self._key = key
            return
        fcntl: Any
        try:
            import fcntl
        except ImportError:  # pragma: no cover  (not POSIX)
            fcntl = None
        while True:
            try:
                flags = os.O_RDWR | os.O_CREAT | (0 if fcntl else os.O_EXCL)
                fd = os.open(self.path, flags, 0o644)
            except FileExistsError:  # pragma: no cover  (not POSIX)
                raise RunLockedError(self._busy_message(self._holder())) from None
            except OSError as e:
                raise RunFolderError(
                    f"cannot write into the output folder '{self.folder}' ({e.strerror or e})"
                ) from None
            if fcntl is None:  # pragma: no cover
                break
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RunLockedError(self._busy_message(self._holder())) from None
            except OSError as e:  # e.g. a file system without locks
                log.warning('Cannot lock %s (%s): running without a lock', self.path, e)
                break
            # The previous holder may have removed the file between our open
            # and our lock: then lock the new file instead.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        holder = {
            'pid': os.getpid(),
            'host': socket.gethostname(),
            'started': time.strftime('%Y-%m-%d %H:%M:%S'),
            'command': ' '.join(sys.argv),
        }
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(holder) + '\n').encode())
        _HELD[key] = [fd, 1]
        self._key = key

    def release(self) -> None:
        if self._key is None or self._key not in _HELD:
            return
        entry = _HELD[self._key]
        entry[1] -= 1
        if entry[1] == 0:
            del _HELD[self._key]
            try:
                os.unlink(self.path)
            except OSError:
                pass
            os.close(entry[0])  # Releases the flock.
        self._key = None

    def _holder(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def _busy_message(self, holder: Mapping[str, Any]) -> str:
        who = (
            f'pid {holder.get("pid")} on {holder.get("host")}, since '
            f'{holder.get("started")}: {holder.get("command")}'
            if holder
            else 'another process'
        )
        return (
            f"output folder '{self.folder}' is in use by another training "
            f'({who}); wait for it to end or choose another --out'
        )


# Files #######################################################################


def clean_temp_files(folder: str | Path) -> list[Path]:
    r"""Removes the temporary files that interrupted atomic writes left in a
    run folder (call it while holding the folder's :class:`RunLock`)."""
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        if _TEMP_FILE.fullmatch(path.name) and path.is_file():
            try:
                path.unlink()
            except OSError:
                continue
            removed.append(path)
    if removed:
        log.info(
            'Removed %d orphan temporary file(s) of an interrupted run in %s: %s',
            len(removed),
            folder,
            sorted(p.name for p in removed),
        )
    return removed


def holds_run(folder: str | Path) -> bool:
    r"""Whether :obj:`folder` holds (part of) a run."""
    folder = Path(folder)
    return any((folder / name).exists() for name in RUN_FILES + RUN_DIRS)


def clear_run(folder: str | Path) -> None:
    r"""Removes the files a training wrote into :obj:`folder` (to replace the
    run), nothing else."""
    folder = Path(folder)
    for name in RUN_FILES:
        (folder / name).unlink(missing_ok=True)
    for name in RUN_DIRS:
        if (folder / name).is_dir():
            shutil.rmtree(folder / name)


def read_json(path: str | Path) -> dict[str, Any] | None:
    r"""The JSON object in :obj:`path`, :obj:`None` if there is no such file,
    or a :class:`RunFolderError` if it is not a JSON object."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        out = json.loads(text)
    except ValueError as e:
        raise RunFolderError(f'{path}: not valid JSON ({e}); the file is damaged') from None
    if not isinstance(out, dict):
        raise RunFolderError(f'{path}: expected a JSON object')
    return out


def read_log(folder: str | Path) -> list[dict[str, float]]:
    r"""The rows of ``<folder>/log.csv`` (one per epoch, as the trainer writes
    them) as floats; empty cells become NaN.

    Raises:
        FileNotFoundError: If the folder has no ``log.csv``.
        RunFolderError: If a cell is not a number (the message names the line).
    """
    path = Path(folder) / LOG_FILE
    if not path.is_file():
        raise FileNotFoundError(f'{path}: no training log (is {folder} a run folder?)')
    rows = []
    with path.open(newline='') as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            try:
                rows.append(
                    {k: float(v) if v not in ('', None) else math.nan for k, v in row.items()}
                )
            except (TypeError, ValueError) as e:
                raise RunFolderError(f'{path}, line {line}: {e}') from None
    return rows


# Identity ####################################################################


def plain(value: Any) -> Any:
    r""":obj:`value` as JSON would give it back (tuples -> lists, ...)."""
    return json.loads(json.dumps(value, default=str))


def identity_changes(saved: Mapping[str, Any], now: Mapping[str, Any]) -> dict[str, tuple]:
    r"""What differs between two run identities (``model``, ``model_kwargs``,
    ``data_config``, ``train_config``, ``data_digest``), as
    ``{'section.key': (saved, now)}``, ignoring :obj:`RESUME_MAY_CHANGE` and
    sections the saved identity does not record (older files). A key missing
    from a section counts as its default (the :class:`TrainConfig` /
    :class:`DataConfig` field's, the model signature's), so an option given at
    its default value is no change. Keys are reported without their section
    (``num_layers``, ``lr``)."""
    from pyg_mentor.config import DataConfig, TrainConfig

    saved, now = plain(saved), plain(now)
    out: dict[str, tuple] = {}
    from pyg_mentor.utils.io import fingerprint_changes

    for key in ('model', 'data_digest'):
        if saved.get(key) is not None and now.get(key) is not None and saved[key] != now[key]:
            out[key] = (saved[key], now[key])
    if isinstance(saved.get('data_fingerprint'), dict) and isinstance(
        now.get('data_fingerprint'), dict
    ):
        changed = fingerprint_changes(saved['data_fingerprint'], now['data_fingerprint'])
        if changed:
            out['data_features'] = ('as trained', changed)
    defaults = {
        'train_config': plain(TrainConfig().to_dict()),
        'data_config': plain(DataConfig().to_dict()),
        'model_kwargs': _signature_defaults(now.get('model') or saved.get('model')),
    }
    for section, default in defaults.items():
        if not isinstance(saved.get(section), dict) or not isinstance(now.get(section), dict):
            continue
        a, b = {**default, **saved[section]}, {**default, **now[section]}
        for key in sorted(set(a) | set(b)):
            if section == 'train_config' and key in RESUME_MAY_CHANGE:
                continue
            if a.get(key, '(default)') != b.get(key, '(default)'):
                out[key] = (a.get(key, '(default)'), b.get(key, '(default)'))
    return out


def _signature_defaults(model: str | None) -> dict[str, Any]:
    r"""The keyword defaults of a registered model's ``__init__`` (empty if
    the model is unknown)."""
    import inspect

    from pyg_mentor.nn.models.base import get_model_spec

    try:
        cls = get_model_spec(model).cls if model else None
    except KeyError:
        return {}
    if cls is None:
        return {}
    return plain(
        {
            name: p.default
            for name, p in inspect.signature(cls.__init__).parameters.items()
            if p.default is not inspect.Parameter.empty
        }
    )


def format_changes(changes: Mapping[str, tuple]) -> str:
    return ', '.join(f'{k}: {_short(a)} -> {_short(b)}' for k, (a, b) in changes.items())


def _short(value: Any) -> str:
    text = repr(value)
    if isinstance(value, str) and re.fullmatch(r'[0-9a-f]{64}', value):
        return value[:12]
    return text if len(text) <= 60 else text[:57] + '...'


# Reading a run ###############################################################


@dataclass
class RunSource:
    r"""How to load a run's dataset again (the arguments of
    :func:`~pyg_mentor.datasets.load.load_dataset`)."""

    dataset: str
    root: str | None = None
    scale: float = 1.0
    data_seed: int = 0
    surrogate_features: str | None = None
    allow_sparse_ids: bool = False

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunSource:
        keys = ('dataset', 'root', 'scale', 'data_seed', 'surrogate_features', 'allow_sparse_ids')
        return cls(**{k: d[k] for k in keys if d.get(k) is not None})


@dataclass
class SavedRun:
    r"""What :func:`read_run` found in a run folder.

    :attr:`result` holds what ``metrics.json`` holds (a grid's: the winner's numbers
    and every trial), or, for an interrupted run, the same fields read from its
    ``log.csv`` with ``status='partial'`` (the best epoch by the trainer's rule,
    :func:`~pyg_mentor.train.best_epoch`). :attr:`checkpoint` and :attr:`state`
    are :obj:`None` when the run was read without its checkpoint.
    """

    folder: Path
    checkpoint: Path | None
    state: dict[str, Any] | None = field(repr=False)
    epoch: int
    model: str
    model_kwargs: dict[str, Any]
    data_config: dict[str, Any]
    train_config: dict[str, Any]
    source: RunSource
    data_digest: str | None
    data_fingerprint: dict[str, Any] | None
    metrics: dict[str, Any] | None
    #: Set when the run did not finish: what to tell the user.
    interrupted: str | None = None
    result: dict[str, Any] = field(default_factory=dict, repr=False)


def read_run(folder: str | Path, checkpoint: str | None = 'best') -> SavedRun:
    r"""Reads a run folder: its checkpoint (loaded without running code, see
    :func:`~pyg_mentor.utils.io.safe_torch_load`), the model and options that
    built it, how to load its dataset, and its result; checks that
    ``run.json``, ``metrics.json``, ``compare.json`` and the checkpoint describe
    the same run.

    A grid is read as its winner. An interrupted run (no ``metrics.json``) is
    read from its checkpoint, with :attr:`SavedRun.interrupted` set.

    Args:
        folder (str or Path): The run folder.
        checkpoint (str, optional): ``'best'`` or ``'last'``; :obj:`None` reads
            the run's record only (no checkpoint is loaded; an interrupted run
            is then read from ``run.json`` and ``log.csv``), as reports do.

    Raises:
        RunFolderError: If the folder is not a run, mixes runs, or lacks what
            is needed.
        ~pyg_mentor.utils.io.UnsafeFileError: If the checkpoint would run code.
        ~pyg_mentor.utils.io.CorruptFileError: If the checkpoint is damaged.
    """
    from pyg_mentor.utils.io import CorruptFileError, safe_torch_load

    folder = Path(folder)
    if not folder.is_dir():
        raise RunFolderError(f"'{folder}' is not a run folder (no such folder)")
    meta = read_json(folder / RUN_FILE)
    stamp = read_json(folder / COMPARE_FILE)
    if meta is None and stamp is None and folder.parent.name == 'trials':
        # One trial of a grid: the grid's folder records how it was started.
        stamp = read_json(folder.parent.parent / COMPARE_FILE)
        grid_meta = read_json(folder.parent.parent / RUN_FILE)
        if grid_meta is not None:
            stamp = {
                **(stamp or {}),
                'model': grid_meta.get('model'),
                'dataset': grid_meta.get('dataset'),
                'data': {
                    k: grid_meta.get(k)
                    for k in (
                        'root',
                        'scale',
                        'data_seed',
                        'surrogate_features',
                        'allow_sparse_ids',
                    )
                },
            }
    metrics = read_json(folder / METRICS_FILE)
    result = metrics
    trial_dir = folder
    interrupted = None
    from_log = False  # An interrupted run read without a checkpoint.
    if metrics is not None and 'trials' in metrics:  # A grid: its winner.
        trial_dir = folder / 'trials' / f'{metrics["winner"]:03d}'
        trial_metrics = read_json(trial_dir / METRICS_FILE)
        if trial_metrics is None:
            raise RunFolderError(f'{trial_dir}: the grid winner has no {METRICS_FILE}')
        for key in ('model', 'model_kwargs', 'best_epoch'):
            if plain(trial_metrics.get(key)) != plain(metrics.get(key)):
                raise RunFolderError(
                    f'{folder / METRICS_FILE} and {trial_dir / METRICS_FILE} disagree '
                    f'on {key}: the folder mixes runs'
                )
        metrics = trial_metrics
    elif metrics is None:
        if (folder / 'trials').is_dir():
            raise RunFolderError(
                f'{folder}: a grid search interrupted before its end (no {METRICS_FILE}): '
                '`pyg-mentor train ... --resume` continues it; a finished trial can be '
                f'read with --run {folder}/trials/NNN'
            )
        last = folder / 'last.pt'
        record_only = checkpoint is None and meta is not None
        if not last.exists() and not (folder / 'best.pt').exists() and not record_only:
            what = (
                'no metrics.json and no checkpoint'
                if meta or stamp
                else 'no run.json, metrics.json or checkpoint'
            )
            raise RunFolderError(f"'{folder}' is not a run folder ({what})")
        if record_only:
            from_log = True
        elif last.exists():
            last_state = safe_torch_load(last, what='checkpoint')
            done = int(last_state.get('epoch', -1)) + 1 if isinstance(last_state, dict) else 0
            cap = (
                (last_state.get('config') or {}).get('epochs', '?')
                if isinstance(last_state, dict)
                else '?'
            )
            interrupted = (
                f'{folder}: interrupted at epoch {done} ({done} of {cap} '
                'epochs done): `pyg-mentor train ... --resume` continues it'
            )
        else:
            interrupted = (
                f'{folder}: interrupted (no {METRICS_FILE}, no last.pt): '
                '`pyg-mentor train ... --resume` continues it'
            )

    ckpt: Path | None = None
    state: dict[str, Any] | None = None
    if checkpoint is not None:
        ckpt = trial_dir / f'{checkpoint}.pt'
        if not ckpt.exists():
            hint = ''
            if metrics is not None and not (metrics.get('train_config') or {}).get(
                'checkpoint', True
            ):
                hint = ' (the run was trained with checkpoint=false)'
            elif interrupted:
                hint = f' ({interrupted})'
            raise RunFolderError(f'{ckpt}: checkpoint not found{hint}')
        state = safe_torch_load(ckpt, what='checkpoint')
        if not isinstance(state, dict) or 'model' not in state or 'epoch' not in state:
            raise CorruptFileError(
                f'{ckpt}: not a checkpoint of pyg-mentor (no model state and epoch)'
            )
    saved_identity = (
        state.get('run') if state is not None and isinstance(state.get('run'), dict) else None
    )

    # Where the run's identity comes from: metrics.json, else the checkpoint.
    if metrics is not None:
        identity = {
            'model': metrics.get('model'),
            'model_kwargs': metrics.get('model_kwargs'),
            'data_config': metrics.get('data_config', {}),
            'train_config': metrics.get('train_config'),
            'data_digest': metrics.get('data_digest'),
            'data_fingerprint': metrics.get('data_fingerprint'),
        }
    elif saved_identity is not None:
        identity = dict(saved_identity)
    elif meta is not None and 'options' in meta and 'model' in meta:
        identity = _identity_from_options(meta['model'], meta['options'])
    else:
        raise RunFolderError(
            f'{interrupted}; this folder does not record its model options, so its '
            'checkpoint cannot be read before the run finishes'
        )
    if (
        identity.get('model') is None
        or identity.get('model_kwargs') is None
        or identity.get('train_config') is None
    ):
        raise RunFolderError(
            f'{folder / METRICS_FILE}: incomplete (no model, model_kwargs or train_config)'
        )

    # Do the files describe one run?
    run_dataset = (metrics or {}).get('dataset')
    for name, record in ((RUN_FILE, meta), (COMPARE_FILE, stamp)):
        if record is None:
            continue
        if record.get('model') is not None and record['model'] != identity['model']:
            raise RunFolderError(
                f"{folder / name} says model {record['model']!r}, the run's "
                f'{METRICS_FILE if metrics else "checkpoint"} says {identity["model"]!r}: '
                'the folder mixes runs'
            )
        if (
            record.get('dataset') is not None
            and run_dataset is not None
            and record['dataset'] != run_dataset
        ):
            raise RunFolderError(
                f'{folder / name} says dataset {record["dataset"]!r}, {METRICS_FILE} '
                f'says {run_dataset!r}: the folder mixes runs'
            )
    if meta is not None and identity_changes(
        {k: meta.get(k) for k in ('data_digest', 'data_fingerprint')},
        {k: identity.get(k) for k in ('data_digest', 'data_fingerprint')},
    ):
        raise RunFolderError(
            f'{folder / RUN_FILE} and the run record different datasets '
            '(their content digests differ): the folder mixes runs'
        )
    if saved_identity is not None:
        changes = identity_changes(saved_identity, identity)
        if changes:
            raise RunFolderError(
                f'{ckpt} was not written by the run that {METRICS_FILE} describes '
                f'({format_changes(changes)}): the folder mixes runs'
            )
    elif state is not None and metrics is not None and isinstance(state.get('config'), dict):
        changes = identity_changes(
            {'train_config': state['config']}, {'train_config': identity['train_config']}
        )
        if changes:
            raise RunFolderError(
                f'{ckpt} was trained with other options than {METRICS_FILE} says '
                f'({format_changes(changes)}): the folder mixes runs'
            )
    if from_log:
        result = _partial_result(folder, identity, run_dataset or (meta or {}).get('dataset'))
        interrupted = (
            f'{folder}: interrupted at epoch {result["epochs_run"]} '
            f'({result["epochs_run"]} of {identity["train_config"].get("epochs", "?")} '
            'epochs done): `pyg-mentor train ... --resume` continues it'
        )
    epoch = (
        int(state['epoch'])
        if state is not None
        else int((metrics or result or {}).get('best_epoch', -1))
    )
    if state is not None and metrics is not None:
        expected = (
            metrics.get('best_epoch') if checkpoint == 'best' else metrics.get('epochs_run', 0) - 1
        )
        if expected is not None and expected >= 0 and epoch != expected:
            raise RunFolderError(
                f'{ckpt} holds epoch {epoch}, but {METRICS_FILE} says '
                f'{"the best epoch is" if checkpoint == "best" else "the last epoch is"} '
                f'{expected}: the folder mixes runs (or the run was replaced midway)'
            )

    source: dict[str, Any] = {
        'dataset': (metrics or {}).get('dataset')
        or (stamp or {}).get('dataset')
        or (meta or {}).get('dataset')
    }
    if stamp is not None:
        source.update({k: v for k, v in (stamp.get('data') or {}).items() if v is not None})
    if meta is not None:
        source.update(
            {
                k: meta[k]
                for k in ('root', 'scale', 'data_seed', 'surrogate_features', 'allow_sparse_ids')
                if meta.get(k) is not None
            }
        )
    if not source.get('dataset'):
        raise RunFolderError(f'{folder}: does not record its dataset')
    return SavedRun(
        folder=folder,
        checkpoint=ckpt,
        state=state,
        epoch=epoch,
        model=identity['model'],
        model_kwargs=dict(identity['model_kwargs']),
        data_config=dict(identity.get('data_config') or {}),
        train_config=dict(identity['train_config']),
        source=RunSource.from_dict(source),
        data_digest=identity.get('data_digest') or (meta or {}).get('data_digest'),
        data_fingerprint=identity.get('data_fingerprint') or (meta or {}).get('data_fingerprint'),
        metrics=metrics,
        interrupted=interrupted,
        result=dict(result or {}),
    )


def _partial_result(
    folder: Path, identity: Mapping[str, Any], dataset: str | None
) -> dict[str, Any]:
    r"""What ``metrics.json`` would hold, from the ``log.csv`` of an interrupted
    run: the best epoch by the trainer's rule and that epoch's metrics,
    ``status='partial'``."""
    from pyg_mentor.train import best_epoch

    config = identity['train_config']
    rows = read_log(folder) if (folder / LOG_FILE).is_file() else []
    best = best_epoch(rows, f'valid/{config.get("valid_metric", "recall@20")}')
    row = next((r for r in rows if best is not None and int(r['epoch']) == best), {})

    def split(name: str) -> dict[str, float]:
        return {
            k[len(name) + 1 :]: v
            for k, v in row.items()
            if k.startswith(name + '/') and not math.isnan(v)
        }

    seconds = [r['train_seconds'] for r in rows if not math.isnan(r.get('train_seconds', math.nan))]
    return {
        'model': identity['model'],
        'dataset': dataset,
        'status': 'partial',
        'best_epoch': -1 if best is None else best,
        'epochs_run': len(rows),
        'valid': split('valid'),
        'test': split('test'),
        'train_seconds': sum(seconds),
        'eval_seconds': math.nan,
        'seconds_per_epoch': sum(seconds) / len(seconds) if seconds else math.nan,
        'model_kwargs': identity['model_kwargs'],
        'data_config': identity.get('data_config') or {},
        'varied': {},
        'train_config': config,
    }


def _identity_from_options(model: str, options: Mapping[str, Any]) -> dict[str, Any]:
    r"""A single run's identity from its ``run.json`` options (earlier
    versions' interrupted runs)."""
    from pyg_mentor.config import expand_grid
    from pyg_mentor.nn.models.base import get_model_spec

    spec = get_model_spec(model)
    trials = expand_grid(spec.cls, {**spec.defaults, **options})
    if len(trials) != 1:
        raise RunFolderError('an interrupted grid cannot be read before it finishes')
    trial = trials[0]
    return {
        'model': model,
        'model_kwargs': trial.model_kwargs,
        'data_config': trial.data.to_dict(),
        'train_config': trial.train.to_dict(),
    }

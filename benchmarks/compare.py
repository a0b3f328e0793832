r"""Model comparison: train several registered models over several seeds with the
MMRec protocol and write a report (markdown, JSON, bar chart).

.. code-block:: text

    pyg-mentor compare --dataset synthetic --models mf_bpr,lightgcn,mentor --seeds 3
    python benchmarks/compare.py --dataset synthetic --models mf_bpr,lightgcn   # the same
    pyg-mentor compare --dataset baby --root datasets --models mf_bpr,lightgcn \
        --no-grid --set mf_bpr:reg_weight=0.1 lightgcn:num_layers=4 --max-epochs 60 \
        --import mentor=runs/baby-mentor-release
    pyg-mentor compare --dataset lfm2k --models mentor,mentor_text=mentor \
        --set mentor_text:modalities=text                  # a modality ablation

A tool of the checkout, beside the library (``pyg-mentor compare`` runs it from a
checkout). The report goes to ``--out`` (default: the runs folder,
``runs/compare-<dataset>/``); ``--out benchmarks/results`` updates a committed one.

How it runs:

* Every (label, seed) run has its own folder ``<runs>/<label>/seed-<seed>/`` written by
  :func:`~pyg_mentor.train.train_model` (``log.csv``, checkpoints, ``metrics.json``) plus
  ``compare.json`` (the options it was started with). Rerunning the same command skips
  finished runs and resumes interrupted ones exactly from ``last.pt``, so a long
  comparison can be split over several sessions. Raising :obj:`max_epochs` resumes the
  runs that were capped.
* Seeds are ``seed, seed + 1, ...`` from the ``seed`` option (MMRec's 999 by default);
  the seed sets the model initialisation and the sampling; the data (split, features)
  stay the same for all seeds.
* Hyper-parameters: options are the model's registered defaults, then (unless
  ``grid=False``) its registered grid, then the user's overrides. Where list values
  remain (grid axes), **the grid is searched once per model, on the first seed, and its
  winner (chosen on VALID) is reused for the other seeds**; so the first seed's numbers
  are those of the selected configuration, not of a fresh seed. With ``grid=False`` the
  registered defaults (plus overrides) are trained on every seed.
* Existing run folders (finished, or still running / interrupted: read from their
  ``log.csv``) can be imported for a model instead of training it (e.g. a MENTOR run on
  Baby that takes hours); they are marked as imported in the report.

The report holds the mean and the sample standard deviation (``ddof=1``; ``-`` for a
single run) over seeds of Recall/NDCG@10/20 on TEST at the best-VALID epoch, the best
epoch, the epochs run, how each run stopped, seconds per training epoch, the MENTOR
paper's numbers beside ours for the real datasets (``benchmarks/paper_results.json``),
and notes on why they differ, generated from facts (surrogate features, capped epochs,
grid subsets, imported or partial runs). Everything it says about a run (patience,
epoch cap, metric, options) is read from the run's own records
(:func:`pyg_mentor.run_folder.read_run`).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shlex
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if not __package__:  # `python benchmarks/compare.py`: import the checkout's package
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks._common import machine_info
from pyg_mentor.config import TrainConfig, expand_grid, is_grid_axis, parse_assignments
from pyg_mentor.run_folder import SavedRun, read_json, read_run

if TYPE_CHECKING:
    from torch_geometric.data import HeteroData

log = logging.getLogger(__name__)

#: The paper's table (with its source): ``benchmarks/paper_results.json``.
PAPER_FILE = Path(__file__).resolve().parent / 'paper_results.json'


@cache
def paper_table() -> dict[str, Any]:
    r"""``benchmarks/paper_results.json``: ``source``, ``metrics`` and
    ``results[dataset][model]`` (one value per metric)."""
    table = json.loads(PAPER_FILE.read_text())
    if tuple(table['metrics']) != METRICS:
        raise ValueError(f'{PAPER_FILE}: metrics {table["metrics"]}, expected {METRICS}')
    return table


def paper_results(model: str, dataset: str) -> tuple[float, ...] | None:
    r"""The paper's (R@10, R@20, N@10, N@20) of a registered model on a dataset,
    :obj:`None` where the paper has none."""
    values = paper_table()['results'].get(dataset, {}).get(model)
    return tuple(values) if values is not None else None


#: The metrics of the report, in the paper's order.
METRICS = ('recall@10', 'recall@20', 'ndcg@10', 'ndcg@20')
LABELS = {'recall@10': 'R@10', 'recall@20': 'R@20', 'ndcg@10': 'N@10', 'ndcg@20': 'N@20'}
#: Statuses of a run that will not train further at the same epoch cap.
FINISHED = ('early_stopped', 'max_epochs', 'nan_loss')
#: Options that may change between invocations without invalidating a run.
_MUTABLE = frozenset({'epochs', 'progress', 'tensorboard', 'device'})
#: Options every comparison run gets unless overridden.
_RUN_DEFAULTS = {'progress': False, 'tensorboard': False}


@dataclass
class RunRecord:
    r"""The outcome of one (model, seed) run, trained here or imported.

    ``test`` / ``valid`` hold the metrics at the best-valid epoch (empty if no
    epoch finished); ``status`` is the trainer's (``'early_stopped'``,
    ``'max_epochs'``, ``'nan_loss'``) or ``'partial'`` for an imported run without
    ``metrics.json`` (still running or interrupted).
    """

    model: str
    seed: int
    path: str
    source: str  # 'trained' or 'imported'
    status: str
    best_epoch: int
    epochs_run: int
    epochs_cap: int
    seconds_per_epoch: float
    eval_seconds_per_epoch: float
    valid: dict[str, float] = field(default_factory=dict)
    test: dict[str, float] = field(default_factory=dict)
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    varied: dict[str, Any] = field(default_factory=dict)
    num_trials: int = 1
    valid_metric: str = 'recall@20'
    select_on: str = 'valid'
    surrogate_features: str | None = None
    dataset: str | None = None
    patience: int | None = None
    #: The item modalities the run was restricted to (``None``: all of the data's).
    modalities: list[str] | None = None

    @property
    def capped(self) -> bool:
        r"""Stopped by the epoch cap before early stopping."""
        return self.status == 'max_epochs'


# Options #####################################################################


def parse_model_assignments(
    pairs: Sequence[str],
    models: Sequence[str],
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    r"""Splits ``--set`` pairs into options for every model (``key=value``) and
    per-model options (``model:key=value``).

    Returns:
        ``(common, per_model)``.
    """
    common: list[str] = []
    per_model: dict[str, list[str]] = {}
    for pair in pairs:
        key = pair.partition('=')[0]
        if ':' in key:
            model, _, rest = pair.partition(':')
            if model not in models:
                raise ValueError(
                    f"--set '{pair}' names model '{model}', which is not "
                    f'compared (models: {list(models)})'
                )
            per_model.setdefault(model, []).append(rest)
        else:
            common.append(pair)
    return (parse_assignments(common), {m: parse_assignments(p) for m, p in per_model.items()})


def parse_model_pairs(
    pairs: Sequence[str], option: str = '--import', value: str = 'RUN_FOLDER'
) -> list[tuple[str, str]]:
    r"""``['mentor=runs/x']`` -> ``[('mentor', 'runs/x')]``; a clear error naming
    :obj:`option` otherwise."""
    out = []
    for pair in pairs:
        model, sep, text = pair.partition('=')
        if not sep or not model.strip() or not text.strip():
            raise ValueError(f"{option} expects MODEL={value}, got '{pair}'")
        out.append((model.strip(), text.strip()))
    return out


def parse_imports(pairs: Sequence[str]) -> list[tuple[str, Path]]:
    r"""``['mentor=runs/x']`` -> ``[('mentor', Path('runs/x'))]``."""
    return [(model, Path(path)) for model, path in parse_model_pairs(pairs)]


def resolve_run_options(
    model: str,
    overrides: Mapping[str, Any],
    grid: bool,
    max_epochs: int | None,
) -> dict[str, Any]:
    r"""The options of a model's first-seed run: the registered grid (if
    :obj:`grid`), the overrides, and the epoch cap. Registered defaults are applied
    below these by :func:`~pyg_mentor.train.train_model`."""
    from pyg_mentor.nn.models.base import get_model_spec

    spec = get_model_spec(model)
    options: dict[str, Any] = {**_RUN_DEFAULTS}
    if grid:
        options.update(spec.grid)
    options.update(overrides)
    if max_epochs is not None:
        if max_epochs < 1:
            raise ValueError(f'max_epochs must be >= 1, got {max_epochs}')
        epochs = options.get('epochs', spec.defaults.get('epochs', TrainConfig.epochs))
        options['epochs'] = min(int(epochs), max_epochs)
    return options


def parse_variants(models: Sequence[str]) -> dict[str, str]:
    r"""``['mentor', 'mentor_text=mentor']`` -> ``{'mentor': 'mentor',
    'mentor_text': 'mentor'}``: the label of every compared entry and the
    registered model it trains (a label with its own options, e.g. a modality
    ablation, ``--set mentor_text:modalities=text``)."""
    out: dict[str, str] = {}
    for entry in models:
        label, sep, model = (x.strip() for x in entry.partition('='))
        model = model if sep else label
        if not label or not model or ':' in label:
            raise ValueError(f"Expected MODEL or LABEL=MODEL, got '{entry}'")
        if label in out:
            raise ValueError(f'A model is listed twice: {list(models)}')
        out[label] = model
    return out


def check_models(models: Sequence[str]) -> None:
    r"""Raises a :class:`KeyError` that lists the registered models if any of
    :obj:`models` is not registered."""
    from pyg_mentor.nn.models.base import MODELS, get_model_spec

    get_model_spec('mf_bpr')  # Imports the registry.
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise KeyError(f'Unknown model(s) {unknown}; available: {sorted(MODELS)}')
    if len(set(models)) != len(models):
        raise ValueError(f'A model is listed twice: {list(models)}')


# Runs ########################################################################


def _stable(options: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k not in _MUTABLE}


def _is_done(run_dir: Path, epochs: int) -> bool:
    metrics = read_json(run_dir / 'metrics.json')
    if metrics is None:
        return False
    statuses = [t['status'] for t in metrics.get('trials', [])] or [metrics['status']]
    if any(s not in FINISHED for s in statuses):
        return False
    capped = any(s == 'max_epochs' for s in statuses)
    return not capped or metrics['train_config']['epochs'] >= epochs


def record_from_run(saved: SavedRun, source: str) -> RunRecord:
    r"""A :class:`RunRecord` from what :func:`~pyg_mentor.run_folder.read_run`
    read (a single run, a grid, or an interrupted run: ``status='partial'``)."""
    result = saved.result
    cfg = TrainConfig(
        **{k: v for k, v in saved.train_config.items() if k in TrainConfig.__dataclass_fields__}
    )
    epochs_run = int(result.get('epochs_run', 0))
    eval_seconds = result.get('eval_seconds')
    return RunRecord(
        model=saved.model,
        seed=cfg.seed,
        path=str(saved.folder),
        source=source,
        status=result.get('status', 'partial'),
        best_epoch=int(result.get('best_epoch', -1)),
        epochs_run=epochs_run,
        epochs_cap=cfg.epochs,
        seconds_per_epoch=_float(result.get('seconds_per_epoch')),
        eval_seconds_per_epoch=_float(eval_seconds) / max(epochs_run, 1),
        valid=dict(result.get('valid') or {}),
        test=dict(result.get('test') or {}),
        model_kwargs=dict(saved.model_kwargs),
        varied=dict(result.get('varied') or {}),
        num_trials=len(result.get('trials', [])) or 1,
        valid_metric=cfg.valid_metric,
        select_on=cfg.select_on,
        surrogate_features=saved.source.surrogate_features,
        dataset=saved.source.dataset,
        patience=cfg.patience,
        modalities=saved.data_config.get('modalities'),
    )


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def load_run_record(path: str | Path, model: str | None = None) -> RunRecord:
    r"""Reads an existing run folder of ``pyg-mentor train`` (or of a comparison)
    with :func:`~pyg_mentor.run_folder.read_run` (no checkpoint loaded).

    A finished run (or grid) is read from its ``metrics.json``; a run without one
    (still running, or interrupted) from its ``run.json`` and ``log.csv`` (best
    epoch by the trainer's rule, :func:`~pyg_mentor.train.best_epoch`, and that
    epoch's test metrics; status ``'partial'``).

    Args:
        path (str or Path): The run folder.
        model (str, optional): The registered model it must be.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f'{path}: run folder not found')
    saved = read_run(path, checkpoint=None)
    if model is not None and saved.model != model:
        raise ValueError(f"{path}: is a run of '{saved.model}', not of '{model}'")
    return record_from_run(saved, 'imported')


def train_seeds(
    model: str,
    data: HeteroData,
    dataset: str,
    seeds: Sequence[int],
    runs_dir: Path,
    options: Mapping[str, Any],
    data_info: Mapping[str, Any],
    data_cache: str | Path | None = None,
    train: bool = True,
) -> list[RunRecord]:
    r"""Trains (or resumes, or skips if finished) one model on every seed.

    With :obj:`train=False` nothing is trained: finished runs are read, an
    unfinished one is reported as it stands (status ``'partial'``), and the
    seeds from the first one never started are left out.

    Args:
        model (str): Registered model name.
        data (HeteroData): The dataset.
        dataset (str): Dataset name recorded in the runs.
        seeds (Sequence[int]): Seeds; a grid is searched on the first one only.
        runs_dir (Path): ``<runs>/<model>``; one ``seed-<seed>/`` folder per seed.
        options (Mapping[str, Any]): The resolved first-seed options (lists = grid).
        data_info (Mapping[str, Any]): How the data was loaded (checked on resume).
        data_cache (str or Path, optional): Cache folder of the item graphs.
        train (bool): Train what is missing (else only report what exists).
    """
    from pyg_mentor.train import train_model, write_json

    label = runs_dir.name  # the model's label in the comparison (e.g. a variant)
    records = []
    winner: dict[str, Any] = {}
    for i, seed in enumerate(seeds):
        run_options = {**options, **winner, 'seed': seed}
        run_dir = runs_dir / f'seed-{seed}'
        stamp = {
            'model': model,
            'dataset': dataset,
            'data': dict(data_info),
            'options': run_options,
        }
        stamp_path = run_dir / 'compare.json'
        old = read_json(stamp_path)
        if old is not None:
            mismatch = {
                k: (old.get(k), stamp[k])
                for k in ('model', 'dataset', 'data')
                if old.get(k) != json.loads(json.dumps(stamp[k]))
            }
            old_opts = _stable(old.get('options', {}))
            new_opts = json.loads(json.dumps(_stable(run_options)))
            if old_opts != new_opts:
                mismatch['options'] = (old_opts, new_opts)
            changed = {
                k for k in set(old_opts) | set(new_opts) if old_opts.get(k) != new_opts.get(k)
            }
            if set(mismatch) == {'options'} and changed and changed <= set(winner):
                raise ValueError(
                    f'{run_dir} was trained with an earlier grid winner '
                    f'{ {k: old_opts.get(k) for k in changed} }; the winner is now '
                    f'{ {k: new_opts.get(k) for k in changed} } (e.g. after raising the '
                    'epoch cap). Delete that folder to retrain it with the new winner.'
                )
            if mismatch:
                raise ValueError(
                    f'{run_dir} was started with other settings (old, new): {mismatch}. '
                    'Use another --runs folder or delete that one.'
                )
        epochs = int(run_options.get('epochs', TrainConfig.epochs))
        if _is_done(run_dir, epochs):
            log.info('%s seed %d: finished, skipped (%s)', label, seed, run_dir)
        elif not train:
            if read_json(run_dir / 'run.json') is None:
                log.info('%s seed %d: not started, left out (report only)', label, seed)
                break
            log.info('%s seed %d: unfinished, reported as it stands (%s)', label, seed, run_dir)
        else:
            log.info('%s seed %d (%d/%d): training in %s', label, seed, i + 1, len(seeds), run_dir)
            write_json(stamp_path, stamp)
            t0 = time.perf_counter()
            metrics = train_model(
                model,
                data,
                run_options,
                run_dir,
                resume=True,
                dataset=dataset,
                data_cache=data_cache,
            )
            log.info(
                '%s seed %d: %s at epoch %d of %d, test %s %.4f (%.0f s)',
                label,
                seed,
                metrics['status'],
                metrics['best_epoch'],
                metrics['epochs_run'],
                'recall@20',
                (metrics.get('test') or {}).get('recall@20', math.nan),
                time.perf_counter() - t0,
            )
        saved = read_run(run_dir, checkpoint=None)
        records.append(record_from_run(saved, 'trained'))
        if i == 0 and 'trials' in saved.result:
            # The grid's winner (chosen on valid) for every later seed.
            winner = dict(saved.result['varied'])
            log.info('%s: grid winner %s reused for the other seeds', label, winner)
    return records


# Aggregation #################################################################


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    std = statistics.stdev(values) if len(values) > 1 else math.nan
    return statistics.fmean(values), std


def _in_mean(records: Sequence[RunRecord]) -> list[RunRecord]:
    r"""The runs a model's mean and std are over: those with test metrics,
    without the unfinished ones when finished ones exist."""
    scored = [r for r in records if r.test]
    return [r for r in scored if r.status != 'partial'] or scored


def aggregate(records: Sequence[RunRecord]) -> dict[str, Any]:
    r"""Mean and sample standard deviation over the runs of one model.

    Runs without test metrics (an imported run with no finished epoch) are
    counted in ``runs`` but not in the statistics, and so are unfinished
    (``'partial'``) runs when the model has finished ones: a run stopped early
    in its training would pull the mean down (``partial_left_out`` counts them).
    """
    scored = _in_mean(records)
    left_out = sum(1 for r in records if r.test) - len(scored)
    out: dict[str, Any] = {
        'runs': len(records),
        'scored_runs': len(scored),
        'partial_left_out': left_out,
    }
    for metric in METRICS:
        mean, std = _mean_std([r.test.get(metric, math.nan) for r in scored])
        out[metric] = {'mean': mean, 'std': std}
    for key in ('best_epoch', 'epochs_run', 'seconds_per_epoch', 'eval_seconds_per_epoch'):
        mean, std = _mean_std([float(getattr(r, key)) for r in records])
        out[key] = {'mean': mean, 'std': std}
    out['statuses'] = sorted({r.status for r in records})
    return out


def why_they_differ(
    model: str,
    records: Sequence[RunRecord],
    spec_grid: Mapping[str, Sequence[Any]] | None,
    multimodal: bool,
    features: str,
    paper: bool,
    protocol_epochs: int | None = None,
) -> list[str]:
    r"""Facts that make our numbers differ from the paper's (or from a full,
    converged run), one sentence each; :obj:`protocol_epochs` is the model's
    registered epoch budget (what its protocol trains without a cap)."""
    notes = []
    if paper and multimodal and features != 'real':
        notes.append(
            f'item features are {features}, not the image/text features of '
            "the paper (MMRec's image_feat.npy / text_feat.npy are not "
            'available offline)'
        )
    capped = [r for r in records if r.capped]
    if capped:
        caps = sorted({r.epochs_cap for r in capped})
        improving = sum(r.best_epoch >= r.epochs_run - 2 for r in capped)
        best = ', '.join(str(r.best_epoch) for r in capped)
        budget = (
            f' (the protocol trains up to {protocol_epochs} epochs)'
            if protocol_epochs and protocol_epochs > max(caps)
            else ''
        )
        notes.append(
            f'{len(capped)} of {len(records)} run(s) hit the epoch cap '
            f'({", ".join(map(str, caps))}) before early stopping{budget}, '
            f'best epoch {best}'
            + (f': {improving} still improving at the cap, under-trained' if improving else '')
        )
    partial = [r for r in records if r.status == 'partial']
    for r in partial:
        what = f'{"imported run" if r.source == "imported" else "run"} {r.path}'
        if r.test:
            notes.append(
                f'{what} is unfinished ({r.epochs_run} epochs so far, best at epoch '
                f'{r.best_epoch}): numbers are provisional'
            )
        else:
            notes.append(f'{what} has no finished epoch yet')
    if any(r.status == 'nan_loss' for r in records):
        notes.append('a run stopped on a non-finite loss (its best epoch before that is reported)')
    trained = [r for r in records if r.source == 'trained']
    if trained:
        first = trained[0]
        searched = first.varied
        full = dict(spec_grid or {})
        if first.num_trials > 1:
            subset = set(full) != set(searched) or any(
                len(v) < len(full.get(k, [])) for k, v in _axes_of(first).items()
            )
            notes.append(
                f'hyper-parameters: a {first.num_trials}-trial grid'
                f'{" (a subset of the registered grid)" if subset else ""} '
                f'searched on the first seed, winner {searched} chosen on '
                'valid (the released code chooses on test) and reused for '
                "the other seeds (the first seed's run is the best of "
                f'{first.num_trials} on valid, so it may be optimistic)'
            )
        elif full:
            changed = _short_kwargs(first)
            notes.append(
                'hyper-parameters: no grid search ('
                + (
                    'registered defaults'
                    if changed == 'registered defaults'
                    else f'registered defaults, changed: {changed}'
                )
                + f'); the paper tunes {sorted(full)} per dataset'
            )
    in_mean = _in_mean(records)
    if len(in_mean) > 1:
        notes.append(
            f'mean ± std over {len(in_mean)} runs (seeds '
            f'{", ".join(str(r.seed) for r in in_mean)})'
            + ('; the paper reports one run' if paper else '')
        )
    if any(r.source == 'imported' for r in records):
        notes.append('imported: ' + ', '.join(r.path for r in records if r.source == 'imported'))
    return notes


def _axes_of(record: RunRecord) -> dict[str, list[Any]]:
    options = (read_json(Path(record.path) / 'compare.json') or {}).get('options', {})
    return {k: v for k, v in options.items() if is_grid_axis(k, v)}


def _short_kwargs(record: RunRecord) -> str:
    r"""The model keyword arguments of a run that differ from the registered
    defaults (``'registered defaults'`` if none)."""
    from pyg_mentor.nn.models.base import get_model_spec

    defaults = get_model_spec(record.model).model_defaults
    changed = {k: v for k, v in record.model_kwargs.items() if defaults.get(k) != v}
    return ', '.join(f'{k}={v}' for k, v in changed.items()) or 'registered defaults'


# Report ######################################################################


def _fmt(mean: float, std: float, digits: int = 4) -> str:
    if mean is None or math.isnan(mean):
        return '-'
    if std is None or math.isnan(std):
        return f'{mean:.{digits}f}'
    return f'{mean:.{digits}f} ± {std:.{digits}f}'


def _status_text(records: Sequence[RunRecord]) -> str:
    counts: dict[str, int] = {}
    for r in records:
        label = r.status
        if r.capped:
            label = f'max_epochs={r.epochs_cap} (capped!)'
        elif r.status == 'partial':
            label = 'partial (unfinished)'
        counts[label] = counts.get(label, 0) + 1
    return ', '.join(f'{k} x{v}' if v > 1 else k for k, v in counts.items())


def _epochs(records: Sequence[RunRecord], key: str) -> str:
    r"""Epoch counts of the runs: the value of a single run, else the mean ± std
    and the values."""
    values = [getattr(r, key) for r in records]
    if len(values) == 1:
        return str(values[0])
    mean, std = _mean_std([float(v) for v in values])
    return f'{mean:.1f} ± {std:.1f} ({", ".join(map(str, values))})'


def _recorded(records_by_model: Mapping[str, Sequence[RunRecord]], key: str) -> str:
    r"""What the runs recorded for a training option (e.g. ``patience``): one value,
    or the values of each model where they differ."""
    values = {
        m: sorted({str(getattr(r, key)) for r in rs}) for m, rs in records_by_model.items() if rs
    }
    distinct = {v for vs in values.values() for v in vs}
    if len(distinct) <= 1:
        return next(iter(distinct), 'n/a')
    return ', '.join(f'{m} {"/".join(vs)}' for m, vs in values.items())


def _hyper_text(records: Sequence[RunRecord]) -> str:
    first = records[0]
    if first.varied:
        text = ', '.join(f'{k}={v}' for k, v in first.varied.items()) + (
            f' (grid of {first.num_trials})' if first.num_trials > 1 else ''
        )
    else:
        text = _short_kwargs(first)
    if first.modalities is not None:
        text += f'; modalities: {", ".join(first.modalities)} only'
    return text


def format_report(report: Mapping[str, Any]) -> str:
    r"""The markdown report of :func:`compare`'s result."""
    from pyg_mentor.train import SCORE_DECIMALS

    meta = report['meta']
    by_model = {e['model']: [RunRecord(**r) for r in e['runs']] for e in report['models']}
    lines = [f'# Model comparison on `{report["dataset"]}`', '']
    lines += [
        f'- Command: `{meta.get("command") or "(library call)"}`',
        f'- Date: {meta["date"]}; commit: {meta["commit"]}; wall time of this '
        f'invocation: {meta["wall_seconds"] / 60:.1f} min (finished runs are skipped); '
        f'training + evaluation time of the reported runs: '
        f'{report["compute_seconds"] / 60:.1f} min (grid trials other than the winner '
        'and imported runs not counted)',
        f'- Machine: {meta["cores"]} CPU cores, torch {meta["torch"]}, torch_geometric '
        f'{meta["torch_geometric"]}, {meta["threads"]} torch thread(s) '
        f'(OMP_NUM_THREADS={meta.get("omp_num_threads")}), load average at report '
        f'time {", ".join(f"{x:.1f}" for x in meta["load_average"] or [])} (s/epoch '
        'depend on what else ran on the machine during each run)',
        f'- Data: {report["data"]["description"]}',
        f'- Seeds: {report["seeds"]}; hyper-parameters: '
        + (
            'registered grid searched once per model on the first seed (winner chosen '
            'on valid, reused for the other seeds)'
            if report['grid']
            else 'registered defaults plus overrides (no grid search)'
        )
        + (f'; epochs capped at {report["max_epochs"]}' if report['max_epochs'] else ''),
        *(
            [
                '- **Report only** (`--report-only`): nothing was trained by this '
                'invocation; unfinished runs are reported as they stand (status '
                '"partial"), seeds not yet started are left out'
            ]
            if report.get('report_only')
            else []
        ),
        '- Protocol: MMRec (full ranking, train items masked, early stopping on the '
        f'valid metric ({_recorded(by_model, "valid_metric")}) rounded to '
        f'{SCORE_DECIMALS} decimals, patience {_recorded(by_model, "patience")}, as '
        'recorded by the runs); metrics are TEST at the best-VALID epoch; mean ± sample '
        'std over seeds.',
        '',
        '## Results (test at the best-valid epoch)',
        '',
        '| model | runs | hyper-parameters | R@10 | R@20 | N@10 | N@20 | best epoch '
        '| epochs run | status | s/epoch (train) | s/epoch (eval) |',
        '|---|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---:|',
    ]
    for entry in report['models']:
        s = entry['summary']
        records = by_model[entry['model']]
        runs = f'{s["scored_runs"]}' + (' (imported)' if entry['imported'] else '')
        if s.get('partial_left_out'):
            runs += f' (+{s["partial_left_out"]} unfinished, not in the mean)'
        metric_cells = ' | '.join(_fmt(s[m]['mean'], s[m]['std']) for m in METRICS)
        lines.append(
            f'| {entry["model"]} | {runs} | {_hyper_text(records)} | {metric_cells} '
            f'| {_epochs(records, "best_epoch")} | {_epochs(records, "epochs_run")} '
            f'| {_status_text(records)} '
            f'| {_fmt(s["seconds_per_epoch"]["mean"], math.nan, 2)} '
            f'| {_fmt(s["eval_seconds_per_epoch"]["mean"], math.nan, 2)} |'
        )

    with_paper = [e for e in report['models'] if e.get('paper')]
    if with_paper:
        lines += [
            '',
            f'## Beside the paper ({report["paper_source"]})',
            '',
            '| model | ours R@10 | paper | ours R@20 | paper | ours N@10 | paper '
            '| ours N@20 | paper | ours / paper (R@20) | features |',
            '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|',
        ]
        for entry in with_paper:
            s, paper = entry['summary'], entry['paper']
            cells = []
            for metric, value in zip(METRICS, paper):
                cells += [_fmt(s[metric]['mean'], math.nan), f'{value:.4f}']
            mean = s['recall@20']['mean']
            ratio = '-' if math.isnan(mean) else f'{mean / paper[1]:.3f}'
            lines.append(
                f'| {entry["model"]} | {" | ".join(cells)} | {ratio} | {entry["features"]} |'
            )
    elif report['data']['paper_dataset'] is None:
        lines += [
            '',
            f'No paper numbers: `{report["dataset"]}` is not one of the '
            "paper's datasets (baby, sports, clothing).",
        ]

    lines += [
        '',
        '## Why our numbers differ from the paper' if with_paper else '## Notes on the runs',
        '',
    ]
    for entry in report['models']:
        notes = entry['notes'] or ['nothing known']
        lines.append(f'- **{entry["model"]}**: ' + '; '.join(notes) + '.')

    lines += [
        '',
        '## Every run',
        '',
        '| model | seed | source | status | best epoch | epochs run | valid '
        'metric | test R@20 | test N@20 | s/epoch | folder |',
        '|---|---:|---|---|---:|---:|---|---:|---:|---:|---|',
    ]
    for entry in report['models']:
        for r in entry['runs']:
            valid = r['valid'].get(r['valid_metric'], math.nan)
            lines.append(
                f'| {r["model"]} | {r["seed"]} | {r["source"]} | {r["status"]} '
                f'| {r["best_epoch"]} | {r["epochs_run"]} '
                f'| {r["valid_metric"]} {_fmt(valid, math.nan)} '
                f'| {_fmt(r["test"].get("recall@20", math.nan), math.nan)} '
                f'| {_fmt(r["test"].get("ndcg@20", math.nan), math.nan)} '
                f'| {_fmt(r["seconds_per_epoch"], math.nan, 2)} | `{r["path"]}` |'
            )
    if report.get('plot'):
        lines += ['', f'![R@20 and N@20]({Path(report["plot"]).name})']
    return '\n'.join(lines) + '\n'


def plot_report(report: Mapping[str, Any], path: str | Path) -> Path:
    r"""A bar chart of test R@20 and N@20 per model (mean, error bar = std over
    seeds), with the paper's numbers beside where there are any.

    Raises:
        ImportError: If matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError('The bar chart needs matplotlib: pip install "pyg_mentor[plot]"') from e

    entries = report['models']
    names = [e['model'] + (' (imported)' if e['imported'] else '') for e in entries]
    has_paper = any(e.get('paper') for e in entries)
    fig, axes = plt.subplots(1, 2, figsize=(max(6.0, 1.6 * len(entries) + 2), 3.8))
    width = 0.38 if has_paper else 0.6
    for ax, (metric, col) in zip(axes, (('recall@20', 1), ('ndcg@20', 3))):
        x = list(range(len(entries)))
        means = [e['summary'][metric]['mean'] for e in entries]
        stds = [e['summary'][metric]['std'] for e in entries]
        shift = -width / 2 if has_paper else 0.0
        single = all(std is None or math.isnan(std) for std in stds)
        bars = ax.bar(
            [i + shift for i in x],
            [0.0 if math.isnan(m) else m for m in means],
            width,
            yerr=None
            if single
            else [0.0 if std is None or math.isnan(std) else std for std in stds],
            capsize=3,
            color='C0',
            label='ours (1 run)' if single else 'ours (mean ± std)',
        )
        for bar, e in zip(bars, entries):
            if any(r['status'] in ('max_epochs', 'partial') for r in e.get('runs', [])):
                bar.set_hatch('//')  # Capped or unfinished: under-trained.
        if has_paper:
            paper = [e['paper'][col] if e.get('paper') else 0.0 for e in entries]
            ax.bar([i + width / 2 for i in x], paper, width, label='paper', color='C1', alpha=0.7)
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=30, ha='right', fontsize=8)
        ax.set_title(f'test {LABELS[metric]} on {report["dataset"]}')
        ax.grid(axis='y', alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.text(0.01, 0.01, 'hatched: capped or unfinished runs', fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# Entry point #################################################################


def _describe_data(
    dataset: str, data: HeteroData | None, surrogate: str | None, features: str
) -> dict[str, Any]:
    from pyg_mentor.typing import ITEM, RATES, USER, label_key, modalities

    paper_dataset = dataset if dataset in paper_table()['results'] else None
    info: dict[str, Any] = {
        'name': dataset,
        'surrogate_features': surrogate,
        'features': features,
        'paper_dataset': paper_dataset,
    }
    kind = (
        'real interactions (MMRec split)'
        if paper_dataset
        else 'synthetic planted data'
        if dataset.startswith('synthetic')
        else 'MMRec files'
    )
    if data is not None:
        info.update(
            users=int(data[USER].num_nodes),
            items=int(data[ITEM].num_nodes),
            train=int(data[RATES].edge_index.size(1)),
            valid=int(getattr(data[RATES], label_key('valid')).size(1)),
            test=int(getattr(data[RATES], label_key('test')).size(1)),
            modalities=modalities(data),
        )
        info['description'] = (
            f'`{dataset}`, {kind}: {info["users"]:,} users, {info["items"]:,} items, '
            f'{info["train"]:,} / {info["valid"]:,} / {info["test"]:,} train / valid / '
            f'test interactions; item features: {features}'
        )
    else:
        info['description'] = f'`{dataset}`, {kind}; item features: {features}'
    return info


def compare(
    dataset: str,
    models: Sequence[str],
    seeds: int = 3,
    *,
    root: str | Path | None = None,
    runs_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    options: Mapping[str, Any] | None = None,
    model_options: Mapping[str, Mapping[str, Any]] | None = None,
    grid: bool = True,
    max_epochs: int | None = None,
    imports: Sequence[tuple[str, str | Path]] = (),
    surrogate: str | None = None,
    scale: float = 1.0,
    data_seed: int = 0,
    data: HeteroData | None = None,
    plot: bool = True,
    name: str | None = None,
    command: str | None = None,
    notes: Mapping[str, str] | None = None,
    report_only: bool = False,
) -> dict[str, Any]:
    r"""Trains :obj:`models` on :obj:`seeds` seeds each (resuming and skipping
    finished runs), imports existing runs, and writes the report
    ``<out_dir>/<name>.md`` / ``.json`` / ``.png``.

    Args:
        dataset (str): Dataset name (see :func:`~pyg_mentor.datasets.load.load_dataset`).
        models (Sequence[str]): Registered models to train, or ``LABEL=MODEL``
            entries: a model under its own label, with its own options in
            :obj:`model_options` (e.g. a modality ablation).
        seeds (int): Seeds per model: ``seed, seed + 1, ...`` (``seed`` option,
            default 999).
        root (str or Path, optional): Folder of the MMRec datasets.
        runs_dir (str or Path, optional): Where the runs go
            (default: ``runs/compare-<dataset>``).
        out_dir (str or Path, optional): Where the report goes (default: the runs
            folder; ``benchmarks/results`` updates a committed report).
        options (Mapping[str, Any], optional): Options for every model.
        model_options (Mapping[str, Mapping], optional): Options per model (over
            :obj:`options`); list values are grid axes.
        grid (bool): Search each model's registered grid on the first seed.
        max_epochs (int, optional): Cap on the epochs of every run.
        imports (Sequence[tuple[str, Path]]): ``(model, run folder)`` pairs reported
            instead of training that model (several for one model = several runs).
        surrogate (str, optional): Surrogate item features for datasets without
            any (``'interactions'`` / ``'random'``); required for multimodal models
            on such datasets.
        scale (float): Size factor of ``synthetic-<shape>`` datasets.
        data_seed (int): Seed of the synthetic generator.
        data (HeteroData, optional): Use this dataset instead of loading
            :obj:`dataset` (tests).
        plot (bool): Write the PNG bar chart (skipped with a warning if
            matplotlib is missing).
        name (str, optional): File stem of the report (default ``compare_<dataset>``).
        command (str, optional): The command line, recorded in the report.
        notes (Mapping[str, str], optional): A note per model added to the
            generated ones (e.g. where fixed hyper-parameters come from).
        report_only (bool): Train nothing: report the runs that exist under
            :obj:`runs_dir`, unfinished ones as they stand (``partial``), e.g.
            while a long comparison is still running elsewhere. Models without
            any run are left out of the report.

    Returns:
        dict: The report (what the JSON file holds).
    """
    from pyg_mentor.datasets.load import item_graph_cache_dir, load_dataset
    from pyg_mentor.nn.models.base import get_model_spec
    from pyg_mentor.typing import modalities

    t_start = time.perf_counter()
    imports = [(m, Path(p)) for m, p in imports]
    variants = parse_variants(models)
    models = list(variants)
    for m, _ in imports:
        variants.setdefault(m, m)
    check_models(sorted(set(variants.values())))
    if seeds < 1:
        raise ValueError(f'seeds must be >= 1, got {seeds}')
    imported_models = {m for m, _ in imports}
    to_train = [m for m in models if m not in imported_models]
    for m in notes or {}:
        if m not in set(models) | imported_models:
            raise ValueError(f"--note for '{m}', which is not in the comparison")
    for m in model_options or {}:
        if m not in to_train:
            raise ValueError(
                f"Options given for '{m}', which is not trained here (trained: {to_train})"
            )
    runs_root = Path(runs_dir) if runs_dir is not None else Path(f'runs/compare-{dataset}')
    out = Path(out_dir) if out_dir is not None else runs_root
    stem = name or f'compare_{dataset}'

    # Resolve everything before any training, so that bad options fail fast.
    resolved = {}
    for m in to_train:
        overrides = {**(options or {}), **(model_options or {}).get(m, {})}
        spec = get_model_spec(variants[m])
        resolved[m] = resolve_run_options(variants[m], overrides, grid, max_epochs)
        expand_grid(spec.cls, {**spec.defaults, **resolved[m]})
    base_seed = int(next((o['seed'] for o in resolved.values() if 'seed' in o), TrainConfig.seed))
    seed_list = [base_seed + i for i in range(seeds)]

    multimodal = {
        m: get_model_spec(variants[m]).cls.multimodal
        for m in list(models) + sorted(imported_models)
    }
    if data is None:
        data = load_dataset(dataset, root, scale=scale, seed=data_seed, surrogate=surrogate)
    if any(multimodal[m] for m in to_train) and not modalities(data):
        raise ValueError(
            f"'{dataset}' has no item features, needed by "
            f'{[m for m in to_train if multimodal[m]]}; pass '
            '--surrogate-features interactions (documented surrogates)'
        )
    if surrogate is not None:
        features = f'SURROGATE ({surrogate}: see pyg_mentor.datasets.surrogate)'
    elif modalities(data):
        features = 'planted (carry the item factors)' if dataset.startswith('synthetic') else 'real'
    else:
        features = 'none'
    data_info = _describe_data(dataset, data, surrogate, features)
    load_info = {
        'root': str(Path(root).resolve()) if root else None,
        'scale': scale,
        'data_seed': data_seed,
        'surrogate_features': surrogate,
    }

    entries = []
    for m in to_train:
        records = train_seeds(
            variants[m],
            data,
            dataset,
            seed_list,
            runs_root / m,
            resolved[m],
            load_info,
            data_cache=item_graph_cache_dir(dataset, root),
            train=not report_only,
        )
        if records:
            entries.append((m, records, False))
        else:
            log.info('%s: no run under %s, left out of the report', m, runs_root / m)
    for m in [m for m in models if m in imported_models] + sorted(imported_models - set(models)):
        records = [load_run_record(p, variants[m]) for mm, p in imports if mm == m]
        for r in records:
            if r.dataset is not None and r.dataset != dataset:
                raise ValueError(f'{r.path}: a run on {r.dataset!r}, not on {dataset!r}')
        entries.append((m, records, True))

    report: dict[str, Any] = {
        'dataset': dataset,
        'seeds': seed_list,
        'grid': grid,
        'max_epochs': max_epochs,
        'report_only': report_only,
        'data': data_info,
        'paper_source': paper_table()['source'],
        'models': [],
    }
    for m, records, imported in entries:
        spec = get_model_spec(variants[m])
        run_features = features
        if imported and records and records[0].surrogate_features:
            run_features = f'SURROGATE ({records[0].surrogate_features})'
        # A variant (label != model) is not the paper's configuration.
        paper = paper_results(m, dataset) if variants[m] == m else None
        model_notes = why_they_differ(
            m,
            records,
            spec.grid,
            multimodal[m],
            run_features,
            paper is not None,
            protocol_epochs=int(spec.defaults.get('epochs', TrainConfig.epochs)),
        )
        if not multimodal[m] and data_info['paper_dataset']:
            model_notes.insert(0, 'uses interactions only, the same inputs as the paper')
        if (notes or {}).get(m):
            model_notes.append(notes[m])
        entries_dict = {
            'model': m,
            'registered_model': variants[m],
            'imported': imported,
            'multimodal': multimodal[m],
            'features': run_features if multimodal[m] else 'not used',
            'paper': list(paper) if paper else None,
            'summary': aggregate(records),
            'notes': model_notes,
            'runs': [asdict(r) for r in records],
        }
        report['models'].append(entries_dict)

    report['compute_seconds'] = sum(
        sum(s for s in (r['seconds_per_epoch'], r['eval_seconds_per_epoch']) if s == s)
        * r['epochs_run']
        for e in report['models']
        if not e['imported']
        for r in e['runs']
    )  # `s == s`: a partial run has no evaluation time (NaN)
    out.mkdir(parents=True, exist_ok=True)
    chart = out / f'{stem}.png'
    if plot:
        try:
            report['plot'] = str(plot_report(report, chart))
        except ImportError as e:
            log.warning('%s; no chart written', e)
    if 'plot' not in report and chart.exists():  # An earlier report's: stale now.
        chart.unlink()
        log.info("Removed %s (an earlier report's chart)", chart)
    info = machine_info()
    info['omp_num_threads'] = os.environ.get('OMP_NUM_THREADS')
    info['command'] = command
    info['wall_seconds'] = time.perf_counter() - t_start
    info['runs_dir'] = str(runs_root)
    report['meta'] = info
    from pyg_mentor.train import write_json

    write_json(out / f'{stem}.json', report)
    (out / f'{stem}.md').write_text(format_report(report))
    log.info('Report: %s', out / f'{stem}.md')
    return report


# Command line ################################################################


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    r"""The options of ``pyg-mentor compare`` / ``python benchmarks/compare.py``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            'Train models over seeds with the MMRec protocol and write a comparison '
            'report. Runs go to --runs (default: runs/compare-<dataset>/<label>/seed-<seed>/; '
            'rerunning skips finished runs and resumes interrupted ones); the report '
            '<name>.md/.json/.png goes to --out (default: the --runs folder). Nothing is '
            'written into the repository unless --out/--runs point there.'
        ),
    )
    parser.add_argument(
        '--dataset',
        required=True,
        help="MMRec dataset name under --root, or 'synthetic' / "
        "'synthetic-baby' (planted structure)",
    )
    parser.add_argument(
        '--models',
        default=None,
        help='comma-separated registered models (default: all); '
        'LABEL=MODEL trains MODEL under its own label, with its '
        'own --set LABEL:key=value (e.g. a modality ablation: '
        'mentor,mentor_text=mentor --set mentor_text:modalities=text)',
    )
    parser.add_argument(
        '--seeds',
        type=int,
        default=3,
        help='runs per model, seeds 999, 1000, ... (the seed option; default: %(default)s)',
    )
    parser.add_argument(
        '--root',
        default=None,
        help='folder holding <dataset>/ (default: $PYG_MENTOR_DATA or ./datasets)',
    )
    parser.add_argument(
        '--runs', default=None, help='folder of the runs (default: runs/compare-<dataset>)'
    )
    parser.add_argument(
        '--out',
        default=None,
        help='folder of the report <name>.md/.json/.png (default: the '
        '--runs folder; --out benchmarks/results updates the '
        'committed reports)',
    )
    parser.add_argument(
        '--name', default=None, help='file stem of the report (default: compare_<dataset>)'
    )
    parser.add_argument(
        '--set',
        nargs='+',
        action='extend',
        default=[],
        metavar='[LABEL:]KEY=VALUE',
        help='options for every model (lr=1e-3) or one '
        '(mentor:epochs=10); list values are grid axes',
    )
    parser.add_argument(
        '--no-grid',
        action='store_true',
        help="registered defaults only (default: search each model's "
        'registered grid on the first seed, winner chosen on valid '
        'and reused for the other seeds)',
    )
    parser.add_argument(
        '--max-epochs',
        type=int,
        default=None,
        help='cap on the epochs of every run (reported as capped)',
    )
    parser.add_argument(
        '--import',
        dest='imports',
        action='append',
        default=[],
        metavar='MODEL=RUN_FOLDER',
        help='report an existing (finished or partial) run folder for '
        'MODEL instead of training it; repeatable',
    )
    parser.add_argument(
        '--note',
        action='append',
        default=[],
        metavar='MODEL=TEXT',
        help='a note for MODEL in the report (e.g. where its fixed '
        'hyper-parameters come from); repeatable',
    )
    parser.add_argument('--no-plot', action='store_true', help='no PNG bar chart')
    parser.add_argument(
        '--report-only',
        action='store_true',
        help='train nothing: report the runs that exist under --runs (unfinished '
        'ones as they stand, marked partial), e.g. while the comparison still runs',
    )
    parser.add_argument(
        '--scale', type=float, default=1.0, help='size factor of synthetic-<shape> datasets'
    )
    parser.add_argument('--data-seed', type=int, default=0, help='seed of the synthetic generator')
    parser.add_argument(
        '--surrogate-features',
        choices=('interactions', 'random'),
        default=None,
        help='SURROGATE image/text features for datasets without any; '
        'needed by multimodal models there (see '
        'pyg_mentor.datasets.surrogate)',
    )
    return parser


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    r"""Runs a comparison from command-line arguments, prints the report and
    where it was written. :obj:`prog` names the command in the help and in the
    report (default: ``python benchmarks/compare.py``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = prog or 'python benchmarks/compare.py'
    args = build_parser(prog).parse_args(argv)
    from pyg_mentor.nn.models.base import MODELS, get_model_spec  # torch: after parsing

    get_model_spec('lightgcn')  # Imports the registry.
    imports = parse_imports(args.imports)
    imported = {m for m, _ in imports}
    if args.models:
        models = [m.strip() for m in args.models.split(',') if m.strip()]
    else:
        models = sorted(m for m in MODELS if m not in imported)
    labels = [m.partition('=')[0].strip() for m in models]  # LABEL=MODEL entries
    common, per_model = parse_model_assignments(args.set, [m for m in labels if m not in imported])
    runs = Path(args.runs) if args.runs else Path(f'runs/compare-{args.dataset}')
    out = Path(args.out) if args.out else runs
    report = compare(
        args.dataset,
        models,
        args.seeds,
        root=args.root,
        runs_dir=runs,
        out_dir=out,
        options=common,
        model_options=per_model,
        grid=not args.no_grid,
        max_epochs=args.max_epochs,
        imports=imports,
        surrogate=args.surrogate_features,
        scale=args.scale,
        data_seed=args.data_seed,
        plot=not args.no_plot,
        name=args.name,
        command=f'{prog} {shlex.join(argv)}',
        notes=dict(parse_model_pairs(args.note, '--note', 'TEXT')),
        report_only=args.report_only,
    )
    stem = out / (args.name or f'compare_{args.dataset}')
    print(stem.with_suffix('.md').read_text())
    print(f'report: {stem.with_suffix(".md")} (+ .json{", .png" if "plot" in report else ""})')
    return 0


if __name__ == '__main__':
    from pyg_mentor.cli import setup_logging

    setup_logging(verbose=False)
    try:
        sys.exit(main())
    except (KeyError, ValueError, OSError) as e:
        print(
            f'compare: error: {e.args[0] if isinstance(e, KeyError) and e.args else e}',
            file=sys.stderr,
        )
        sys.exit(2)

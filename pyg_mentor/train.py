r"""Training with MMRec's protocol: shuffled interaction batches with one uniform
negative each, Adam, full-ranking validation every epoch, early stopping on the
rounded validation metric, test metrics at the best-valid epoch, and a
hyper-parameter grid whose winner is chosen on validation.

A run directory holds ``log.csv`` (one row per epoch), TensorBoard events (if
installed), ``best.pt`` / ``last.pt`` checkpoints and ``metrics.json``.
``last.pt`` holds everything needed to continue (model, optimiser, random
generators, early-stopping state, history), so a resumed run ends with the same
result as an uninterrupted one.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import random
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.data import HeteroData
from tqdm.auto import tqdm

from pyg_mentor.config import TrainConfig, Trial, expand_grid
from pyg_mentor.evaluation import Evaluator, format_metrics_table
from pyg_mentor.nn.models.base import Recommender, get_model_spec
from pyg_mentor.typing import ITEM, RATES, USER
from pyg_mentor.utils.io import atomic_torch_save
from pyg_mentor.utils.sampling import NegativeSampler, train_batches, user_batches

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1


@dataclass
class TrainResult:
    r"""The outcome of one training run.

    ``best_epoch`` is 0-based as in MMRec's logs; ``valid`` / ``test`` are the
    metrics at that epoch; ``status`` is ``'early_stopped'``, ``'max_epochs'``
    or ``'nan_loss'``.
    """

    best_epoch: int
    valid: dict[str, float]
    test: dict[str, float]
    epochs_run: int
    status: str
    train_seconds: float
    eval_seconds: float
    history: list[dict[str, float]] = field(default_factory=list, repr=False)
    error: str | None = None

    @property
    def seconds_per_epoch(self) -> float:
        return self.train_seconds / max(self.epochs_run, 1)

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop('history')
        out['seconds_per_epoch'] = self.seconds_per_epoch
        return out


def seed_everything(seed: int) -> None:
    r"""Seeds Python, NumPy and torch (the model initialisation)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    r"""Trains any :class:`~pyg_mentor.nn.models.Recommender` with MMRec's
    protocol (part B.2-B.4 of the reference).

    Args:
        model (Recommender): The model, already on :obj:`config.device`.
        data (HeteroData): The dataset (layout of :mod:`pyg_mentor.typing`).
        config (TrainConfig): Training options.
        out_dir (str or Path, optional): Where logs and checkpoints go; nothing
            is written if :obj:`None`.
        evaluators (Mapping[str, Evaluator], optional): Prebuilt ``'valid'`` and
            ``'test'`` evaluators (to share them across a grid).
    """

    def __init__(
        self,
        model: Recommender,
        data: HeteroData,
        config: TrainConfig,
        out_dir: str | Path | None = None,
        evaluators: Mapping[str, Evaluator] | None = None,
    ):
        self.model = model
        self.config = config
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.device = torch.device(config.device)
        self.edge_index = data[RATES].edge_index
        self.sampler = NegativeSampler(self.edge_index, data[ITEM].num_nodes)
        self.evaluators = dict(evaluators) if evaluators else {
            split: Evaluator(data, split, ks=config.ks,
                             batch_size=config.eval_batch_size)
            for split in ('valid', 'test')
        }
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.lr,
                                          weight_decay=config.weight_decay)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.num_users = data[USER].num_nodes

    # Checkpoints ##############################################################

    def _state(self, epoch: int, stop: dict[str, Any],
               history: list[dict[str, float]]) -> dict[str, Any]:
        return {
            'version': CHECKPOINT_VERSION,
            'epoch': epoch,
            'model': self.model.state_dict(),
            'optimizer': self.optimizer.state_dict(),
            'generator': self.generator.get_state(),
            'torch_rng': torch.get_rng_state(),
            'numpy_rng': np.random.get_state(),
            'python_rng': random.getstate(),
            'stop': stop,
            'history': history,
            'config': self.config.to_dict(),
        }

    def _restore(self, path: Path) -> tuple[int, dict[str, Any], list]:
        state = torch.load(path, map_location=self.device, weights_only=False)
        if state.get('version') != CHECKPOINT_VERSION:
            raise ValueError(f'{path}: unsupported checkpoint version '
                             f"{state.get('version')}")
        saved = {k: v for k, v in state['config'].items()
                 if k not in ('epochs', 'progress', 'tensorboard', 'device')}
        now = {k: v for k, v in self.config.to_dict().items() if k in saved}
        if saved != now:
            diff = {k: (saved[k], now[k]) for k in saved if saved[k] != now[k]}
            raise ValueError(f'{path}: checkpoint was trained with other options '
                             f'(saved, now): {diff}')
        self.model.load_state_dict(state['model'])
        self.optimizer.load_state_dict(state['optimizer'])
        self.generator.set_state(state['generator'])
        torch.set_rng_state(state['torch_rng'])
        np.random.set_state(state['numpy_rng'])
        random.setstate(state['python_rng'])
        return state['epoch'], state['stop'], state['history']

    # Logging ##################################################################

    def _open_logs(self, history: list[dict[str, float]]):
        if self.out_dir is None:
            return None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        # Rewritten from the checkpoint's history, so a resumed run never logs
        # an epoch twice.
        with open(self.out_dir / 'log.csv', 'w', newline='') as f:
            if history:
                writer = csv.DictWriter(f, fieldnames=_columns(history))
                writer.writeheader()
                writer.writerows(history)
        if not self.config.tensorboard:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.info('tensorboard is not installed: CSV log only '
                     '(pip install "pyg_mentor[logging]")')
            return None
        return SummaryWriter(str(self.out_dir / 'tensorboard'),
                             purge_step=len(history) or None)

    def _log_epoch(self, row: dict[str, float], history: list[dict[str, float]],
                   writer) -> None:
        history.append(row)
        if self.out_dir is None:
            return
        path = self.out_dir / 'log.csv'
        columns = _columns(history)
        if len(history) > 1 and columns != _columns(history[:-1]):
            rows = history  # A new column (e.g. test metrics) appeared.
            mode = 'w'
        else:
            rows, mode = [row], 'a'
        with open(path, mode, newline='') as f:
            writer_csv = csv.DictWriter(f, fieldnames=columns)
            if mode == 'w' or f.tell() == 0:
                writer_csv.writeheader()
            writer_csv.writerows(rows)
        if writer is not None:
            for key, value in row.items():
                if key != 'epoch' and value == value:  # Skip NaN placeholders.
                    writer.add_scalar(key.replace('@', '_at_'), value,
                                      int(row['epoch']))
            writer.flush()

    # Training #################################################################

    def _train_epoch(self, epoch: int) -> tuple[dict[str, float], str | None]:
        self.model.train()
        self.model.on_epoch_start(epoch, self.generator)
        sums: dict[str, float] = defaultdict(float)
        if self.config.sampler == 'users':  # MMSSL's release
            num_batches = self.edge_index.size(1) // self.config.batch_size + 1
            batches = user_batches(self.edge_index, self.sampler.num_items,
                                   self.config.batch_size, self.generator)
        else:
            num_batches = math.ceil(self.edge_index.size(1) / self.config.batch_size)
            batches = train_batches(self.edge_index, self.sampler,
                                    self.config.batch_size, self.generator)
        bar = tqdm(batches, total=num_batches, desc=f'epoch {epoch}',
                   leave=False, disable=not self.config.progress)
        for i, batch in enumerate(bar):
            # zero_grad, loss, backward, step (a model may add its own updates)
            terms = self.model.train_step(batch.to(self.device), self.optimizer)
            if not torch.isfinite(terms['loss']):
                values = {k: float(v) for k, v in terms.items()}
                return {}, (f'non-finite loss at epoch {epoch}, batch {i}: '
                            f'{values}')
            for key, value in terms.items():
                sums[key] += float(value.detach())
            if i % 10 == 0:
                bar.set_postfix(loss=f"{sums['loss'] / (i + 1):.4f}")
        return {f'train/{k}': v / num_batches for k, v in sums.items()}, None

    @torch.no_grad()
    def evaluate(self, splits: Sequence[str] = ('valid', 'test')) -> dict:
        r"""Full-ranking metrics of the current model on the given splits."""
        self.model.eval()
        scorer = self.model.scorer()
        return {split: self.evaluators[split].evaluate(scorer) for split in splits}

    def fit(self, resume: bool = False) -> TrainResult:
        r"""Trains until early stopping, :obj:`epochs`, or a non-finite loss.

        Args:
            resume (bool, optional): Continue from ``out_dir/last.pt`` if it
                exists. (default: :obj:`False`)
        """
        previous = (torch.are_deterministic_algorithms_enabled(),
                    torch.is_deterministic_algorithms_warn_only_enabled())
        if self.config.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            return self._fit(resume)
        finally:
            torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])

    def _fit(self, resume: bool) -> TrainResult:
        cfg = self.config
        metric = cfg.valid_metric
        stop: dict[str, Any] = {'best_score': -1.0, 'bad_epochs': 0,
                                'best_epoch': -1, 'valid': {}, 'test': {},
                                'train_seconds': 0.0, 'eval_seconds': 0.0,
                                'status': 'max_epochs'}
        history: list[dict[str, float]] = []
        start = 0
        last = self.out_dir / 'last.pt' if self.out_dir else None
        if resume and last is not None and last.exists():
            epoch, stop, history = self._restore(last)
            start = epoch + 1
            log.info('Resumed from %s at epoch %d', last, start)
            if stop['status'] == 'early_stopped':
                start = cfg.epochs  # Already finished.
        writer = self._open_logs(history)

        epochs = tqdm(range(start, cfg.epochs), desc='training', unit='epoch',
                      initial=start, total=cfg.epochs, disable=not cfg.progress)
        for epoch in epochs:
            t0 = time.perf_counter()
            train_log, error = self._train_epoch(epoch)
            t1 = time.perf_counter()
            if error is not None:
                log.error('Stopping: %s. Keeping the best checkpoint (epoch %d).',
                          error, stop['best_epoch'])
                stop['status'] = 'nan_loss'
                stop['error'] = error
                break

            results = self.evaluate(['valid'])
            score = round(results['valid'][metric], 4)
            improved = score > stop['best_score']
            if improved or cfg.test_every_epoch:
                results.update(self.evaluate(['test']))
            stop['train_seconds'] += t1 - t0
            stop['eval_seconds'] += time.perf_counter() - t1
            if improved:
                stop.update(best_score=score, bad_epochs=0, best_epoch=epoch,
                            valid=results['valid'], test=results['test'])
                if self.out_dir is not None and cfg.checkpoint:
                    atomic_torch_save({'epoch': epoch,
                                       'model': self.model.state_dict()},
                                      self.out_dir / 'best.pt')
            else:
                stop['bad_epochs'] += 1

            row = {'epoch': epoch, 'train_seconds': t1 - t0, **train_log}
            for split, values in results.items():
                row.update({f'{split}/{k}': v for k, v in values.items()})
            self._log_epoch(row, history, writer)
            epochs.set_postfix({metric: f"{results['valid'][metric]:.4f}",
                                'best': f"{stop['best_score']:.4f}"})
            log.info('epoch %d  loss %.4f  valid %s %.4f  (best %.4f @ %d)  '
                     '%.1fs', epoch, train_log.get('train/loss', float('nan')),
                     metric, results['valid'][metric], stop['best_score'],
                     stop['best_epoch'], time.perf_counter() - t0)

            if stop['bad_epochs'] > cfg.patience:
                stop['status'] = 'early_stopped'
            if self.out_dir is not None and cfg.checkpoint:
                atomic_torch_save(self._state(epoch, stop, history), last)
            if stop['status'] == 'early_stopped':
                break
        epochs.close()
        if writer is not None:
            writer.close()

        result = TrainResult(
            best_epoch=stop['best_epoch'], valid=stop['valid'], test=stop['test'],
            epochs_run=len(history), status=stop['status'],
            train_seconds=stop['train_seconds'],
            eval_seconds=stop['eval_seconds'], history=history,
            error=stop.get('error'))
        return result


def _columns(history: Sequence[Mapping[str, Any]]) -> list[str]:
    columns: dict[str, None] = {}
    for row in history:
        columns.update(dict.fromkeys(row))
    return list(columns)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, obj: Mapping[str, Any]) -> None:
    r"""Writes JSON atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + '.tmp')
    tmp.write_text(json.dumps(_jsonable(obj), indent=2) + '\n')
    tmp.replace(path)


def train_model(
    model: str,
    data: HeteroData,
    options: Mapping[str, Any] | None = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    dataset: str | None = None,
) -> dict[str, Any]:
    r"""Trains a registered model, over its hyper-parameter grid if the options
    contain lists, and picks the winner as :obj:`select_on` says.

    Args:
        model (str): Registered model name (e.g. ``'lightgcn'``).
        data (HeteroData): The dataset.
        options (Mapping[str, Any], optional): Model kwargs and
            :class:`TrainConfig` fields over the model's registered defaults;
            list values are grid axes.
        out_dir (str or Path, optional): Output folder. A single run writes into
            it; a grid writes one sub-folder per trial under ``trials/`` and the
            winner's numbers into ``out_dir/metrics.json``.
        resume (bool, optional): Continue unfinished runs from their
            ``last.pt`` and skip finished trials.
        dataset (str, optional): Dataset name recorded in ``metrics.json``.

    Returns:
        dict: What ``metrics.json`` holds: ``valid``, ``test``, ``best_epoch``,
        ``status``, timings, the config, and all trials of a grid.
    """
    spec = get_model_spec(model)
    trials = expand_grid(spec.cls, {**spec.defaults, **(options or {})})
    out = Path(out_dir) if out_dir is not None else None
    evaluators: dict[tuple, dict[str, Evaluator]] = {}
    summaries = []
    for i, trial in enumerate(trials):
        trial_dir = out if out is None or len(trials) == 1 else (
            out / 'trials' / f'{i:03d}')
        done = trial_dir / 'metrics.json' if trial_dir is not None else None
        if resume and done is not None and done.exists():
            summary = json.loads(done.read_text())
            # A trial capped below the current `epochs` is continued instead.
            capped = (summary.get('status') == 'max_epochs' and summary.get(
                'train_config', {}).get('epochs', 0) < trial.train.epochs)
            if summary.get('status') in ('early_stopped', 'max_epochs') and len(
                    trials) > 1 and not capped:
                log.info('Trial %d/%d (%s) already finished', i + 1, len(trials),
                         trial.name)
                summaries.append(summary)
                continue
        if len(trials) > 1:
            log.info('Trial %d/%d: %s', i + 1, len(trials), trial.name)
        key = (trial.train.ks, trial.train.eval_batch_size)
        if key not in evaluators:
            evaluators[key] = {s: Evaluator(data, s, ks=trial.train.ks,
                                            batch_size=trial.train.eval_batch_size)
                               for s in ('valid', 'test')}
        summary = _run_trial(spec.cls, model, trial, data, trial_dir,
                             evaluators[key], resume, dataset)
        summaries.append(summary)

    if len(summaries) == 1:
        return summaries[0]
    select_on = trials[0].train.select_on
    split = 'valid' if select_on == 'valid' else 'test'
    metric = trials[0].train.valid_metric

    def score(s: Mapping[str, Any]) -> float:
        return round(s[split].get(metric, -1.0), 4) if s[split] else -1.0

    winner = max(range(len(summaries)), key=lambda j: score(summaries[j]))
    result = dict(summaries[winner])
    result['selected_on'] = select_on
    result['winner'] = winner
    result['trials'] = [
        {'trial': j, 'varied': trials[j].varied, 'status': s['status'],
         'best_epoch': s['best_epoch'], 'valid': s['valid'], 'test': s['test'],
         'seconds_per_epoch': s['seconds_per_epoch']}
        for j, s in enumerate(summaries)
    ]
    if out is not None:
        write_json(out / 'metrics.json', result)
    log.info('Grid winner (chosen on %s %s): trial %d %s', split, metric, winner,
             trials[winner].varied)
    return result


def _run_trial(
    cls: type[Recommender],
    model_name: str,
    trial: Trial,
    data: HeteroData,
    out: Path | None,
    evaluators: Mapping[str, Evaluator],
    resume: bool,
    dataset: str | None,
) -> dict[str, Any]:
    seed_everything(trial.train.seed)
    model = cls.from_data(data, **trial.model_kwargs).to(trial.train.device)
    trainer = Trainer(model, data, trial.train, out, evaluators)
    result = trainer.fit(resume=resume)
    summary = {
        'model': model_name,
        'dataset': dataset,
        **result.summary(),
        'model_kwargs': trial.model_kwargs,
        'varied': trial.varied,
        'train_config': trial.train.to_dict(),
        'num_parameters': sum(p.numel() for p in model.parameters()),
    }
    if out is not None:
        write_json(out / 'metrics.json', summary)
    if result.valid:
        log.info('%s %s: best epoch %d\n%s', model_name, trial.name,
                 result.best_epoch,
                 format_metrics_table({'valid': result.valid,
                                       'test': result.test}, trial.train.ks))
    return summary

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
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from tqdm.auto import tqdm

from pyg_mentor.config import TrainConfig, Trial, check_device, expand_grid
from pyg_mentor.datasets.load import prepare_data
from pyg_mentor.distributed import (
    broadcast_flag,
    broadcast_module,
    get_rank,
    get_world_size,
    global_batch,
    shard,
    sync_gradients,
)
from pyg_mentor.evaluation import Evaluator, format_metrics_table
from pyg_mentor.loader import BPRNeighborLoader, neighbor_seed
from pyg_mentor.nn.models.base import Recommender, get_model_spec
from pyg_mentor.run_folder import (
    RESUME_MAY_CHANGE,
    RUN_FILE,
    RunFolderError,
    RunLock,
    clean_temp_files,
    clear_run,
    format_changes,
    holds_run,
    identity_changes,
    plain,
    read_json,
)
from pyg_mentor.typing import ITEM, RATES, USER
from pyg_mentor.utils.io import (
    CorruptFileError,
    atomic_torch_save,
    atomic_write_text,
    hetero_digest,
    hetero_fingerprint,
    safe_torch_load,
)
from pyg_mentor.utils.sampling import NegativeSampler, train_batches, user_batches

log = logging.getLogger(__name__)

#: 2: ``best.pt`` and ``last.pt`` hold the run's identity (``'run'``); version
#: 1 checkpoints are still read.
CHECKPOINT_VERSION = 2


def load_checkpoint(path: str | Path, map_location: Any = 'cpu') -> dict[str, Any]:
    r"""Loads a checkpoint without running code from it
    (:func:`~pyg_mentor.utils.io.safe_torch_load`: ``weights_only=True``,
    tensors, numbers, strings, containers and NumPy's random state only).

    Raises:
        ~pyg_mentor.utils.io.UnsafeFileError: If loading would run code.
        ~pyg_mentor.utils.io.CorruptFileError: If the file is damaged or not a
            checkpoint of this package.
    """
    state = safe_torch_load(path, map_location, what='checkpoint')
    if not isinstance(state, dict) or 'model' not in state or 'epoch' not in state:
        raise CorruptFileError(f'{path}: not a checkpoint of pyg-mentor (no model state and epoch)')
    return state


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


#: Decimals of the validation metric that early stopping and grid selection compare
#: (MMRec's rule: an epoch improves if its rounded metric is strictly higher).
SCORE_DECIMALS = 4


def early_stopping_score(value: float) -> float:
    r"""The validation metric as early stopping compares it: rounded to
    :obj:`SCORE_DECIMALS` decimals."""
    return round(value, SCORE_DECIMALS)


def best_epoch(history: Sequence[Mapping[str, Any]], key: str) -> int | None:
    r"""The best epoch of a run's history by the trainer's rule: the FIRST epoch
    whose :obj:`key` (a ``log.csv`` column such as ``'valid/recall@20'``),
    rounded by :func:`early_stopping_score`, is the highest. Rows without a
    value (or NaN) are skipped; :obj:`None` if no row has one.

    Args:
        history (Sequence[Mapping]): Rows with ``'epoch'`` and :obj:`key`
            (``log.csv`` rows, or :attr:`TrainResult.history`).
        key (str): The column of the validation metric.
    """
    best, epoch = -math.inf, None
    for row in history:
        value = row.get(key)
        if value is None or math.isnan(value):
            continue
        score = early_stopping_score(value)
        if score > best:
            best, epoch = score, int(row['epoch'])
    return epoch


def cpu_contention_note(device: str = 'cpu') -> str | None:
    r"""A note when CPU run times will suffer from other processes: the device
    is the CPU, ``OMP_WAIT_POLICY`` is unset and the 1-minute load average is
    above 1 (spinning OpenMP threads then make short kernels many times
    slower); :obj:`None` otherwise."""
    import os

    if not str(device).startswith('cpu') or os.environ.get('OMP_WAIT_POLICY'):
        return None
    load = os.getloadavg()[0] if hasattr(os, 'getloadavg') else 0.0
    if load <= 1:
        return None
    return (
        f'the CPU is busy (load average {load:.1f} on {os.cpu_count()} cores) and '
        'OMP_WAIT_POLICY is unset: spinning OpenMP threads can make short kernels '
        '10-100x slower; consider OMP_WAIT_POLICY=PASSIVE (set before Python starts)'
    )


def training_plan(config: TrainConfig, num_batches: int, start: int = 0) -> str:
    r"""One line: what a training will do at most (epochs, early stopping,
    batches per epoch), before it starts."""
    resume = f', resuming at epoch {start}' if start else ''
    sampled = (
        f' on sampled subgraphs (num_neighbors {config.num_neighbors})'
        if config.sampler == 'neighbor'
        else ''
    )
    return (
        f'plan: up to {config.epochs} epochs{resume}; early stopping after '
        f'{config.patience + 1} epochs without a gain in valid {config.valid_metric} '
        f'(patience {config.patience}); {num_batches} batches of {config.batch_size} '
        f'per epoch{sampled}, full-ranking validation after each'
    )


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
        run_info (Mapping[str, Any], optional): The run's identity (model,
            model options, data options, training options, dataset digest; see
            :func:`run_identity`), stored in every checkpoint and checked when
            resuming.
        process_group (optional): A :mod:`torch.distributed` process group to
            train in (:mod:`pyg_mentor.distributed`): every process trains on
            its shard of every global batch (the batches and negatives of one
            process) inside :func:`~pyg_mentor.distributed.global_batch`,
            the gradients are averaged before every optimiser step, the
            evaluation is sharded by users with exact metrics, and only rank 0
            writes into :obj:`out_dir` (every rank reads ``last.pt`` to
            resume). Every process must build its :class:`Trainer` with the
            same arguments. (default: :obj:`None`, one process)
    """

    def __init__(
        self,
        model: Recommender,
        data: HeteroData,
        config: TrainConfig,
        out_dir: str | Path | None = None,
        evaluators: Mapping[str, Evaluator] | None = None,
        *,
        run_info: Mapping[str, Any] | None = None,
        process_group: Any = None,
    ):
        self.run_info = plain(dict(run_info)) if run_info else None
        self.model = model
        self.config = config
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.group = process_group
        self.rank, self.world_size = get_rank(process_group), get_world_size(process_group)
        if self.world_size > 1:
            model.check_distributed()
        self.device = torch.device(config.device)
        # The training graph the model runs on (features, item graph), on the
        # model's device; sampling stays on the CPU.
        self.data = data.to(self.device)
        self.edge_index = data[RATES].edge_index
        self.sampler = NegativeSampler(self.edge_index, data[ITEM].num_nodes)
        self.evaluators = (
            dict(evaluators)
            if evaluators
            else {
                split: Evaluator(data, split, ks=config.ks, batch_size=config.eval_batch_size)
                for split in ('valid', 'test')
            }
        )
        # The trainer owns every optimiser (steps and checkpoints them).
        self.optimizers = list(model.configure_optimizers(config.lr, config.weight_decay))
        if self.world_size > 1:
            # Every rank starts from rank 0's weights and steps with the
            # gradients averaged over the ranks.
            broadcast_module(model, process_group)
            for optimizer in self.optimizers:
                sync_gradients(optimizer, process_group)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.num_users = data[USER].num_nodes
        # sampler='neighbor': every batch trains on its sampled subgraph, drawn
        # from a generator of its own (the batches and negatives stay those of
        # full-graph training); unsupported models and options fail here.
        self.subgraphs: BPRNeighborLoader | None = None
        if config.sampler == 'neighbor':
            model.check_sampling()
            self.subgraphs = BPRNeighborLoader(
                model.sampled_neighbors(config.num_neighbors),
                torch.Generator().manual_seed(neighbor_seed(config.seed, self.rank)),
                features=model.multimodal,
            )

    @property
    def write_dir(self) -> Path | None:
        r"""Where this trainer writes logs and checkpoints: :obj:`out_dir` on
        rank 0, nowhere on the other ranks."""
        return self.out_dir if self.rank == 0 else None

    @property
    def writes(self) -> bool:
        r"""Whether this trainer writes logs and checkpoints."""
        return self.write_dir is not None

    # Checkpoints ##############################################################

    def _neighbor_states(self) -> list[Tensor] | None:
        r"""The neighbour samplers' generator states of every rank (a
        collective: every rank calls it), or :obj:`None` without sampling."""
        if self.subgraphs is None or self.subgraphs.generator is None:
            return None
        state = self.subgraphs.generator.get_state()
        if self.world_size == 1:
            return [state]
        import torch.distributed as dist

        states: list[Any] = [None] * self.world_size
        dist.all_gather_object(states, state, group=self.group)
        return states

    def _state(
        self,
        epoch: int,
        stop: dict[str, Any],
        history: list[dict[str, float]],
        neighbor_states: list[Tensor] | None = None,
    ) -> dict[str, Any]:
        return {
            'version': CHECKPOINT_VERSION,
            'epoch': epoch,
            'model': self.model.state_dict(),
            'optimizers': [o.state_dict() for o in self.optimizers],
            'generator': self.generator.get_state(),
            **(
                {
                    'neighbor_generator': neighbor_states[0],
                    **(
                        {'neighbor_generators': neighbor_states} if len(neighbor_states) > 1 else {}
                    ),
                }
                if neighbor_states is not None
                else {}
            ),
            'torch_rng': torch.get_rng_state(),
            'numpy_rng': np.random.get_state(),
            'python_rng': random.getstate(),
            'stop': stop,
            'history': history,
            'config': self.config.to_dict(),
            'run': self.run_info,
        }

    def _restore(self, path: Path) -> tuple[int, dict[str, Any], list]:
        # On the CPU: the random states must stay CPU tensors, and
        # `load_state_dict` moves the model's and optimisers' tensors to
        # their parameters' devices.
        state = load_checkpoint(path)
        if state.get('version') not in (1, CHECKPOINT_VERSION):
            raise ValueError(f'{path}: unsupported checkpoint version {state.get("version")}')
        saved = {'train_config': state['config']}
        now = {'train_config': self.config.to_dict()}
        if isinstance(state.get('run'), dict) and self.run_info is not None:
            saved, now = state['run'], self.run_info
        changes = identity_changes(saved, now)
        if changes:
            raise RunFolderError(
                f'{path}: cannot resume: the run was trained with other options '
                f'({format_changes(changes)}); only {sorted(RESUME_MAY_CHANGE)} may '
                'change on --resume'
            )
        self.model.load_state_dict(state['model'])
        saved_optimizers = state.get('optimizers', [state.get('optimizer')])
        if len(saved_optimizers) != len(self.optimizers):
            raise ValueError(
                f'{path}: the checkpoint holds {len(saved_optimizers)} '
                f'optimiser state(s), the model has {len(self.optimizers)}'
            )
        for optimizer, saved in zip(self.optimizers, saved_optimizers):
            optimizer.load_state_dict(saved)
        self.generator.set_state(state['generator'])
        generator = self.subgraphs.generator if self.subgraphs is not None else None
        if generator is not None and 'neighbor_generator' in state:
            # Every rank's own stream; a rank the saved run did not have
            # (resumed with more processes) keeps its fresh one.
            streams = state.get('neighbor_generators') or [state['neighbor_generator']]
            if self.rank < len(streams):
                generator.set_state(streams[self.rank])
        torch.set_rng_state(state['torch_rng'])
        np.random.set_state(state['numpy_rng'])
        random.setstate(state['python_rng'])
        return state['epoch'], state['stop'], state['history']

    # Logging ##################################################################

    def _open_logs(self, history: list[dict[str, float]]):
        out_dir = self.write_dir
        if out_dir is None:
            return None
        out_dir.mkdir(parents=True, exist_ok=True)
        # Rewritten from the checkpoint's history, so a resumed run never logs
        # an epoch twice.
        with open(out_dir / 'log.csv', 'w', newline='') as f:
            if history:
                writer = csv.DictWriter(f, fieldnames=_columns(history))
                writer.writeheader()
                writer.writerows(history)
        if not self.config.tensorboard:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.info(
                'tensorboard is not installed: CSV log only (pip install "pyg_mentor[logging]")'
            )
            return None
        return SummaryWriter(str(out_dir / 'tensorboard'), purge_step=len(history) or None)

    def _log_epoch(self, row: dict[str, float], history: list[dict[str, float]], writer) -> None:
        history.append(row)
        if self.write_dir is None:
            return
        path = self.write_dir / 'log.csv'
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
                    writer.add_scalar(key.replace('@', '_at_'), value, int(row['epoch']))
            writer.flush()

    # Training #################################################################

    @property
    def num_batches(self) -> int:
        r"""Training batches per epoch."""
        if self.config.sampler == 'users':  # MMSSL's release
            return self.edge_index.size(1) // self.config.batch_size + 1
        return math.ceil(self.edge_index.size(1) / self.config.batch_size)

    def _show_bars(self) -> bool:
        r"""Progress bars only on a terminal (and rank 0); elsewhere one log
        line per epoch."""
        return self.config.progress and self.rank == 0 and sys.stderr.isatty()

    def _train_epoch(self, epoch: int) -> tuple[dict[str, float], str | None]:
        self.model.train()
        # The graph this epoch trains on (e.g. FREEDOM's pruned view).
        data = self.model.on_epoch_start(self.data, epoch, self.generator)
        sums: dict[str, float] = defaultdict(float)
        num_batches = self.num_batches
        if self.config.sampler == 'users':  # MMSSL's release
            batches = user_batches(
                self.edge_index, self.sampler.num_items, self.config.batch_size, self.generator
            )
        else:
            batches = train_batches(
                self.edge_index, self.sampler, self.config.batch_size, self.generator
            )
        bar = tqdm(
            batches,
            total=num_batches,
            desc=f'epoch {epoch}',
            leave=False,
            disable=not self._show_bars(),
        )
        for i, batch in enumerate(bar):
            if self.world_size > 1:  # This rank's shard of the global batch.
                batch = shard(batch, self.rank, self.world_size)
            graph = data
            if self.subgraphs is not None:  # The batch's subgraph, local ids.
                graph, batch = self.subgraphs(data, batch)
            # zero_grad, loss, backward, step (a model may add its own
            # updates); with several ranks, the loss of the global batch.
            with global_batch(self.group):
                terms = self.model.train_step(graph, batch.to(self.device), self.optimizers)
            if not torch.isfinite(terms['loss']):
                values = {k: float(v) for k, v in terms.items()}
                return {}, (f'non-finite loss at epoch {epoch}, batch {i}: {values}')
            for key, value in terms.items():
                sums[key] += float(value.detach())
            if i % 10 == 0:
                bar.set_postfix(loss=f'{sums["loss"] / (i + 1):.4f}')
        return {f'train/{k}': v / num_batches for k, v in sums.items()}, None

    @torch.no_grad()
    def evaluate(self, splits: Sequence[str] = ('valid', 'test')) -> dict:
        r"""Full-ranking metrics of the current model on the given splits."""
        self.model.eval()
        scorer = self.model.scorer(self.data)
        if self.world_size > 1:  # Every rank ranks its shard of the users.
            return {
                split: self.evaluators[split].evaluate(scorer, process_group=self.group)
                for split in splits
            }
        return {split: self.evaluators[split].evaluate(scorer) for split in splits}

    def fit(self, resume: bool = False) -> TrainResult:
        r"""Trains until early stopping, :obj:`epochs`, or a non-finite loss.

        Args:
            resume (bool, optional): Continue from ``out_dir/last.pt`` if it
                exists. (default: :obj:`False`)
        """
        # One process per run folder (a second one fails at once, naming the
        # holder); temporary files of a killed run are removed under the lock.
        # Several ranks: rank 0 holds it.
        write_dir = self.write_dir
        with RunLock(write_dir) if write_dir is not None else nullcontext():
            if write_dir is not None:
                clean_temp_files(write_dir)
            previous = (
                torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled(),
                torch.utils.deterministic.fill_uninitialized_memory,
            )
            if self.config.deterministic:
                torch.use_deterministic_algorithms(True, warn_only=True)
                # In this mode torch also fills every new tensor with NaN, so that
                # a kernel reading memory it never wrote is reproducible: a full
                # write pass over every allocation (MENTOR's training epoch on
                # Last.fm-2K: 1.06x slower with it, benchmarks/train_epoch.py). No
                # kernel used here reads unwritten memory, and runs stay
                # bit-identical without it (tests/test_train.py).
                torch.utils.deterministic.fill_uninitialized_memory = False
            try:
                return self._fit(resume)
            finally:
                torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
                torch.utils.deterministic.fill_uninitialized_memory = previous[2]

    def _fit(self, resume: bool) -> TrainResult:
        cfg = self.config
        metric = cfg.valid_metric
        stop: dict[str, Any] = {
            'best_score': -1.0,
            'bad_epochs': 0,
            'best_epoch': -1,
            'valid': {},
            'test': {},
            'train_seconds': 0.0,
            'eval_seconds': 0.0,
            'status': 'max_epochs',
        }
        history: list[dict[str, float]] = []
        start = 0
        last = self.out_dir / 'last.pt' if self.out_dir else None
        if resume and last is not None and last.exists():
            epoch, stop, history = self._restore(last)
            start = epoch + 1
            log.info('Resumed from %s at epoch %d', last, start)
            # `patience` may change on resume: the run continues, or stops,
            # exactly where a run with the new patience would have.
            if stop['status'] == 'early_stopped' and stop['bad_epochs'] <= cfg.patience:
                stop['status'] = 'max_epochs'
            elif stop['status'] != 'nan_loss' and stop['bad_epochs'] > cfg.patience:
                stop['status'] = 'early_stopped'
            if stop['status'] == 'early_stopped':
                start = cfg.epochs  # Already finished.
        writer = self._open_logs(history)

        if start < cfg.epochs and self.rank == 0:
            processes = f' on {self.world_size} processes' if self.world_size > 1 else ''
            log.info('%s%s', training_plan(cfg, self.num_batches, start), processes)
            note = cpu_contention_note(cfg.device)
            if note:
                log.info('note: %s', note)
        bars = self._show_bars()
        epochs = tqdm(
            range(start, cfg.epochs),
            desc='training',
            unit='epoch',
            initial=start,
            total=cfg.epochs,
            disable=not bars,
        )
        for epoch in epochs:
            t0 = time.perf_counter()
            train_log, error = self._train_epoch(epoch)
            t1 = time.perf_counter()
            if error is not None:
                log.error(
                    'Stopping: %s. Keeping the best checkpoint (epoch %d).',
                    error,
                    stop['best_epoch'],
                )
                stop['status'] = 'nan_loss'
                stop['error'] = error
                break

            results = self.evaluate(['valid'])
            score = early_stopping_score(results['valid'][metric])
            improved = score > stop['best_score']
            if improved or cfg.test_every_epoch:
                results.update(self.evaluate(['test']))
            stop['train_seconds'] += t1 - t0
            stop['eval_seconds'] += time.perf_counter() - t1
            if improved:
                stop.update(
                    best_score=score,
                    bad_epochs=0,
                    best_epoch=epoch,
                    valid=results['valid'],
                    test=results['test'],
                )
                if self.write_dir is not None and cfg.checkpoint:
                    atomic_torch_save(
                        {
                            'version': CHECKPOINT_VERSION,
                            'epoch': epoch,
                            'model': self.model.state_dict(),
                            'config': cfg.to_dict(),
                            'run': self.run_info,
                        },
                        self.write_dir / 'best.pt',
                    )
            else:
                stop['bad_epochs'] += 1

            row = {'epoch': epoch, 'train_seconds': t1 - t0, **train_log}
            for split, values in results.items():
                row.update({f'{split}/{k}': v for k, v in values.items()})
            self._log_epoch(row, history, writer)
            epochs.set_postfix(
                {metric: f'{results["valid"][metric]:.4f}', 'best': f'{stop["best_score"]:.4f}'}
            )
            # One line per epoch where no bar shows it (rank 0).
            log.log(
                logging.DEBUG if bars or self.rank > 0 else logging.INFO,
                'epoch %d/%d  loss %.4f  valid %s %.4f  (best %.4f @ %d)  %.1fs',
                epoch,
                cfg.epochs,
                train_log.get('train/loss', float('nan')),
                metric,
                results['valid'][metric],
                stop['best_score'],
                stop['best_epoch'],
                time.perf_counter() - t0,
            )
            if epoch == start and cfg.epochs - epoch > 1 and self.rank == 0:
                seconds = time.perf_counter() - t0
                log.info(
                    'epoch %d took %s: at most %s more to the cap of %d epochs '
                    '(early stopping usually ends sooner)',
                    epoch,
                    _duration(seconds),
                    _duration(seconds * (cfg.epochs - epoch - 1)),
                    cfg.epochs,
                )

            if stop['bad_epochs'] > cfg.patience:
                stop['status'] = 'early_stopped'
            if last is not None and cfg.checkpoint:
                neighbor_states = self._neighbor_states()  # every rank's
                if self.writes:
                    atomic_torch_save(self._state(epoch, stop, history, neighbor_states), last)
            # Rank 0 decides (every rank computed the same metrics).
            if broadcast_flag(stop['status'] == 'early_stopped', self.group):
                stop['status'] = 'early_stopped'
                break
        epochs.close()
        if writer is not None:
            writer.close()

        result = TrainResult(
            best_epoch=stop['best_epoch'],
            valid=stop['valid'],
            test=stop['test'],
            epochs_run=len(history),
            status=stop['status'],
            train_seconds=stop['train_seconds'],
            eval_seconds=stop['eval_seconds'],
            history=history,
            error=stop.get('error'),
        )
        return result


def _duration(seconds: float) -> str:
    r"""``'0.4 s'``, ``'12 min'``, ``'3.5 h'``."""
    if seconds < 60:
        return f'{seconds:.1f} s'
    return f'{seconds / 60:.0f} min' if seconds < 5400 else f'{seconds / 3600:.1f} h'


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
    r"""Writes JSON atomically (a temporary file of its own, fsync, rename), so
    that a reader sees the old or the new file, never a mix."""
    atomic_write_text(path, json.dumps(_jsonable(obj), indent=2) + '\n')


def train_model(
    model: str,
    data: HeteroData,
    options: Mapping[str, Any] | None = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    dataset: str | None = None,
    data_cache: str | Path | None = None,
    source: Mapping[str, Any] | None = None,
    process_group: Any = None,
) -> dict[str, Any]:
    r"""Trains a registered model, over its hyper-parameter grid if the options
    contain lists, and picks the winner as :obj:`select_on` says.

    Every trial's data is prepared from :obj:`data` with its data options
    (:class:`~pyg_mentor.config.DataConfig`: modalities, item graph) by
    :func:`~pyg_mentor.datasets.load.prepare_data`.

    The output folder holds one run (see :mod:`pyg_mentor.run_folder`): it is
    locked while training (a second process fails at once, naming the
    holder), and ``run.json`` is written only after every check passed: the
    options (types and ranges), the device, the data (every user has a
    negative item), the first model can be built and, with :obj:`resume`, that
    nothing but :obj:`~pyg_mentor.run_folder.RESUME_MAY_CHANGE` differs from
    the saved run (model, options, dataset content). Without :obj:`resume`, a
    run already in the folder is replaced.

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
        data_cache (str or Path, optional): Cache folder of the FAISS item
            graphs (see :func:`~pyg_mentor.datasets.load.item_graph_cache_dir`).
        source (Mapping[str, Any], optional): How to load :obj:`data` again
            (:func:`~pyg_mentor.datasets.load.load_dataset`'s ``root``,
            ``scale``, ``data_seed``, ``surrogate_features``,
            ``allow_sparse_ids``), recorded in ``run.json`` for ``evaluate`` and
            ``recommend``.
        process_group (optional): Train every trial on the processes of
            this :mod:`torch.distributed` group (:class:`Trainer`); every
            process calls :func:`train_model` with the same arguments, rank 0
            locks and writes the output folder, the others only read it.

    Returns:
        dict: What ``metrics.json`` holds: ``valid``, ``test``, ``best_epoch``,
        ``status``, timings, the config, and all trials of a grid.
    """
    spec = get_model_spec(model)
    options = dict(options or {})
    trials = expand_grid(spec.cls, {**spec.defaults, **options})
    for device in sorted({t.train.device for t in trials}):
        check_device(device)
    check_negatives(data, {t.train.sampler for t in trials})
    out = Path(out_dir) if out_dir is not None else None
    digest, fingerprint = hetero_digest(data), hetero_fingerprint(data)
    identities = [run_identity(model, t, digest, fingerprint) for t in trials]
    prepared: dict[str, HeteroData] = {}

    def prepare(trial: Trial) -> HeteroData:
        data_key = json.dumps(trial.data.to_dict(), sort_keys=True)
        if data_key not in prepared:
            prepared[data_key] = prepare_data(
                data, trial.data, item_graph=spec.cls.needs_item_graph, cache_dir=data_cache
            )
        return prepared[data_key]

    # Several processes: rank 0 locks and writes the folder.
    write_out = out if get_rank(process_group) == 0 else None
    with RunLock(write_out) if write_out is not None else nullcontext():
        if write_out is not None:
            clean_temp_files(write_out)
            if resume:
                _check_resume(
                    write_out, model, spec, dataset, identities[0], options, trials, identities
                )
        # The first model is built once before anything is written, so that a
        # data or option problem surfaces now (and not after run.json).
        first = spec.cls.from_data(prepare(trials[0]), **trials[0].model_kwargs)
        if trials[0].train.sampler == 'neighbor':
            first.check_sampling()
            first.sampled_neighbors(trials[0].train.num_neighbors)
        if get_world_size(process_group) > 1:
            first.check_distributed()
        if write_out is not None:
            if not resume and holds_run(write_out):
                log.info('Replacing the run in %s', write_out)
                clear_run(write_out)
            write_json(
                write_out / RUN_FILE,
                {
                    'format': 2,
                    'model': model,
                    'dataset': dataset,
                    **{k: v for k, v in (source or {}).items() if k != 'dataset'},
                    'data_digest': digest,
                    'data_fingerprint': fingerprint,
                    'options': options,
                    'torch': torch.__version__,
                    'python': sys.version.split()[0],
                    'argv': sys.argv,
                    'written': time.strftime('%Y-%m-%d %H:%M:%S'),
                },
            )
        return _train_trials(
            model, spec, trials, identities, data, prepare, out, resume, dataset, process_group
        )


def _train_trials(
    model: str,
    spec: Any,
    trials: Sequence[Trial],
    identities: Sequence[Mapping[str, Any]],
    data: HeteroData,
    prepare: Callable[[Trial], HeteroData],
    out: Path | None,
    resume: bool,
    dataset: str | None,
    process_group: Any = None,
) -> dict[str, Any]:
    r"""The loop of :func:`train_model` over the trials (under its lock)."""
    evaluators: dict[tuple, dict[str, Evaluator]] = {}
    summaries = []
    for i, trial in enumerate(trials):
        trial_dir = out if out is None or len(trials) == 1 else (out / 'trials' / f'{i:03d}')
        done = trial_dir / 'metrics.json' if trial_dir is not None else None
        if resume and done is not None and done.exists():
            summary = json.loads(done.read_text())
            # A trial capped below the current `epochs` is continued instead.
            capped = (
                summary.get('status') == 'max_epochs'
                and summary.get('train_config', {}).get('epochs', 0) < trial.train.epochs
            )
            if (
                summary.get('status') in ('early_stopped', 'max_epochs')
                and len(trials) > 1
                and not capped
            ):
                log.info('Trial %d/%d (%s) already finished', i + 1, len(trials), trial.name)
                summaries.append(summary)
                continue
        if len(trials) > 1:
            log.info('Trial %d/%d: %s', i + 1, len(trials), trial.name)
        key = (trial.train.ks, trial.train.eval_batch_size)
        if key not in evaluators:
            evaluators[key] = {
                s: Evaluator(data, s, ks=trial.train.ks, batch_size=trial.train.eval_batch_size)
                for s in ('valid', 'test')
            }
        summary = _run_trial(
            spec.cls,
            model,
            trial,
            prepare(trial),
            trial_dir,
            evaluators[key],
            resume,
            dataset,
            identities[i],
            process_group,
        )
        summaries.append(summary)

    if len(summaries) == 1:
        return summaries[0]
    select_on = trials[0].train.select_on
    split = 'valid' if select_on == 'valid' else 'test'
    metric = trials[0].train.valid_metric

    def score(s: Mapping[str, Any]) -> float:
        return early_stopping_score(s[split].get(metric, -1.0)) if s[split] else -1.0

    winner = max(range(len(summaries)), key=lambda j: score(summaries[j]))
    result = dict(summaries[winner])
    result['selected_on'] = select_on
    result['winner'] = winner
    result['trials'] = [
        {
            'trial': j,
            'varied': trials[j].varied,
            'status': s['status'],
            'best_epoch': s['best_epoch'],
            'valid': s['valid'],
            'test': s['test'],
            'seconds_per_epoch': s['seconds_per_epoch'],
        }
        for j, s in enumerate(summaries)
    ]
    if out is not None and get_rank(process_group) == 0:
        write_json(out / 'metrics.json', result)
    log.info(
        'Grid winner (chosen on %s %s): trial %d %s', split, metric, winner, trials[winner].varied
    )
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
    identity: Mapping[str, Any] | None = None,
    process_group: Any = None,
) -> dict[str, Any]:
    seed_everything(trial.train.seed)
    model = cls.from_data(data, **trial.model_kwargs).to(trial.train.device)
    trainer = Trainer(
        model,
        data,
        trial.train,
        out,
        evaluators,
        run_info=identity,
        process_group=process_group,
    )
    result = trainer.fit(resume=resume)
    summary = {
        'model': model_name,
        'dataset': dataset,
        **result.summary(),
        'model_kwargs': trial.model_kwargs,
        'data_config': trial.data.to_dict(),
        'varied': trial.varied,
        'train_config': trial.train.to_dict(),
        'data_digest': (identity or {}).get('data_digest'),
        'data_fingerprint': (identity or {}).get('data_fingerprint'),
        'num_parameters': sum(p.numel() for p in model.parameters()),
    }
    if trainer.world_size > 1:
        summary['processes'] = trainer.world_size
    if trainer.write_dir is not None:
        write_json(trainer.write_dir / 'metrics.json', summary)
    if result.valid and trainer.rank == 0:
        # One line; the table once, at the end, by the caller (or with --verbose).
        metric = trial.train.valid_metric
        log.info(
            '%s %s: best epoch %d (%s), valid %s %.4f, test %s %.4f',
            model_name,
            trial.name,
            result.best_epoch,
            result.status,
            metric,
            result.valid.get(metric, math.nan),
            metric,
            result.test.get(metric, math.nan),
        )
        log.debug(
            '\n%s',
            format_metrics_table({'valid': result.valid, 'test': result.test}, trial.train.ks),
        )
    return summary


def run_identity(
    model: str,
    trial: Trial,
    data_digest: str | None,
    data_fingerprint: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    r"""What makes a run the same run: the registered model, its options, the
    data and training options, and the content of the dataset
    (:func:`~pyg_mentor.utils.io.hetero_digest` of its interactions,
    :func:`~pyg_mentor.utils.io.hetero_fingerprint` of its features). Stored
    in the checkpoints and compared on ``--resume`` (except
    :obj:`~pyg_mentor.run_folder.RESUME_MAY_CHANGE`)."""
    return plain(
        {
            'model': model,
            'model_kwargs': trial.model_kwargs,
            'data_config': trial.data.to_dict(),
            'train_config': trial.train.to_dict(),
            'data_digest': data_digest,
            'data_fingerprint': data_fingerprint,
        }
    )


def check_negatives(
    data: HeteroData, samplers: set[str] | Sequence[str] = ('interactions',)
) -> None:
    r"""Raises a :class:`ValueError` if some user has no negative item to
    sample (e.g. a data set with one item or one user), before training."""
    edge_index, num_items = data[RATES].edge_index, data[ITEM].num_nodes
    for sampler in samplers:
        candidates = torch.arange(num_items) if sampler == 'users' else None
        NegativeSampler(edge_index, num_items, candidates=candidates)


def _resolved_options(spec, options: Mapping[str, Any]) -> dict[str, Any]:
    r"""Options with every default filled in (training, data, model signature,
    registered), so that an option given explicitly at its default value is
    no change."""
    import inspect

    from pyg_mentor.config import DataConfig

    signature = {
        name: p.default
        for name, p in inspect.signature(spec.cls.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    return plain(
        {
            **TrainConfig().to_dict(),
            **DataConfig().to_dict(),
            **signature,
            **spec.defaults,
            **options,
        }
    )


def _check_resume(
    out: Path,
    model: str,
    spec,
    dataset: str | None,
    identity: Mapping[str, Any],
    options: Mapping[str, Any],
    trials: Sequence[Trial],
    identities: Sequence[Mapping[str, Any]],
) -> None:
    r"""Refuses a ``--resume`` that would change the run in :obj:`out`: its
    model, its dataset (content digest) or an option outside
    :obj:`~pyg_mentor.run_folder.RESUME_MAY_CHANGE`, as recorded in
    ``run.json``, in the checkpoints and in finished trials' ``metrics.json``."""
    changes: dict[str, tuple] = {}
    meta = read_json(out / RUN_FILE)
    if meta is not None:
        if meta.get('model') not in (None, model):
            changes['model'] = (meta['model'], model)
        if meta.get('dataset') and dataset and meta['dataset'] != dataset:
            changes['dataset'] = (meta['dataset'], dataset)
        changes.update(
            identity_changes(
                {k: meta.get(k) for k in ('data_digest', 'data_fingerprint')},
                {k: identity[k] for k in ('data_digest', 'data_fingerprint')},
            )
        )
        if 'model' not in changes:
            old = _resolved_options(spec, meta.get('options') or {})
            new = _resolved_options(spec, options)
            for key in sorted(set(old) | set(new)):
                if key not in RESUME_MAY_CHANGE and old.get(key) != new.get(key):
                    changes[key] = (old.get(key, '(default)'), new.get(key, '(default)'))
    for i, identity in enumerate(identities):
        trial_dir = out if len(trials) == 1 else out / 'trials' / f'{i:03d}'
        prefix = '' if len(trials) == 1 else f'trial {i:03d}: '
        last = trial_dir / 'last.pt'
        if last.exists():
            try:
                state = load_checkpoint(last)
            except CorruptFileError as e:
                raise CorruptFileError(
                    f'{e}; delete it to restart this run from its '
                    'beginning, or train without --resume'
                ) from None
            saved = (
                state['run']
                if isinstance(state.get('run'), dict)
                else {'train_config': state.get('config') or {}}
            )
            for k, v in identity_changes(saved, identity).items():
                changes.setdefault(prefix + k, v)
        summary = read_json(trial_dir / 'metrics.json')
        if summary is not None and 'trials' not in summary:
            saved = {
                k: summary.get(k)
                for k in (
                    'model',
                    'model_kwargs',
                    'data_config',
                    'train_config',
                    'data_digest',
                    'data_fingerprint',
                )
            }
            for k, v in identity_changes(saved, identity).items():
                changes.setdefault(prefix + k, v)
    if changes:
        raise RunFolderError(
            f'{out}: --resume refused: the run there was started with other options '
            f'({format_changes(changes)}); only {sorted(RESUME_MAY_CHANGE)} may change '
            'on --resume. Choose another --out, or train without --resume to replace it'
        )

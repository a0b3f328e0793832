r"""Typed configuration at the edge: training options, and how a run's options are
resolved from the model's registered defaults, a config file and ``--set`` pairs.

Precedence, lowest to highest (as MMRec: overall -> model yaml -> command line):
:class:`TrainConfig` defaults, the model's registered defaults, the config file,
``--set key=value``. A key that names a :class:`TrainConfig` field is a training
option; every other key is a keyword argument of the model. A list value makes a
hyper-parameter grid axis.
"""
from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SELECT_ON = ('valid', 'test-as-released')
SAMPLERS = ('interactions', 'users')


@dataclass
class TrainConfig:
    r"""Training and evaluation options, MMRec's defaults.

    Args:
        epochs (int): Maximum number of epochs (MMRec: 1000).
        lr (float): Adam learning rate (MMRec: 1e-3; MENTOR: 1e-4).
        weight_decay (float): Adam weight decay (MMRec: 0).
        batch_size (int): Training interactions per batch (MMRec: 2048).
        eval_batch_size (int): Users per evaluation batch (MMRec: 4096).
        ks (tuple[int, ...]): Cut-offs of the metrics (MMRec: 5, 10, 20, 50).
        valid_metric (str): Early-stopping metric (MMRec: ``recall@20``;
            MENTOR: ``recall@10``), rounded to 4 decimals before comparison.
        patience (int): Stop after more than this many epochs without a strict
            improvement (MMRec's ``stopping_step`` 20: stops after the 21st).
        seed (int): Seed of the model initialisation and the sampling (999).
        test_every_epoch (bool): Evaluate the test split every epoch, as MMRec
            does. By default only at epochs where validation improves, which
            reports exactly the same numbers (test at the best-valid epoch) at
            half the evaluation cost.
        select_on (str): How the winner of a hyper-parameter grid is chosen:
            ``'valid'`` (best validation score) or ``'test-as-released'``
            (MMRec/MENTOR's ``quick_start``: best TEST score at the best-valid
            epoch; leaks the test set, offered only to reproduce papers).
        device (str): Torch device.
        progress (bool): tqdm progress bars.
        tensorboard (bool): TensorBoard event files (if tensorboard is
            installed) next to the CSV log.
        checkpoint (bool): Save ``best.pt`` and ``last.pt`` every epoch.
        deterministic (bool): Run with
            :func:`torch.use_deterministic_algorithms` (warn-only) during
            training, so that a seed gives bit-identical runs on the CPU (the
            multi-threaded gradient accumulation of repeated indices is
            otherwise order-dependent); measured at no cost on LightGCN/Baby.
        sampler (str): Training batches: ``'interactions'`` (MMRec: shuffled
            training pairs, :obj:`batch_size` per batch, negatives from the
            training items) or ``'users'`` (MMSSL's release: :obj:`batch_size`
            distinct uniform users per batch, :math:`\lfloor E / B \rfloor + 1`
            batches, negatives from all items); see
            :mod:`pyg_mentor.utils.sampling`.
    """

    epochs: int = 1000
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 2048
    eval_batch_size: int = 4096
    ks: tuple[int, ...] = (5, 10, 20, 50)
    valid_metric: str = 'recall@20'
    patience: int = 20
    seed: int = 999
    test_every_epoch: bool = False
    select_on: str = 'valid'
    device: str = 'cpu'
    progress: bool = True
    tensorboard: bool = True
    checkpoint: bool = True
    deterministic: bool = True
    sampler: str = 'interactions'

    def __post_init__(self):
        self.ks = tuple(int(k) for k in self.ks)
        name, _, k = self.valid_metric.partition('@')
        if name not in ('recall', 'ndcg', 'precision', 'map') or not k.isdigit():
            raise ValueError(
                f"valid_metric must look like 'recall@20' "
                f"(recall/ndcg/precision/map), got '{self.valid_metric}'")
        if int(k) not in self.ks:
            raise ValueError(f"valid_metric '{self.valid_metric}' needs "
                             f"{k} in ks={self.ks}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f'sampler must be one of {SAMPLERS}, '
                             f"got '{self.sampler}'")
        if self.select_on not in SELECT_ON:
            raise ValueError(f'select_on must be one of {SELECT_ON}, '
                             f"got '{self.select_on}'")
        for key in ('epochs', 'batch_size', 'eval_batch_size'):
            if getattr(self, key) < 1:
                raise ValueError(f'{key} must be >= 1, got {getattr(self, key)}')
        if self.patience < 0:
            raise ValueError(f'patience must be >= 0, got {self.patience}')

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out['ks'] = list(self.ks)
        return out


TRAIN_FIELDS = frozenset(f.name for f in dataclasses.fields(TrainConfig))


def parse_value(text: str) -> Any:
    r"""Parses a ``--set`` value: Python/JSON literals (numbers, booleans,
    lists, strings in quotes); anything else is kept as a plain string."""
    lowered = text.strip()
    if lowered in ('true', 'false'):
        return lowered == 'true'
    if lowered in ('none', 'null'):
        return None
    try:
        return ast.literal_eval(lowered)
    except (ValueError, SyntaxError):
        return text


def parse_assignments(pairs: Iterable[str]) -> dict[str, Any]:
    r"""``['lr=1e-3', 'num_layers=[1,2]']`` -> ``{'lr': 0.001, 'num_layers': [1, 2]}``."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition('=')
        if not sep or not key.strip():
            raise ValueError(f"--set expects key=value, got '{pair}'")
        out[key.strip()] = parse_value(value)
    return out


def load_config_file(path: str | Path) -> dict[str, Any]:
    r"""Reads a flat ``.json`` or ``.toml`` mapping of options (lists = grid)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'Config file not found: {path}')
    try:
        if path.suffix == '.json':
            out = json.loads(path.read_text())
        elif path.suffix == '.toml':
            out = tomllib.loads(path.read_text())
        else:
            raise ValueError(f'{path}: expected a .json or .toml config file')
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f'{path}: not a valid config file: {e}') from e
    if not isinstance(out, dict):
        raise ValueError(f'{path}: expected a mapping of options at the top level')
    return out


@dataclass
class Trial:
    r"""One point of a hyper-parameter grid: model kwargs and training options."""

    model_kwargs: dict[str, Any]
    train: TrainConfig
    varied: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        if not self.varied:
            return 'default'
        return ','.join(f'{k}={v}' for k, v in self.varied.items())


def expand_grid(
    model_cls: type,
    options: Mapping[str, Any],
) -> list[Trial]:
    r"""Splits resolved options into training options and model kwargs, checks
    every key, and expands list values into the Cartesian product.

    Args:
        model_cls (type): The model class (its ``__init__`` names its kwargs).
        options (Mapping[str, Any]): Resolved options; list values are axes
            (except :obj:`ks`, which is a list by nature).
    """
    params = inspect.signature(model_cls.__init__).parameters
    model_keys = {name for name, p in params.items()
                  if name not in ('self', 'num_users', 'num_items')
                  and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    unknown = sorted(set(options) - TRAIN_FIELDS - model_keys)
    if unknown:
        raise KeyError(
            f'Unknown option(s) {unknown} for model {model_cls.__name__}; '
            f'training options: {sorted(TRAIN_FIELDS)}; model options: '
            f'{sorted(model_keys)}')
    axes = {k: v for k, v in options.items() if isinstance(v, list) and k != 'ks'}
    trials = []
    for values in itertools.product(*axes.values()):
        point = dict(options)
        point.update(zip(axes, values))
        train = TrainConfig(**{k: v for k, v in point.items() if k in TRAIN_FIELDS})
        model_kwargs = {k: v for k, v in point.items() if k not in TRAIN_FIELDS}
        trials.append(Trial(model_kwargs, train, dict(zip(axes, values))))
    return trials

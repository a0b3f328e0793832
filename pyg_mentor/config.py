r"""Typed configuration at the edge: training options, and how a run's options are
resolved from the model's registered defaults, a config file and ``--set`` pairs.

Precedence, lowest to highest (as MMRec: overall -> model yaml -> command line):
:class:`TrainConfig` defaults, the model's registered defaults, the config file,
``--set key=value``. A key that names a :class:`TrainConfig` field is a training
option; every other key is a keyword argument of the model. A list value makes a
hyper-parameter grid axis.

Every value is checked against the type of its :class:`TrainConfig` field or of
the model's ``__init__`` parameter (``lr=abc`` -> "lr must be a float, got
'abc'"), and values that are meaningless whatever the model (a dimension below 1,
a negative number of layers, a dropout outside [0, 1), ...) are refused
(:func:`check_value`, :func:`check_model_option`).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import json
import re
import sys
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal, Union

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SELECT_ON = ('valid', 'test-as-released')
SAMPLERS = ('interactions', 'users', 'neighbor')


@dataclass
class TrainConfig:
    r"""Training and evaluation options, MMRec's defaults.

    Args:
        epochs (int): Maximum number of epochs (MMRec: 1000).
        lr (float): Adam learning rate (MMRec: 1e-3; MENTOR: 1e-4).
        weight_decay (float): Adam weight decay (MMRec: 0).
        batch_size (int): Training interactions per batch (MMRec: 2048).
        eval_batch_size (int or str): Users per evaluation chunk (MMRec: 4096),
            or ``'auto'``: as many as fit in a quarter of the available
            memory, at most 4096 (:func:`~pyg_mentor.evaluation.auto_batch_size`;
            with a million items, a few hundred users per chunk). Results do
            not depend on it.
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
            Torch's filling of new tensors in that mode
            (:attr:`torch.utils.deterministic.fill_uninitialized_memory`) is
            turned off during training: it is a write pass over every
            allocation and changes no result here.
        sampler (str): Training batches: ``'interactions'`` (MMRec: shuffled
            training pairs, :obj:`batch_size` per batch, negatives from the
            training items) or ``'users'`` (MMSSL's release: :obj:`batch_size`
            distinct uniform users per batch, :math:`\lfloor E / B \rfloor + 1`
            batches, negatives from all items); see
            :mod:`pyg_mentor.utils.sampling`; or ``'neighbor'``: MMRec's
            batches, each trained on the subgraph sampled around its users
            and items (:class:`~pyg_mentor.loader.BPRNeighborLoader`,
            :obj:`num_neighbors`; evaluation stays full-graph).
        num_neighbors (list[int], optional): With ``sampler='neighbor'``,
            the neighbours sampled per node at each user-item layer of the
            model, e.g. ``[10, 10]``; :obj:`-1` takes all of them (then the
            batch's representations equal the full-graph ones). Models with
            an item graph add its hops (see
            :meth:`~pyg_mentor.nn.models.Recommender.sampled_neighbors`).
    """

    epochs: int = 1000
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 2048
    eval_batch_size: int | Literal['auto'] = 'auto'
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
    num_neighbors: list[int] | None = None

    def __post_init__(self):
        hints = typing.get_type_hints(TrainConfig)
        for f in dataclasses.fields(self):
            setattr(self, f.name, check_value(f.name, getattr(self, f.name), hints[f.name]))
        self.ks = tuple(self.ks)
        if not self.ks or any(k < 1 for k in self.ks):
            raise ValueError(f'ks must be a non-empty list of integers >= 1, got {list(self.ks)}')
        if not self.lr > 0:
            raise ValueError(f'lr must be > 0, got {self.lr}')
        if self.weight_decay < 0:
            raise ValueError(f'weight_decay must be >= 0, got {self.weight_decay}')
        name, _, k = self.valid_metric.partition('@')
        if name not in ('recall', 'ndcg', 'precision', 'map') or not k.isdigit():
            raise ValueError(
                f"valid_metric must look like 'recall@20' "
                f"(recall/ndcg/precision/map), got '{self.valid_metric}'"
            )
        if int(k) not in self.ks:
            raise ValueError(f"valid_metric '{self.valid_metric}' needs {k} in ks={self.ks}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got '{self.sampler}'")
        if self.sampler == 'neighbor':
            if not self.num_neighbors or any(n == 0 or n < -1 for n in self.num_neighbors):
                raise ValueError(
                    "sampler='neighbor' needs num_neighbors, one entry per "
                    'user-item layer, each >= 1 or -1 (all), e.g. [10, 10]; '
                    f'got {self.num_neighbors}'
                )
        elif self.num_neighbors is not None:
            raise ValueError(
                f"num_neighbors is only used with sampler='neighbor' (sampler is '{self.sampler}')"
            )
        if self.select_on not in SELECT_ON:
            raise ValueError(f"select_on must be one of {SELECT_ON}, got '{self.select_on}'")
        for key in ('epochs', 'batch_size', 'eval_batch_size'):
            if getattr(self, key) != 'auto' and getattr(self, key) < 1:
                raise ValueError(f'{key} must be >= 1, got {getattr(self, key)}')
        if self.patience < 0:
            raise ValueError(f'patience must be >= 0, got {self.patience}')

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out['ks'] = list(self.ks)
        return out


TRAIN_FIELDS = frozenset(f.name for f in dataclasses.fields(TrainConfig))


#: The item-graph search methods (:func:`~pyg_mentor.utils.knn_item_graph`).
KNN_METHODS = ('exact', 'ivf')


@dataclass
class DataConfig:
    r"""How the dataset is prepared for a model, before it is built: which item
    modalities it sees and, for models with an item semantic graph (MENTOR,
    FREEDOM), how that graph is built (see
    :func:`~pyg_mentor.datasets.load.prepare_data`).

    Args:
        modalities (list[str], optional): The item modalities the model uses
            (e.g. ``['text']``, or ``'audio,text'``); :obj:`None` for all of
            the dataset's.
        knn_k (int): Neighbours per item of each modality's cosine
            :math:`k`-NN graph, the item itself included (MENTOR: 10).
        mm_image_weight (float): Weight of the image graph in the fused item
            graph when the modalities are exactly image and text (the text
            graph gets :math:`1 - w`), as MENTOR's and FREEDOM's option (0.1).
        modality_weights (dict[str, float], optional): The weight of every
            modality's graph in the fused item graph; overrides
            :obj:`mm_image_weight`. By default uniform for modality sets other
            than image + text.
        knn_method (str): How FAISS finds the neighbours (see
            :func:`~pyg_mentor.utils.knn_item_graph`): ``'exact'`` (a flat
            inner-product index, :math:`O(I^2 d)`) or ``'ivf'`` (an inverted
            file index, approximate: for catalogues of a million items, where
            the exact search takes hours on a CPU).
    """

    modalities: list[str] | None = None
    knn_k: int = 10
    mm_image_weight: float = 0.1
    modality_weights: dict[str, float] | None = None
    knn_method: str = 'exact'

    def __post_init__(self):
        if isinstance(self.modalities, str):  # `--set modalities=audio,text`
            self.modalities = [m.strip() for m in self.modalities.split(',') if m.strip()]
        if self.modalities is not None:
            self.modalities = sorted(self.modalities)
            if not self.modalities:
                raise ValueError('modalities must name at least one modality')
        if isinstance(self.knn_k, bool) or not isinstance(self.knn_k, int) or self.knn_k < 1:
            raise ValueError(f'knn_k must be a positive integer, got {self.knn_k!r}')
        if self.knn_method not in KNN_METHODS:
            raise ValueError(
                f'knn_method must be one of {list(KNN_METHODS)}, got {self.knn_method!r}'
            )
        if not 0.0 <= float(self.mm_image_weight) <= 1.0:
            raise ValueError(f'mm_image_weight must be in [0, 1], got {self.mm_image_weight}')
        if self.modality_weights is not None:
            if not isinstance(self.modality_weights, Mapping) or not self.modality_weights:
                raise ValueError(
                    'modality_weights must be a non-empty mapping '
                    f'{{modality: weight}}, got {self.modality_weights!r}'
                )
            self.modality_weights = {str(k): float(v) for k, v in self.modality_weights.items()}

    def graph_weights(self, modalities: Sequence[str]) -> dict[str, float]:
        r"""The fusion weight of each of :obj:`modalities`' item graphs."""
        if self.modality_weights is not None:
            missing = sorted(set(modalities) - set(self.modality_weights))
            if missing:
                raise ValueError(
                    f'modality_weights has no weight for {missing} '
                    f'(modalities: {sorted(modalities)})'
                )
            return {m: self.modality_weights[m] for m in modalities}
        if set(modalities) == {'image', 'text'}:
            return {'image': self.mm_image_weight, 'text': 1.0 - self.mm_image_weight}
        return {m: 1.0 / len(modalities) for m in modalities}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


DATA_FIELDS = frozenset(f.name for f in dataclasses.fields(DataConfig))


# Checking values ##########################################################


def _describe_type(hint: Any) -> str:
    if hint is bool:
        return 'true or false'
    if hint is int:
        return 'an integer'
    if hint is float:
        return 'a float'
    if hint is str:
        return 'a string'
    if hint is type(None):
        return 'none'
    if typing.get_origin(hint) is Literal:
        return 'one of ' + ', '.join(repr(a) for a in typing.get_args(hint))
    origin = typing.get_origin(hint)
    if origin in (list, tuple, Sequence, Iterable):
        return 'a list'
    if origin in (dict, Mapping):
        return 'a mapping'
    return getattr(hint, '__name__', str(hint))


def check_value(name: str, value: Any, hint: Any) -> Any:
    r"""Checks an option value against a type annotation and returns it
    (an integer given for a float becomes a float).

    Handles :obj:`bool`, :obj:`int`, :obj:`float`, :obj:`str`, :obj:`None`,
    :obj:`Literal`, unions and lists/tuples/mappings (elements of
    ``tuple[int, ...]`` / ``list[str]`` are checked too); other annotations are
    not checked.

    Raises:
        ValueError: E.g. "lr must be a float, got 'abc'",
            "epochs must be an integer, got 1.5".
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is inspect.Parameter.empty:
        return value
    if origin in (Union, types.UnionType):
        for option in args:
            try:
                return check_value(name, value, option)
            except ValueError:
                continue
        raise ValueError(
            f'{name} must be {" or ".join(_describe_type(a) for a in args)}, got {value!r}'
        )
    ok = True
    if origin is Literal:
        ok = value in args
    elif hint is type(None):
        ok = value is None
    elif hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            value = float(value)
    elif hint is str:
        ok = isinstance(value, str)
    elif origin in (list, tuple, Sequence):
        ok = isinstance(value, (list, tuple))
        if ok and args and (origin is not tuple or (len(args) == 2 and args[1] is ...)):
            value = [check_value(f'{name} entries', v, args[0]) for v in value]
    elif origin in (dict, Mapping):
        ok = isinstance(value, Mapping)
    if not ok:
        raise ValueError(f'{name} must be {_describe_type(hint)}, got {value!r}')
    return value


#: Model options that are meaningless outside a range whatever the model, by
#: name (full match): (pattern, test, requirement).
MODEL_OPTION_RANGES: tuple[tuple[str, Any, str], ...] = (
    (r'(?:.+_)?dim|num_heads', lambda v: v >= 1, 'must be >= 1'),
    (r'(?:num_)?(?:.+_)?layers', lambda v: v >= 0, 'must be >= 0'),
    (r'(?:.+_)?dropout\d*', lambda v: 0 <= v < 1, 'must be in [0, 1)'),
    (r'temperature|tau', lambda v: v > 0, 'must be > 0'),
    (r'(?:.+_)?weight|(?:.+_)?reg|(?:.+_)?lr', lambda v: v >= 0, 'must be >= 0'),
)


def check_model_option(name: str, value: Any) -> None:
    r"""Refuses a model option value that :obj:`MODEL_OPTION_RANGES` says is
    meaningless (e.g. ``embedding_dim=0``, ``num_layers=-1``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    for pattern, test, requirement in MODEL_OPTION_RANGES:
        if re.fullmatch(pattern, name):
            if not test(value):
                raise ValueError(f'{name} {requirement}, got {value}')
            return


@cache
def _model_options(model_cls: type) -> dict[str, Any]:
    r"""The options of a model: the ``__init__`` parameters with a default
    (the others, e.g. ``edge_index``, come from the data), with their types."""
    params = inspect.signature(model_cls.__init__).parameters
    try:
        hints = typing.get_type_hints(model_cls.__init__)
    except Exception:  # noqa: BLE001  (unresolvable annotations: no type checks)
        hints = {}
    return {
        name: hints.get(name, Any)
        for name, p in params.items()
        if name not in ('self', 'num_users', 'num_items')
        and p.default is not inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def check_device(device: str) -> None:
    r"""Refuses a torch device this machine does not have, with a clear
    message (e.g. ``device=cuda`` on a CPU-only PyTorch build)."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(
            f"device must be a torch device such as 'cpu' or 'cuda:0', got {device!r}"
        ) from None
    if dev.type == 'cuda':
        if not torch.backends.cuda.is_built():
            raise ValueError(
                f"device '{device}' is not available: this PyTorch build "
                f'({torch.__version__}) has no CUDA support; use device=cpu'
            )
        count = torch.cuda.device_count()
        if count == 0:
            raise ValueError(
                f"device '{device}' is not available: no CUDA device found "
                '(torch.cuda.is_available() is False); use device=cpu'
            )
        if dev.index is not None and dev.index >= count:
            raise ValueError(
                f"device '{device}' is not available: this machine has {count} CUDA device(s)"
            )
    elif dev.type == 'mps' and not torch.backends.mps.is_available():
        raise ValueError(f"device '{device}' is not available on this machine; use device=cpu")
    elif dev.type not in ('cpu', 'cuda', 'mps', 'meta'):
        backend = getattr(torch, dev.type, None)
        if backend is None or not backend.is_available():
            raise ValueError(f"device '{device}' is not available on this machine; use device=cpu")


#: A bare word inside a ``--set`` list (not part of a number or a quoted string).
_BARE_WORD = re.compile(r"""(?<![\w.'"@-])([A-Za-z_][\w@.-]*)(?![\w'"])""")
_WORD_LITERALS = {'true': 'True', 'false': 'False', 'none': 'None', 'null': 'None'}


def parse_value(text: str) -> Any:
    r"""Parses a ``--set`` value: Python/JSON literals (numbers, booleans,
    lists, strings in quotes); in a list, bare words are strings
    (``[text]``, ``[[text],[audio,text]]``, ``[recall@10, ndcg@20]``);
    anything else is kept as a plain string."""
    lowered = text.strip()
    if lowered in ('true', 'false'):
        return lowered == 'true'
    if lowered in ('none', 'null'):
        return None
    try:
        return ast.literal_eval(lowered)
    except (ValueError, SyntaxError):
        pass
    if lowered.startswith('[') and lowered.endswith(']'):
        quoted = _BARE_WORD.sub(
            lambda m: _WORD_LITERALS.get(m.group(1).lower(), repr(m.group(1))), lowered
        )
        try:
            return ast.literal_eval(quoted)
        except (ValueError, SyntaxError):
            pass
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
    data: DataConfig = field(default_factory=DataConfig)

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
    model_options = _model_options(model_cls)
    model_keys = set(model_options)
    params = inspect.signature(model_cls.__init__).parameters
    signature_defaults = {k: params[k].default for k in model_options}
    data_keys = DATA_FIELDS if getattr(model_cls, 'multimodal', False) else frozenset()
    unknown = sorted(set(options) - TRAIN_FIELDS - data_keys - model_keys)
    if unknown:
        data_text = f'; data options: {sorted(data_keys)}' if data_keys else ''
        raise KeyError(
            f'Unknown option(s) {unknown} for model {model_cls.__name__}; '
            f'training options: {sorted(TRAIN_FIELDS)}; model options: '
            f'{sorted(model_keys)}{data_text}'
        )
    # `ks`, `modalities` and `num_neighbors` are lists by nature; a grid over
    # them is a list of lists.
    axes = {k: v for k, v in options.items() if is_grid_axis(k, v)}
    for key, values in axes.items():
        if not values:
            raise ValueError(f'{key}=[] is an empty grid axis: give at least one value')
    trials = []
    for values in itertools.product(*axes.values()):
        point = dict(options)
        point.update(zip(axes, values))
        train = TrainConfig(**{k: v for k, v in point.items() if k in TRAIN_FIELDS})
        data = DataConfig(**{k: v for k, v in point.items() if k in data_keys})
        # Every hyper-parameter is recorded, the signature's defaults included.
        model_kwargs = dict(signature_defaults)
        for k, v in point.items():
            if k not in TRAIN_FIELDS and k not in data_keys:
                model_kwargs[k] = check_value(k, v, model_options[k])
                check_model_option(k, model_kwargs[k])
        trials.append(Trial(model_kwargs, train, dict(zip(axes, values)), data))
    return trials


def is_grid_axis(key: str, value: Any) -> bool:
    r"""Whether an option value is a grid axis: a list, except for the options
    whose values are lists themselves, which are axes as lists of lists."""
    if not isinstance(value, list):
        return False
    if key in ('ks', 'modalities', 'num_neighbors'):
        return bool(value) and all(isinstance(v, list) for v in value)
    return True

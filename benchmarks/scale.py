r"""Benchmark: training, evaluation and the item graph over large synthetic catalogues.

For every catalogue size (by default 100 k items with 1 M interactions and 1 M items
with 10 M interactions, 384-d item features), planted data
(:func:`pyg_mentor.datasets.synthetic.make_planted`) and three ways to train a model
(LightGCN by default) with :class:`pyg_mentor.train.Trainer`:

* **full graph, 1 process**: ``sampler='interactions'``, every step propagates over
  the whole training graph (the baseline of the ratios);
* **sampled, 1 process**: ``sampler='neighbor'`` with ``--num-neighbors``
  (:class:`pyg_mentor.loader.BPRNeighborLoader`);
* **sampled, 2 processes**: the same, on two gloo processes started by
  :func:`pyg_mentor.distributed.launch` (as ``pyg-mentor train --nproc 2``), each with
  half of the threads and half of every global batch.

Every method runs in fresh processes, so that its peak resident set (``VmHWM``) is
its own. What is measured and what is extrapolated:

* **seconds per epoch**: the median seconds of ``--steps`` optimiser steps (after
  ``--warmup`` untimed ones) of ``Trainer._train_epoch`` (batches, subgraphs, loss,
  backward, Adam), times the steps of an epoch,
  :math:`\lceil E_\mathrm{train} / B \rceil`, plus the epoch's set-up (the shuffle
  of the training pairs), measured: **extrapolated from N steps**;
* **evaluation**: :class:`pyg_mentor.evaluation.Evaluator` on the test split
  (``batch_size='auto'``): the model's embeddings once (measured), then
  ``--eval-users`` users ranked over all items (measured) and scaled to all test
  users (a process of two ranks half of them): **extrapolated**;
* **item-graph build**: :class:`pyg_mentor.transforms.ModalityKNNGraph` (top-10 cosine
  FAISS graph of the features) measured with the exact method up to ``--exact-max``
  items; above, the exact build is **estimated** (``IndexFlatIP`` over all items,
  ``--knn-queries`` sampled queries, scaled to all items) and the approximate one
  (``method='ivf'``, ``--nprobe``, ``--train-size``) measured; the dense
  :math:`I \times I` matrix of the released code is reported with the memory it
  needs, never run. The graph does not depend on the training method.
* **peak RSS**: ``VmHWM`` of each process at its end (two processes: the sum); every
  method has a memory estimate too (parameters with gradients and Adam's moments,
  layer outputs, the graph), and a method whose estimate exceeds the available
  memory is reported with it instead of run.

**The generator at scale.** :func:`~pyg_mentor.datasets.synthetic.make_planted` scores
every user against every item, :math:`O(U I)`: with 1 M items and 500 k users that is
5e11 scores, hours on two cores. The catalogue is therefore generated in independent
blocks of about ``--block-items`` items (one :func:`make_planted` call per block,
seed + block, ids offset), so the cost is :math:`O(U I / \text{blocks})`; each user's
items lie in its block (block-diagonal interactions). Full-graph costs depend on the
counts only; a sampled subgraph may overlap more within a block than on real data.
The data are cached in ``--cache`` (generation seconds kept beside them).

    python benchmarks/scale.py                       # 100 k and 1 M items (~30 min)
    python benchmarks/scale.py --sizes 100000:1000000
    python benchmarks/scale.py --quick               # tiny catalogue (smoke test)

Writes JSON to ``runs/benchmarks/scale.json`` and markdown beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

if not __package__:  # `python benchmarks/scale.py`: the checkout's package
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import numpy as np
import torch
from torch_geometric.data import HeteroData

from benchmarks._common import (
    available_bytes,
    check_out,
    default_out,
    fmt_bytes,
    machine_line,
    out_help,
    save_result,
    status_bytes,
)
from pyg_mentor.datasets.mmrec import build_hetero_data
from pyg_mentor.datasets.synthetic import make_planted
from pyg_mentor.typing import ITEM, RATES, USER, feature_key, label_key, modalities

SCRIPT = Path(__file__).resolve()
#: The training methods: (name, processes, sampled).
METHODS = (
    ('full graph, 1 process', 1, False),
    ('sampled, 1 process', 1, True),
    ('sampled, 2 processes', 2, True),
)
#: The modality of the planted features (e.g. a sentence-embedding of the text).
MODALITY = 'text'
#: Neighbours per item of the item graph (MENTOR's ``knn_k``).
KNN_K = 10


# Data #######################################################################


def split_evenly(total: int, parts: int) -> list[int]:
    r""":obj:`parts` integers that differ by at most one and sum to :obj:`total`."""
    return [total // parts + (i < total % parts) for i in range(parts)]


def make_catalogue(
    num_items: int,
    num_interactions: int,
    dim: int,
    *,
    avg_interactions: float = 20.0,
    block_items: int = 10_000,
    seed: int = 0,
) -> HeteroData:
    r"""A planted catalogue of :obj:`num_items` items and exactly
    :obj:`num_interactions` interactions, made of :math:`B =
    \mathrm{round}(I / \texttt{block\_items})` independent :func:`make_planted`
    blocks (block :math:`b`: :math:`I_b` items, :math:`E_b = E I_b / I` interactions
    rounded to sum to :math:`E`, :math:`U_b = \mathrm{round}(E_b /
    \texttt{avg\_interactions})` users, seed :math:`\texttt{seed} + b`), with the
    users and items of block :math:`b` numbered after those of blocks :math:`< b`.

    Returns:
        :class:`~torch_geometric.data.HeteroData` in the layout of
        :mod:`pyg_mentor.typing` with features :obj:`data['item'].x_text` of shape
        :obj:`[num_items, dim]`.
    """
    blocks = max(1, round(num_items / block_items))
    items = split_evenly(num_items, blocks)
    bounds = np.round(np.cumsum([0, *items]) * num_interactions / num_items).astype(int)
    splits: dict[str, list[torch.Tensor]] = {'train': [], 'valid': [], 'test': []}
    features, num_users, offset = [], 0, 0
    for b, (n_items, n_pairs) in enumerate(zip(items, np.diff(bounds).tolist())):
        n_users = max(1, round(n_pairs / avg_interactions))
        part = make_planted(
            n_users, n_items, n_pairs / n_users, modalities={MODALITY: dim}, seed=seed + b
        )
        shift = torch.tensor([[num_users], [offset]])
        store = part[RATES]
        splits['train'].append(store.edge_index + shift)
        for split in ('valid', 'test'):
            splits[split].append(store[label_key(split)] + shift)
        features.append(part[ITEM][feature_key(MODALITY)])
        num_users, offset = num_users + n_users, offset + n_items
    edges = {split: torch.cat(parts, dim=1) for split, parts in splits.items()}
    x = torch.cat(features)
    return build_hetero_data(
        num_users, num_items, edges['train'], edges['valid'], edges['test'], {MODALITY: x}
    )


def cached_catalogue(args: argparse.Namespace, num_items: int, num_interactions: int) -> Path:
    r"""The file of the catalogue (generated and saved on the first call) with its
    generation seconds in ``<file>.json``."""
    name = (
        f'planted_{num_items}_{num_interactions}_d{args.dim}_avg{args.avg_interactions:g}'
        f'_b{args.block_items}_s{args.seed}.pt'
    )
    path = Path(args.cache) / name
    if not path.exists():
        start = time.perf_counter()
        data = make_catalogue(
            num_items,
            num_interactions,
            args.dim,
            avg_interactions=args.avg_interactions,
            block_items=args.block_items,
            seed=args.seed,
        )
        seconds = time.perf_counter() - start
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(data, path.with_suffix('.tmp'))
        path.with_suffix('.tmp').rename(path)
        info = {
            'generation_seconds': seconds,
            'blocks': max(1, round(num_items / args.block_items)),
            'num_users': data[USER].num_nodes,
            'num_train': data[RATES].num_edges,
            'num_test': data[RATES][label_key('test')].size(1),
        }
        path.with_suffix('.json').write_text(json.dumps(info))
        print(f'{num_items} items: generated in {seconds:.1f} s ({path})', flush=True)
    return path


def load(path: str | Path) -> HeteroData:
    r"""A saved catalogue, memory-mapped: only what is touched becomes resident."""
    return torch.load(path, mmap=True, weights_only=False)


# Memory estimates ############################################################


def train_bytes(
    num_users: int,
    num_items: int,
    num_train: int,
    num_labels: int,
    dim: int,
    layers: int,
    sampled: bool,
    batch_size: int,
    num_neighbors: Sequence[int],
) -> int:
    r"""A rough estimate of one process's memory for a LightGCN-like model:

    .. math::
        4 \cdot 4 N d + 2 \cdot 4 N' d (L + 1) + 16 \cdot 2 E + 28 \cdot 2 E'
        + 16 E_\mathrm{labels}

    with :math:`N = U + I` (parameters, gradients and Adam's two moments, float32),
    :math:`N'` the nodes a step propagates over (all, or at most the batch's
    :math:`3B` seeds times :math:`\prod_l (1 + f_l)` with :math:`f_l` sampled neighbours
    per layer), their layer outputs kept for backward and their gradients, the
    training pairs stored in both directions (int64), the normalised adjacency of
    the :math:`E'` edges a step uses in both directions (int64 indices, float32
    weights, a transposed copy) and the valid/test labels (int64 pairs). The Python
    and torch runtime (a few hundred MB) is not included."""
    nodes, edges = num_users + num_items, num_train
    if sampled and -1 not in num_neighbors:  # -1: all neighbours, the whole graph
        fan = math.prod(1 + f for f in num_neighbors)
        nodes = min(nodes, 3 * batch_size * fan)
        edges = min(num_train, nodes * max(num_neighbors))
    params = 4 * 4 * (num_users + num_items) * dim
    activations = 2 * 4 * nodes * dim * (layers + 1)
    return params + activations + 16 * 2 * num_train + 28 * 2 * edges + 16 * num_labels


# Workers (fresh processes) ##################################################


def peak_rss() -> int | None:
    try:
        return status_bytes('VmHWM:')
    except (OSError, KeyError):
        return None


@contextlib.contextmanager
def limited_epoch(count: int, stamps: list[float]) -> Iterator[None]:
    r"""Within the block, an epoch of :class:`~pyg_mentor.train.Trainer` stops
    after :obj:`count` batches; :obj:`stamps` receives the time when the epoch's
    batch stream starts and when each batch (then the end) is requested, so that
    consecutive differences are the seconds of one step."""
    import pyg_mentor.train as train_module

    original = train_module.train_batches

    def batches(*args: Any, **kwargs: Any) -> Iterator[torch.Tensor]:
        stamps.append(time.perf_counter())
        for i, batch in enumerate(original(*args, **kwargs)):
            stamps.append(time.perf_counter())
            if i == count:
                return
            yield batch
        stamps.append(time.perf_counter())  # an epoch of at most `count` batches

    train_module.train_batches = batches
    try:
        yield
    finally:
        train_module.train_batches = original


def train_worker(job: dict[str, Any]) -> None:
    r"""One process of a training method: trains ``warmup + steps`` steps,
    evaluates ``eval_users`` users of the test split and writes what it measured
    to ``<job['out']>.rank<r>.json``."""
    from pyg_mentor.config import TrainConfig
    from pyg_mentor.distributed import get_rank, get_world_size, process_group
    from pyg_mentor.nn.models import get_model_spec
    from pyg_mentor.train import Trainer

    torch.set_num_threads(job['threads'])
    with process_group() as group:
        rank, world = get_rank(group), get_world_size(group)
        data = load(job['data'])
        spec = get_model_spec(job['model'])
        if not spec.cls.multimodal:  # never read: not made resident
            for m in modalities(data):
                del data[ITEM][feature_key(m)]
        sampling = (
            {'sampler': 'neighbor', 'num_neighbors': job['num_neighbors']} if job['sampled'] else {}
        )
        config = TrainConfig(
            batch_size=job['batch_size'],
            progress=False,
            tensorboard=False,
            checkpoint=False,
            **{**spec.defaults, **sampling},
        )
        torch.manual_seed(config.seed)
        start = time.perf_counter()
        trainer = Trainer(spec.cls.from_data(data), data, config, process_group=group)
        setup_seconds = time.perf_counter() - start
        stamps: list[float] = []
        with limited_epoch(job['warmup'] + job['steps'], stamps):
            trainer._train_epoch(0)
        steps = np.diff(stamps[1:]).tolist()[job['warmup'] :]
        train_peak = peak_rss()  # before the evaluation's score chunks

        evaluator = trainer.evaluators['test']
        trainer.model.eval()
        with torch.no_grad():
            start = time.perf_counter()
            scorer = trainer.model.scorer(trainer.data)
            embed_seconds = time.perf_counter() - start
            shards = world * math.ceil(evaluator.num_eval_users / (world * job['eval_users']))
            lo, hi = evaluator.shard_range(rank, shards)
            start = time.perf_counter()
            evaluator.metric_sums(scorer, rank, shards)
            rank_seconds = time.perf_counter() - start
        own_users = evaluator.num_eval_users / world
        result = {
            'rank': rank,
            'world_size': world,
            'threads': torch.get_num_threads(),
            'setup_seconds': setup_seconds,
            'epoch_start_seconds': stamps[1] - stamps[0],
            'step_seconds': steps,
            'steps_per_epoch': trainer.num_batches,
            'embed_seconds': embed_seconds,
            'ranked_users': hi - lo,
            'rank_seconds': rank_seconds,
            'eval_users': evaluator.num_eval_users,
            'eval_seconds': embed_seconds + rank_seconds * own_users / (hi - lo),
            'train_peak_rss_bytes': train_peak,
            'peak_rss_bytes': peak_rss(),
        }
    Path(f'{job["out"]}.rank{rank}.json').write_text(json.dumps(result))


def knn_worker(job: dict[str, Any]) -> None:
    r"""One item-graph build (``job['method']``: ``'exact'``, ``'ivf'``, or
    ``'exact-estimate'``) in a process of its own; writes what it measured to
    ``<job['out']>.rank0.json``."""
    import faiss

    from pyg_mentor.transforms import ModalityKNNGraph

    torch.set_num_threads(job['threads'])
    faiss.omp_set_num_threads(job['threads'])
    x = load(job['data'])[ITEM][feature_key(MODALITY)].clone()
    num_items = x.size(0)
    result: dict[str, Any] = {}
    if job['method'] == 'exact-estimate':
        # As knn_item_graph(method='exact'): L2-normalised rows in IndexFlatIP,
        # every item a query; here a sample of the queries, scaled to all items.
        start = time.perf_counter()
        feats = torch.nn.functional.normalize(x, dim=1).numpy()
        index = faiss.IndexFlatIP(feats.shape[1])
        index.add(feats)
        add_seconds = time.perf_counter() - start
        queries = np.random.default_rng(0).choice(num_items, job['queries'], replace=False)
        start = time.perf_counter()
        index.search(feats[queries], KNN_K)
        search_seconds = time.perf_counter() - start
        result.update(
            seconds=add_seconds + search_seconds * num_items / job['queries'],
            queries=job['queries'],
            search_seconds=search_seconds,
            add_seconds=add_seconds,
        )
    else:
        data = HeteroData()
        data[ITEM].num_nodes = num_items
        data[ITEM][feature_key(MODALITY)] = x
        options = (
            {'nprobe': job['nprobe'], 'train_size': job['train_size']}
            if job['method'] == 'ivf'
            else {}
        )
        transform = ModalityKNNGraph(KNN_K, [MODALITY], method=job['method'], **options)
        start = time.perf_counter()
        transform(data)
        result.update(seconds=time.perf_counter() - start, transform=repr(transform))
    result['peak_rss_bytes'] = peak_rss()
    Path(f'{job["out"]}.rank0.json').write_text(json.dumps(result))


def run_job(job: dict[str, Any], nproc: int, timeout: float) -> list[dict[str, Any]] | str:
    r"""Runs a worker in :obj:`nproc` fresh processes
    (:func:`~pyg_mentor.distributed.launch`); their results, or why there are none."""
    from pyg_mentor.distributed import launch

    try:
        code = launch(
            [str(SCRIPT), '--worker', json.dumps(job)], nproc, module=None, timeout=timeout
        )
    except TimeoutError:
        return f'stopped after {timeout:.0f} s'
    paths = [Path(f'{job["out"]}.rank{r}.json') for r in range(nproc)]
    if code != 0 or not all(p.exists() for p in paths):
        why = f'killed by signal {-code}' if code < 0 else f'exit status {code}'
        return f'failed ({why}; signal 9: e.g. out of memory)'
    return [json.loads(p.read_text()) for p in paths]


# The benchmark ###############################################################


def run_size(
    args: argparse.Namespace, num_items: int, num_interactions: int, work: Path
) -> dict[str, Any]:
    from pyg_mentor.nn.models import get_model_spec

    path = cached_catalogue(args, num_items, num_interactions)
    info = json.loads(path.with_suffix('.json').read_text())
    data = load(path)
    num_users, num_train = data[USER].num_nodes, data[RATES].num_edges
    num_labels = sum(data[RATES][label_key(s)].size(1) for s in ('valid', 'test'))
    del data
    spec = get_model_spec(args.model)
    options = spec.defaults
    dim, layers = options.get('embedding_dim', 64), options.get('num_layers', 2)
    size = {
        'items': num_items,
        'interactions': num_interactions,
        'users': num_users,
        'train': num_train,
        **info,
    }

    rows = []
    for name, nproc, sampled in METHODS:
        estimate = nproc * train_bytes(
            num_users,
            num_items,
            num_train,
            num_labels,
            dim,
            layers,
            sampled,
            args.batch_size,
            args.num_neighbors,
        )
        row: dict[str, Any] = {
            'items': num_items,
            'method': name,
            'processes': nproc,
            'estimated_bytes': estimate,
        }
        available = available_bytes()
        if available is not None and estimate > available:
            row['not_run'] = f'needs ~{fmt_bytes(estimate)}; {fmt_bytes(available)} available'
        else:
            job = {
                'mode': 'train',
                'data': str(path),
                'out': str(work / f'train_{num_items}_{nproc}_{int(sampled)}'),
                'model': args.model,
                'sampled': sampled,
                'num_neighbors': args.num_neighbors,
                'batch_size': args.batch_size,
                'warmup': args.warmup,
                'steps': args.steps,
                'eval_users': args.eval_users,
                'threads': max(1, args.threads // nproc),
            }
            out = run_job(job, nproc, args.timeout)
            if isinstance(out, str):
                row['not_run'] = f'{out}; estimated {fmt_bytes(estimate)}'
            else:
                first = out[0]
                step = statistics.median(first['step_seconds'])
                peaks = [r['peak_rss_bytes'] for r in out]
                train_peaks = [r['train_peak_rss_bytes'] for r in out]
                row.update(
                    threads_per_process=first['threads'],
                    steps_timed=len(first['step_seconds']),
                    step_seconds=first['step_seconds'],
                    seconds_per_step=step,
                    steps_per_epoch=first['steps_per_epoch'],
                    epoch_start_seconds=first['epoch_start_seconds'],
                    seconds_per_epoch=first['epoch_start_seconds']
                    + step * first['steps_per_epoch'],
                    setup_seconds=max(r['setup_seconds'] for r in out),
                    train_peak_rss_bytes=None if None in train_peaks else sum(train_peaks),
                    peak_rss_bytes=None if None in peaks else sum(peaks),
                    eval_users=first['eval_users'],
                    ranked_users=sum(r['ranked_users'] for r in out),
                    embed_seconds=first['embed_seconds'],
                    eval_seconds=max(r['eval_seconds'] for r in out),
                )
        rows.append(row)
        print(f'{num_items} items, {name}: {summary_line(row)}', flush=True)

    base = rows[0]
    for row in rows:
        for key in ('seconds_per_epoch', 'train_peak_rss_bytes', 'eval_seconds'):
            ok = row.get(key) is not None and base.get(key) is not None
            row[f'{key}_ratio'] = row[key] / base[key] if ok else None
    return {'size': size, 'rows': rows, 'item_graph': item_graphs(args, path, num_items, work)}


def item_graphs(
    args: argparse.Namespace, path: Path, num_items: int, work: Path
) -> list[dict[str, Any]]:
    r"""The item-graph builds of one catalogue (see the module documentation)."""
    dense = num_items**2 * 4
    available = available_bytes()
    rows: list[dict[str, Any]] = [
        {
            'items': num_items,
            'method': 'dense I x I (release)',
            'how': 'not run',
            'estimated_bytes': dense,
            'not_run': f'the float32 I x I matrix needs {fmt_bytes(dense)}; '
            f'{fmt_bytes(available)} available',
        }
    ]
    if num_items <= args.exact_max:
        methods = [('exact', 'measured')]
    else:
        methods = [('exact-estimate', 'estimated'), ('ivf', 'measured')]
    for method, how in methods:
        job = {
            'mode': 'knn',
            'data': str(path),
            'out': str(work / f'knn_{num_items}_{method}'),
            'method': method,
            'queries': min(args.knn_queries, num_items),
            'nprobe': args.nprobe,
            'train_size': args.train_size,
            'threads': args.threads,
        }
        out = run_job(job, 1, args.timeout)
        label = {
            'exact': 'faiss exact',
            'exact-estimate': 'faiss exact',
            'ivf': f'faiss IVF nprobe={args.nprobe}',
        }[method]
        row: dict[str, Any] = {'items': num_items, 'method': label, 'how': how}
        if isinstance(out, str):
            row['not_run'] = out
        else:
            row.update(out[0], seconds=out[0]['seconds'])
        rows.append(row)
        print(f'{num_items} items, item graph {label}: {summary_line(row)}', flush=True)
    return rows


def summary_line(row: dict[str, Any]) -> str:
    if 'not_run' in row:
        return f'not run: {row["not_run"]}'
    if 'seconds_per_epoch' in row:
        return (
            f'{row["seconds_per_step"]:.3f} s/step, {row["seconds_per_epoch"]:.0f} s/epoch, '
            f'peak {fmt_bytes(row["peak_rss_bytes"])}, eval {row["eval_seconds"]:.1f} s'
        )
    return f'{row["seconds"]:.1f} s ({row["how"]}), peak {fmt_bytes(row["peak_rss_bytes"])}'


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return '-'
    if s >= 5400:
        return f'{s / 3600:.1f} h'
    return f'{s / 60:.1f} min' if s >= 120 else f'{s:.2f} s'


def fmt_ratio(x: float | None) -> str:
    return '-' if x is None else f'{x:.2f}x'


def markdown(result: dict[str, Any]) -> str:
    lines = [
        '# Scale: training, evaluation and the item graph over large planted catalogues',
        '',
        machine_line(result),
        '',
        f'Model {result["model"]} (defaults), batch {result["batch_size"]}, sampled '
        f'neighbours {result["num_neighbors"]}; {result["threads"]} threads in all (two '
        f'processes: {max(1, result["threads"] // 2)} each); features d = {result["dim"]}; '
        f'seconds per epoch **extrapolated from {result["steps"]} steps** (median, after '
        f'{result["warmup"]} untimed) x steps per epoch + the epoch set-up; evaluation '
        f'**extrapolated from {result["eval_users"]} users per process** (+ the '
        'embeddings, measured); ratios vs full graph, 1 process, same catalogue.',
        '',
        '| items | users | train pairs | generated in | blocks |',
        '|---:|---:|---:|---:|---:|',
    ]
    for size in result['sizes']:
        s = size['size']
        lines.append(
            f'| {s["items"]:,} | {s["users"]:,} | {s["train"]:,} | '
            f'{fmt_seconds(s["generation_seconds"])} | {s["blocks"]} |'
        )
    lines += [
        '',
        '| items | method | s/step | steps/epoch | s/epoch (extrap.) | vs full | peak RSS '
        'training | vs full | est. memory | evaluation (extrap.) | vs full | peak RSS with '
        'evaluation |',
        '|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ]
    for size in result['sizes']:
        for row in size['rows']:
            head = f'| {row["items"]:,} | {row["method"]} '
            if 'not_run' in row:
                lines.append(
                    head + f'| not run: {row["not_run"]} | | | | | | '
                    f'{fmt_bytes(row["estimated_bytes"])} | | | |'
                )
                continue
            lines.append(
                head + f'| {row["seconds_per_step"]:.3f} | {row["steps_per_epoch"]:,} '
                f'| {fmt_seconds(row["seconds_per_epoch"])} '
                f'| {fmt_ratio(row["seconds_per_epoch_ratio"])} '
                f'| {fmt_bytes(row["train_peak_rss_bytes"])} '
                f'| {fmt_ratio(row["train_peak_rss_bytes_ratio"])} '
                f'| {fmt_bytes(row["estimated_bytes"])} | {fmt_seconds(row["eval_seconds"])} '
                f'| {fmt_ratio(row["eval_seconds_ratio"])} | {fmt_bytes(row["peak_rss_bytes"])} |'
            )
    lines += [
        '',
        f'Item graph (top-{KNN_K} cosine over the features; the same for every training '
        'method, which LightGCN does not use):',
        '',
        '| items | method | build time | how | peak RSS | notes |',
        '|---:|---|---:|---|---:|---|',
    ]
    for size in result['sizes']:
        for row in size['item_graph']:
            if 'not_run' in row:
                lines.append(
                    f'| {row["items"]:,} | {row["method"]} | - | {row["how"]} '
                    f'| {fmt_bytes(row.get("estimated_bytes"))} needed | {row["not_run"]} |'
                )
                continue
            note = (
                f'{row["queries"]:,} sampled queries searched in {row["search_seconds"]:.1f} s, '
                f'index filled in {row["add_seconds"]:.1f} s, scaled to all items'
                if row['how'] == 'estimated'
                else row['transform']
            )
            lines.append(
                f'| {row["items"]:,} | {row["method"]} | {fmt_seconds(row["seconds"])} '
                f'| {row["how"]} | {fmt_bytes(row["peak_rss_bytes"])} | {note} |'
            )
    lines += [
        '',
        "peak RSS: VmHWM of the method's process after the timed steps (training) and at "
        "its end (with evaluation: its score chunks, `batch_size='auto'`, take up to a "
        'quarter of the available memory); two processes: the sum of both, an upper bound '
        'of their joint peak; the memory-mapped data count as they are touched; '
        'est. memory: the estimate of `train_bytes` (two processes: twice), '
        'which decides whether a method runs. The catalogue is generated in blocks of '
        f'~{result["block_items"]:,} items (one make_planted call each; the full '
        "generator is O(users x items)), so each user's items lie in one block.",
        '',
        f'Total run time: {fmt_seconds(result["wall_seconds"])}.',
        '',
        f'Command: `{result["command"]}`',
    ]
    return '\n'.join(lines) + '\n'


def parse_sizes(text: str) -> list[tuple[int, int]]:
    r"""``'100000:1000000,1000000:10000000'`` -> ``[(items, interactions), ...]``."""
    sizes = []
    for part in text.split(','):
        items, _, interactions = part.partition(':')
        sizes.append((int(items), int(interactions) if interactions else 10 * int(items)))
    return sizes


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--sizes',
        help='items:interactions pairs (default: 100000:1000000,1000000:10000000; '
        'quick: 1000:10000,2000:20000)',
    )
    parser.add_argument('--dim', type=int, default=384, help='feature dimension')
    parser.add_argument('--avg-interactions', type=float, default=20.0, help='per user')
    parser.add_argument('--block-items', type=int, default=10_000, help='items per block')
    parser.add_argument('--model', default='lightgcn')
    parser.add_argument('--batch-size', type=int, default=2048)
    parser.add_argument(
        '--num-neighbors', default='10,10', help='neighbours per user-item layer (default: 10,10)'
    )
    parser.add_argument('--warmup', type=int, default=3, help='untimed steps')
    parser.add_argument('--steps', type=int, default=20, help='timed steps')
    parser.add_argument('--eval-users', type=int, default=1000, help='ranked users per process')
    parser.add_argument('--exact-max', type=int, default=200_000, help='largest exact build')
    parser.add_argument('--knn-queries', type=int, default=5000, help='exact-estimate queries')
    parser.add_argument('--nprobe', type=int, default=8)
    parser.add_argument('--train-size', type=int, default=200_000, help='IVF k-means sample')
    parser.add_argument('--threads', type=int, default=os.cpu_count() or 1, help='in all')
    parser.add_argument('--timeout', type=float, default=1800, help='seconds per method')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--cache', default=str(Path('runs') / 'benchmarks' / 'scale_data'), help='data cache'
    )
    parser.add_argument('--quick', action='store_true', help='tiny catalogues (smoke test)')
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    parser.add_argument('--out', default=str(default_out('scale')), help=out_help('scale'))
    args = parser.parse_args(argv)
    if args.worker:
        job = json.loads(args.worker)
        (train_worker if job['mode'] == 'train' else knn_worker)(job)
        return job
    out = check_out(args.out, args.quick)
    args.num_neighbors = [int(n) for n in args.num_neighbors.split(',')]
    if args.quick:
        args.sizes = args.sizes or '1000:10000,2000:20000'
        args.dim, args.block_items = 16, 1000
        args.warmup, args.steps, args.eval_users, args.batch_size = 1, 2, 50, 1024
        args.exact_max, args.knn_queries, args.train_size = 1000, 200, None
    args.sizes = args.sizes or '100000:1000000,1000000:10000000'
    from pyg_mentor.nn.models import get_model_spec

    if get_model_spec(args.model).cls.needs_item_graph:
        parser.error(f'{args.model} needs the item graph in training; use a model without')
    start = time.perf_counter()
    sizes = []
    with tempfile.TemporaryDirectory() as work:
        if args.quick:  # nothing left behind
            args.cache = str(Path(work) / 'data')
        for num_items, num_interactions in parse_sizes(args.sizes):
            sizes.append(run_size(args, num_items, num_interactions, Path(work)))
    fields = {k: v for k, v in vars(args).items() if k not in ('worker', 'out', 'sizes')}
    result = save_result(
        out,
        'scale',
        **fields,
        wall_seconds=time.perf_counter() - start,
        command=' '.join(['python benchmarks/scale.py', *(sys.argv[1:] if argv is None else argv)]),
        sizes=sizes,
    )
    text = markdown(result)
    Path(out).with_suffix('.md').write_text(text)
    print(text)
    return result


if __name__ == '__main__':
    main()

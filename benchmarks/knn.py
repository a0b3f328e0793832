"""Benchmark: building the top-k cosine item graph with FAISS against the dense release.

Times :func:`pyg_mentor.utils.knn_item_graph` with ``method='exact'`` (FAISS
``IndexFlatIP``) and ``method='ivf'`` (``IndexIVFFlat``, default ``nlist``, a few
``nprobe`` values) against the baseline of the released research code: rows
L2-normalised, the whole I x I similarity matrix ``x @ x.T`` materialised, then
``torch.topk``. The baseline is marked infeasible, with the memory it would need,
where the I x I float32 matrix does not fit in the available RAM (or in the
``--max-cell-gib`` cap). All methods return the same graph: k neighbours per item,
the item itself first, weights 1/k.

    python benchmarks/knn.py            # 7,050 (Baby) and 100k items, d=384, k=10
    python benchmarks/knn.py --full     # + 1M items
    python benchmarks/knn.py --quick    # 2,000 and 20k items, 1 run (smoke test)

Features are random with cluster structure, like text-encoder features: 64
"topics", 2,048 centres around them (cosine ~0.7 to their topic), clusters of
lognormal sizes, and every item its centre plus isotropic noise of a per-cluster
scale drawn from ``--noise`` (in units of the centre's norm), L2-normalised. They
are generated in chunks (float32) and are the same for any chunk size.

Every timed run happens in a fresh process forked from a server process that has
imported torch, FAISS and pyg_mentor but computed nothing, so that one cell's
allocations do not pollute the next and no start-up cost is timed. Runs are
interleaved between the methods of a size, so that load from other processes hits
all alike; the table gives the median, and a cell gets fewer runs than
``--repeat`` / ``--repeat-large`` when its runs would exceed ``--cell-budget-s``.
Peak extra memory is the growth of the process's peak RSS (``VmHWM`` reset through
``/proc/self/clear_refs``) during the call, over the features already loaded.

Recall@10 is measured against FAISS exact search with the item itself **excluded**:
each method lists the item first and then k - 1 = 9 other items; recall is the
fraction of the 9 exact neighbours that the method lists too. (The exact row is
the reference, so its recall is 1 by definition; the dense row shows that the
baseline finds the same neighbours.)

Above ``--sample-above`` items (the 1M cell of ``--full``), a full exact search
would take about an hour, so exact search runs for ``--sample-queries`` random
items only: they are the recall reference, and the exact build time is
extrapolated from them (marked *est.*). By default FAISS trains IVF k-means on up
to 256 items per list, i.e. all of 1M items for the 4,000 default lists, which takes
minutes; these cells use ``knn_item_graph(..., train_size=--train-size)``, which
trains k-means on a seeded sample of about that many items
(``cp.max_points_per_centroid`` = ceil(train_size / nlist), at least 39). To pick
``nprobe``, one such index is trained and filled, the sample queries are searched
with every ``nprobe`` (build time estimated as train + fill + search time scaled to
all items; the same FAISS calls as ``knn_item_graph``), and the smallest ``nprobe``
whose recall reaches ``--target-recall`` is then built in full and measured.

Prints a markdown table and writes JSON to ``runs/benchmarks/knn.json`` and
the markdown (command and run time first) beside it (``.md``); ``--out
benchmarks/results/knn.json`` updates the committed one.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if not __package__:  # `python benchmarks/knn.py`: import the checkout's package
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import faiss
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from benchmarks._common import (
    QUICK_TARGETS,
    available_bytes,
    check_out,
    default_out,
    fmt_bytes,
    out_help,
    save_result,
    status_bytes,
)

# With the private helpers knn_item_graph itself uses, so that the nprobe sweep on sample
# queries runs the same FAISS calls as knn_item_graph(train_size=...).
from pyg_mentor.utils.knn import NORMALIZE_EPS, _default_nlist, _self_first, knn_item_graph

BABY_ITEMS = 7050
SIZES = [BABY_ITEMS, 100_000]
FULL_SIZES = [1_000_000]
QUICK_SIZES = [2000, 20_000]
# FAISS' k-means wants at least this many training points per list.
MIN_POINTS_PER_LIST = 39
# Sizes from which --repeat-large applies instead of --repeat.
LARGE = 50_000
WARMUP_ITEMS = 1000


# ----------------------------------------------------------------------------- data


def make_features(
    path: Path, num_items: int, dim: int, centres: int, topics: int,
    noise: tuple[float, float], seed: int, chunk: int = 65536,
) -> None:  # fmt: skip
    """Writes ``[num_items, dim]`` L2-normalised float32 features to a ``.npy`` file,
    chunk by chunk (see the module doc). The mixture depends on ``seed`` only, so
    every size draws from the same clusters."""
    gen = torch.Generator().manual_seed(seed)
    topic = F.normalize(torch.randn(topics, dim, generator=gen), dim=1)
    parent = torch.randint(0, topics, (centres,), generator=gen)
    centre = F.normalize(topic[parent] + torch.randn(centres, dim, generator=gen) / dim**0.5)
    spread = noise[0] + (noise[1] - noise[0]) * torch.rand(centres, generator=gen)
    size_weight = torch.randn(centres, generator=gen).exp()  # lognormal cluster sizes
    out = np.lib.format.open_memmap(path, mode='w+', dtype=np.float32, shape=(num_items, dim))
    for c, start in enumerate(range(0, num_items, chunk)):
        end = min(start + chunk, num_items)
        g = torch.Generator().manual_seed((seed + 1) * 1_000_003 + c)
        label = torch.multinomial(size_weight, end - start, replacement=True, generator=g)
        x = centre[label] + spread[label, None] / dim**0.5 * torch.randn(
            end - start, dim, generator=g
        )
        out[start:end] = F.normalize(x, dim=1).numpy()
    out.flush()
    del out


# ------------------------------------------------------------------------- methods


def dense_release(x: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The released code: normalise, the whole I x I similarity, ``topk`` per row.
    (The release then builds the index lists in a Python loop; that is vectorised
    here, which only helps the baseline.)"""
    num_items = x.size(0)
    x_norm = x.div(torch.norm(x, p=2, dim=-1, keepdim=True))
    sim = torch.mm(x_norm, x_norm.t())  # I x I
    _, knn_ind = torch.topk(sim, k, dim=-1)
    del sim
    edge_index = torch.stack([knn_ind.reshape(-1), torch.arange(num_items).repeat_interleave(k)])
    return edge_index, torch.full((num_items * k,), 1.0 / k)


def normalized_numpy(x: Tensor) -> np.ndarray:
    """As knn_item_graph: float32 rows L2-normalised with FAISS' memory layout."""
    x = F.normalize(x.to(torch.float32), p=2.0, dim=-1, eps=NORMALIZE_EPS)
    return np.ascontiguousarray(x.numpy())


def ivf_index(feats: np.ndarray, train_size: int) -> tuple[faiss.Index, float, float]:
    """knn_item_graph's IVF index (default nlist, spherical k-means), with k-means
    trained on about ``train_size`` items: FAISS' own subsample of
    ``max_points_per_centroid`` (at least 39) items per list. Returns the index
    and the seconds spent training and filling it."""
    num_items, dim = feats.shape
    nlist = _default_nlist(num_items)
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.spherical = True
    index.cp.max_points_per_centroid = train_points_per_list(train_size, nlist)
    start = time.perf_counter()
    index.train(feats)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    index.add(feats)
    return index, train_s, time.perf_counter() - start


def train_points_per_list(train_size: int, nlist: int) -> int:
    return max(MIN_POINTS_PER_LIST, math.ceil(train_size / nlist))


def ivf_search(
    index: faiss.Index,
    feats: np.ndarray,
    ids: np.ndarray,
    k: int,
    nprobe: int,
    batch_size: int = 65536,
) -> Tensor:
    """knn_item_graph's search loop for the items ``ids``: batches, a search over
    all lists for queries whose probed lists hold fewer than k items, self first."""
    index.nprobe = min(nprobe, index.nlist)
    full_params = faiss.SearchParametersIVF()
    full_params.nprobe = index.nlist
    nbrs = torch.empty((len(ids), k), dtype=torch.long)
    for start in range(0, len(ids), batch_size):
        batch = ids[start : start + batch_size]
        query = feats[batch] if len(ids) < len(feats) else feats[start : start + len(batch)]
        _, labels = index.search(query, k)
        short = np.flatnonzero((labels < 0).any(axis=1))
        if short.size > 0:
            _, labels[short] = index.search(query[short], k, params=full_params)
        nbrs[start : start + len(batch)] = _self_first(
            torch.from_numpy(labels), torch.from_numpy(batch), k
        )
    return nbrs


def others(labels: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    """The first k - 1 neighbours of every row that are not the item itself."""
    labels = np.asarray(labels)
    is_self = labels == ids[:, None]
    order = np.argsort(is_self, axis=1, kind='stable')[:, : k - 1]
    return np.take_along_axis(labels, order, axis=1)


def recall(found: np.ndarray, exact: np.ndarray, chunk: int = 65536) -> float:
    """Fraction of the exact neighbours (self excluded) that ``found`` lists too."""
    hits = 0
    for start in range(0, len(exact), chunk):
        f, e = found[start : start + chunk], exact[start : start + chunk]
        hits += int((f[:, :, None] == e[:, None, :]).any(axis=1).sum())
    return hits / exact.size


# ---------------------------------------------------------------- one cell, forked


def _reset_peak() -> int | None:
    """Resets VmHWM to the current RSS; returns that RSS (None if unsupported)."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return status_bytes('VmRSS:')
    except (OSError, KeyError):
        return None


def _graph(cell: dict, x: Tensor) -> tuple[Tensor, Tensor]:
    kind, k = cell['kind'], cell['k']
    if kind == 'dense':
        return dense_release(x, k)
    if kind == 'ivf-sampled-train':
        return knn_item_graph(
            x, k, method='ivf', nprobe=cell['nprobe'], train_size=cell['train_size']
        )
    return knn_item_graph(x, k, method=kind, nprobe=cell.get('nprobe', 16))


def run_cell(feats: np.ndarray, cell: dict) -> dict:
    """One timed run in a fresh process: a small warm-up (threads, buffers), then
    the call with its peak extra memory. Neighbours go to ``cell['save']``."""
    if cell.get('threads'):
        torch.set_num_threads(cell['threads'])
        faiss.omp_set_num_threads(cell['threads'])
    x = torch.from_numpy(feats)
    k = cell['k']
    kind = cell['kind']
    if kind in ('exact-sample', 'ivf-sample'):
        return _run_sampled(feats, cell)
    warm = x[:WARMUP_ITEMS]
    if kind == 'ivf-sampled-train':
        _graph(dict(cell, kind='ivf', nprobe=1), warm)
    else:
        _graph(cell, warm)
    base = _reset_peak()
    start = time.perf_counter()
    edge_index, _ = _graph(cell, x)
    seconds = time.perf_counter() - start
    peak = status_bytes('VmHWM:') - base if base is not None else None
    if cell.get('save'):
        nbrs = edge_index[0].view(-1, k).numpy()
        ids = np.arange(len(nbrs)) if cell.get('rows') is None else np.load(cell['rows'])
        np.save(cell['save'], others(nbrs[ids], ids, k))
    return dict(seconds=seconds, peak_extra_bytes=peak)


def _run_sampled(feats: np.ndarray, cell: dict) -> dict:
    """Exact or IVF (every nprobe) search of the sample queries only, timed by part."""
    k = cell['k']
    ids = np.load(cell['rows'])
    small = np.ascontiguousarray(feats[:WARMUP_ITEMS])
    warm = faiss.IndexFlatIP(feats.shape[1])
    warm.add(small)
    warm.search(small, k)
    del warm, small
    base = _reset_peak()
    parts: dict[str, Any] = {}
    start = time.perf_counter()
    x = normalized_numpy(torch.from_numpy(feats))
    parts['normalize_s'] = time.perf_counter() - start
    if cell['kind'] == 'exact-sample':
        start = time.perf_counter()
        index = faiss.IndexFlatIP(x.shape[1])
        index.add(x)
        parts['add_s'] = time.perf_counter() - start
        start = time.perf_counter()
        _, labels = index.search(x[ids], k)
        parts['search_s'] = time.perf_counter() - start
        np.save(cell['save'], others(labels, ids, k))
    else:
        index, parts['train_s'], parts['add_s'] = ivf_index(x, cell['train_size'])
        parts['nlist'] = index.nlist
        parts['search_s'] = {}
        for nprobe in cell['nprobes']:
            start = time.perf_counter()
            nbrs = ivf_search(index, x, ids, k, nprobe)
            parts['search_s'][str(nprobe)] = time.perf_counter() - start
            np.save(cell['save'].format(nprobe=nprobe), others(nbrs.numpy(), ids, k))
    peak = status_bytes('VmHWM:') - base if base is not None else None
    return dict(parts=parts, peak_extra_bytes=peak)


def serve() -> None:
    """The server: reads JSON requests from stdin, answers one JSON line each.
    ``load`` reads a feature file; ``run`` forks a child that runs one cell. This
    process never computes, so forking it is safe with OpenMP."""
    feats = None
    channel = os.fdopen(os.dup(1), 'w')
    os.dup2(2, 1)  # stray prints must not reach the channel
    for line in sys.stdin:
        msg = json.loads(line)
        if msg['op'] == 'load':
            feats = np.load(msg['path'])
            reply: dict[str, Any] = dict(ok=True)
        else:
            reply = _fork_cell(feats, msg['cell'])
        channel.write(json.dumps(reply) + '\n')
        channel.flush()


def _fork_cell(feats: np.ndarray, cell: dict) -> dict:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_fd)
        try:
            payload = json.dumps(run_cell(feats, cell))
        except BaseException:
            payload = json.dumps(dict(error=traceback.format_exc()))
        with os.fdopen(write_fd, 'w') as f:
            f.write(payload)
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        return dict(error=f'the cell process died (wait status {status}); out of memory?')
    return json.loads(data)


class CellServer:
    """Starts ``knn.py --serve`` in a fresh interpreter and talks to it."""

    def __enter__(self) -> CellServer:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), '--serve'],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)

    def ask(self, **msg: Any) -> dict:
        self.proc.stdin.write(json.dumps(msg) + '\n')
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f'the cell server exited (status {self.proc.poll()})')
        reply = json.loads(line)
        if 'error' in reply:
            raise RuntimeError(f'cell {msg.get("cell")} failed:\n{reply["error"]}')
        return reply


# ------------------------------------------------------------------------- driver


def fmt_seconds(s: float) -> str:
    if s >= 120:
        return f'{s / 60:.1f} min'
    return f'{s:.3g} s' if s >= 0.1 else f'{s * 1e3:.3g} ms'


def run_interleaved(server: CellServer, cells: list[dict], repeat: int, budget_s: float) -> None:
    """Runs every cell up to ``repeat`` times, alternating between cells; a cell
    stops early when one more run would take it past ``budget_s`` in total. The
    first run saves the neighbours."""
    for cell in cells:
        cell['times'], cell['peaks'] = [], []
    for r in range(repeat):
        for cell in cells:
            times = cell['times']
            if r > 0 and sum(times) + statistics.mean(times) > budget_s:
                continue
            spec = {key: v for key, v in cell.items() if key not in ('row', 'times', 'peaks')}
            out = server.ask(op='run', cell=dict(spec, save=cell['save'] if r == 0 else None))
            times.append(out['seconds'])
            cell['peaks'].append(out['peak_extra_bytes'])


def bench_size(
    server: CellServer, num_items: int, args: argparse.Namespace, workdir: Path
) -> list[dict]:
    """All methods on one size; returns the table rows."""
    k, dim = args.k, args.dim
    path = workdir / f'x{num_items}.npy'
    start = time.perf_counter()
    make_features(path, num_items, dim, args.centres, args.topics, tuple(args.noise), args.seed)
    gen_s = time.perf_counter() - start
    server.ask(op='load', path=str(path))
    nlist = _default_nlist(num_items)
    base = dict(items=num_items, dim=dim, k=k, nlist=nlist, features_s=gen_s)
    common: dict[str, Any] = dict(k=k, threads=args.threads)
    sampled = num_items > args.sample_above
    num_queries = num_items
    if sampled:
        rng = np.random.default_rng(args.seed)
        num_queries = min(args.sample_queries, num_items)
        rows_path = workdir / f'q{num_items}.npy'
        np.save(rows_path, np.sort(rng.choice(num_items, num_queries, replace=False)))
        common['rows'] = str(rows_path)
    rows: list[dict] = []
    cells: list[dict] = []

    # Dense baseline of the release, if its I x I matrix fits.
    need = num_items * num_items * 4
    avail = available_bytes()
    dense_row = dict(base, method='dense torch (release)', kind='dense', needs_bytes=need)
    if avail is not None and need > avail:
        dense_row['infeasible'] = (
            f'the I x I float32 matrix needs {fmt_bytes(need)}; {fmt_bytes(avail)} RAM available'
        )
    elif need > args.max_cell_gib * 2**30:
        dense_row['infeasible'] = (
            f'the I x I float32 matrix needs {fmt_bytes(need)}, over '
            f'the {args.max_cell_gib:g} GiB per-cell cap'
        )
    else:
        cells.append(dict(common, kind='dense', row=dense_row))
    rows.append(dense_row)
    if not sampled:
        exact_row = dict(base, method='faiss exact', kind='exact')
        rows.append(exact_row)
        cells.append(dict(common, kind='exact', row=exact_row))
        for nprobe in args.nprobes:
            row = dict(
                base,
                method=f'faiss IVF nprobe={nprobe}',
                kind='ivf',
                nprobe=nprobe,
                effective_nprobe=min(nprobe, nlist),
            )
            rows.append(row)
            cells.append(dict(common, kind='ivf', nprobe=nprobe, row=row))
    for i, cell in enumerate(cells):
        cell['save'] = str(workdir / f'n{num_items}_{i}.npy')
    repeat = args.repeat if num_items < LARGE else args.repeat_large
    run_interleaved(server, cells, repeat, args.cell_budget_s)

    if sampled:
        exact_path = workdir / f'e{num_items}.npy'
        rows += _bench_sampled(
            server, num_items, num_queries, args, workdir, base, common, exact_path
        )
    else:
        exact_path = next(c['save'] for c in cells if c['kind'] == 'exact')
    exact = np.load(exact_path)
    for cell in cells:
        cell['row'].update(
            times_s=cell['times'], runs=len(cell['times']),
            median_s=statistics.median(cell['times']), peak_extra_bytes=_max(cell['peaks']),
            estimated=False, recall=recall(np.load(cell['save']), exact),
            recall_queries=num_queries,
        )  # fmt: skip

    dense_s = dense_row.get('median_s')
    for row in rows:
        if 'median_s' in row:
            row['speedup_vs_dense'] = dense_s / row['median_s'] if dense_s else None
    return rows


def _max(values: list[int | None]) -> int | None:
    values = [v for v in values if v is not None]
    return max(values) if values else None


def _bench_sampled(
    server: CellServer,
    num_items: int,
    num_queries: int,
    args: argparse.Namespace,
    workdir: Path,
    base: dict,
    common: dict,
    exact_path: Path,
) -> list[dict]:
    """Exact search of the query sample (the recall reference, extrapolated time), IVF
    trained on a sample and searched for the sample queries with every nprobe, then
    the full IVF build with the smallest nprobe that reaches the target recall."""
    scale = num_items / num_queries
    rows: list[dict] = []
    out = server.ask(op='run', cell=dict(common, kind='exact-sample', save=str(exact_path)))
    p = out['parts']
    est = p['normalize_s'] + p['add_s'] + p['search_s'] * scale
    rows.append(dict(
        base, method='faiss exact', kind='exact', estimated=True, median_s=est, times_s=[est],
        runs=0, parts=p, peak_extra_bytes=out['peak_extra_bytes'], recall=1.0,
        recall_queries=num_queries,
        note=f'est.: {num_queries:,} queries searched in {fmt_seconds(p["search_s"])}, '
             f'scaled to all items; memory of that run',
    ))  # fmt: skip
    exact = np.load(exact_path)

    nlist = base['nlist']
    train = min(num_items, train_points_per_list(args.train_size, nlist) * nlist)
    ivf_path = str(workdir / f'i{num_items}_{{nprobe}}.npy')
    out = server.ask(
        op='run',
        cell=dict(
            common,
            kind='ivf-sample',
            nprobes=args.nprobes,
            train_size=args.train_size,
            save=ivf_path,
        ),
    )
    p = out['parts']
    build_s = p['normalize_s'] + p['train_s'] + p['add_s']
    label = f'knn_item_graph(train_size={args.train_size:,}): k-means on {train:,} items'
    ivf_rows = []
    for nprobe in args.nprobes:
        search_s = p['search_s'][str(nprobe)]
        est = build_s + search_s * scale
        ivf_rows.append(dict(
            base, method=f'faiss IVF nprobe={nprobe}', kind='ivf-sampled-train', nprobe=nprobe,
            effective_nprobe=min(nprobe, p['nlist']), train_size=train, estimated=True,
            median_s=est, times_s=[est], runs=0, parts=dict(p, search_s=search_s),
            peak_extra_bytes=out['peak_extra_bytes'], recall_queries=num_queries,
            recall=recall(np.load(ivf_path.format(nprobe=nprobe)), exact),
            note=f'est. ({label}): train + fill {fmt_seconds(build_s)}, {num_queries:,} '
                 f'queries in {fmt_seconds(search_s)} scaled to all items; memory of that run',
        ))  # fmt: skip
    good = [r for r in ivf_rows if r['recall'] >= args.target_recall]
    chosen = min(good, key=lambda r: r['nprobe']) if good else None
    if chosen is not None and chosen['median_s'] <= args.max_full_cell_s:
        cell = dict(
            common,
            kind='ivf-sampled-train',
            nprobe=chosen['nprobe'],
            train_size=args.train_size,
            save=str(workdir / f'f{num_items}.npy'),
        )
        run_interleaved(server, [cell], 1, args.cell_budget_s)
        chosen.update(
            estimated=False, estimate_s=chosen['median_s'], times_s=cell['times'], runs=1,
            median_s=cell['times'][0], peak_extra_bytes=cell['peaks'][0],
            recall=recall(np.load(cell['save']), exact),
            note=f'measured ({label}): the full build; recall on the {num_queries:,} sample '
                 f'queries; estimate was {fmt_seconds(chosen["median_s"])}',
        )  # fmt: skip
    elif chosen is not None:
        chosen['note'] += (
            f'; full build not run (estimate over --max-full-cell-s {args.max_full_cell_s:g})'
        )
    return rows + ivf_rows


def markdown(rows: list[dict], header: str) -> list[str]:
    lines = [
        header, '',
        '| items | method | build time | runs | speed-up vs dense | peak extra memory '
        '| recall@10 (self excl.) | notes |',
        '|---:|---|---:|---:|---:|---:|---:|---|',
    ]  # fmt: skip
    for row in rows:
        if 'infeasible' in row:
            lines.append(
                f'| {row["items"]:,} | {row["method"]} | infeasible | - | - | '
                f'{fmt_bytes(row["needs_bytes"])} needed | - | {row["infeasible"]} |'
            )
            continue
        time_s = fmt_seconds(row['median_s'])
        runs = str(row['runs'])
        if row['estimated']:
            time_s, runs = f'~{time_s} (est.)', 'est.'
        speed = f'{row["speedup_vs_dense"]:.1f}x' if row.get('speedup_vs_dense') else '-'
        rec = f'{row["recall"]:.4f}'
        if row['recall_queries'] < row['items']:
            rec += f' ({row["recall_queries"]:,} q.)'
        note = row.get('note', '')
        if row.get('effective_nprobe') is not None and row['effective_nprobe'] < row['nprobe']:
            note = f'all {row["effective_nprobe"]} lists searched; {note}'.rstrip('; ')
        lines.append(
            f'| {row["items"]:,} | {row["method"]} | {time_s} | {runs} | {speed} | '
            f'{fmt_bytes(row["peak_extra_bytes"])} | {rec} | {note} |'
        )
    return lines


def summary(rows: list[dict], target: float) -> list[str]:
    lines = []
    for items in dict.fromkeys(r['items'] for r in rows):
        ivf = [r for r in rows if r['items'] == items and r['kind'].startswith('ivf')]
        good = [r for r in ivf if r['recall'] >= target]
        nlist = ivf[0]['nlist'] if ivf else None
        if good:
            best = min(good, key=lambda r: r['nprobe'])
            how = 'estimated' if best['estimated'] else 'measured'
            lines.append(
                f'- {items:,} items (nlist={nlist}): nprobe={best["nprobe"]} is the '
                f'smallest tried with recall >= {target} ({best["recall"]:.4f}), build '
                f'{fmt_seconds(best["median_s"])} ({how})'
            )
        elif ivf:
            lines.append(
                f'- {items:,} items (nlist={nlist}): no nprobe tried reaches recall >= {target}'
            )
    return lines


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--sizes',
        type=int,
        nargs='+',
        default=None,
        help=f'item counts (default: {SIZES}; --full adds {FULL_SIZES})',
    )
    parser.add_argument('--dim', type=int, default=384)
    parser.add_argument('--k', type=int, default=10)
    parser.add_argument('--nprobes', type=int, nargs='+', default=[8, 32, 128])
    parser.add_argument('--centres', type=int, default=2048)
    parser.add_argument('--topics', type=int, default=64)
    parser.add_argument(
        '--noise',
        type=float,
        nargs=2,
        default=[1.0, 2.0],
        metavar=('MIN', 'MAX'),
        help='range of the per-cluster noise scale',
    )
    parser.add_argument(
        '--repeat', type=int, default=5, help=f'runs per cell below {LARGE:,} items'
    )
    parser.add_argument(
        '--repeat-large', type=int, default=3, help=f'runs per cell from {LARGE:,} items'
    )
    parser.add_argument(
        '--cell-budget-s',
        type=float,
        default=100.0,
        help='no further run of a cell once its runs would exceed this',
    )
    parser.add_argument(
        '--sample-above',
        type=int,
        default=200_000,
        help='above this many items, sampled exact search and sampled '
        'IVF training (see the module doc)',
    )
    parser.add_argument('--sample-queries', type=int, default=5000)
    parser.add_argument(
        '--train-size',
        type=int,
        default=200_000,
        help='IVF k-means sample above --sample-above (>= 39 per list)',
    )
    parser.add_argument('--target-recall', type=float, default=0.95)
    parser.add_argument(
        '--max-full-cell-s',
        type=float,
        default=900.0,
        help='above --sample-above, the full IVF build is run only if its estimate is below this',
    )
    parser.add_argument(
        '--max-cell-gib', type=float, default=12.0, help='the dense baseline is skipped above this'
    )
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--threads', type=int, default=None, help='torch and FAISS threads (default: leave as is)'
    )
    parser.add_argument('--full', action='store_true', help=f'add {FULL_SIZES[0]:,} items')
    parser.add_argument(
        '--quick', action='store_true', help=f'{QUICK_SIZES} items, 1 run (smoke test)'
    )
    parser.add_argument(
        '--workdir',
        type=Path,
        default=None,
        help='where features and neighbours are written (default: a temp dir)',
    )
    parser.add_argument('--out', type=Path, default=default_out('knn'), help=out_help('knn'))
    parser.add_argument('--serve', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve()
        return {}
    check_out(args.out, args.quick)
    if args.k < 2:
        parser.error('--k must be at least 2 (recall is measured without the item itself)')
    sizes = args.sizes or SIZES + (FULL_SIZES if args.full else [])
    if args.quick:
        sizes, args.repeat, args.repeat_large = args.sizes or QUICK_SIZES, 1, 1
    command = ' '.join(
        ['python benchmarks/knn.py', *map(shlex.quote, sys.argv[1:] if argv is None else argv)]
    )
    if os.environ.get('OMP_WAIT_POLICY'):
        command = f'OMP_WAIT_POLICY={os.environ["OMP_WAIT_POLICY"]} {command}'

    start = time.perf_counter()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp, CellServer() as server:
        for num_items in sizes:
            rows += bench_size(server, num_items, args, Path(tmp))
    run_s = time.perf_counter() - start

    if args.repeat == args.repeat_large == 1:
        runs = '1 run per cell'
    else:
        runs = (
            f'median of {args.repeat} runs per cell below {LARGE:,} items and '
            f'{args.repeat_large} from there (fewer where they would exceed '
            f'{args.cell_budget_s:g} s)'
        )
    threads = args.threads or torch.get_num_threads()
    header = (
        f'Top-{args.k} cosine item graph, d={args.dim}, float32 clustered features '
        f'({args.centres} centres, noise {args.noise[0]:g}-{args.noise[1]:g}), {runs}, '
        f'{threads} threads, {os.cpu_count()} cores, torch {torch.__version__}, '
        f'faiss {faiss.__version__}, IVF with the default nlist of knn_item_graph'
    )  # fmt: skip
    lines = markdown(rows, header)
    lines += [
        '',
        f'Target recall {args.target_recall}:',
        *([f'- {QUICK_TARGETS}'] if args.quick else summary(rows, args.target_recall)),
    ]
    exact = [r for r in rows if r['kind'] == 'exact' and not r['estimated']]
    if any(r['recall'] != 1.0 for r in exact):
        raise RuntimeError('exact search disagrees with itself')
    print('\n'.join(lines))

    result = save_result(
        args.out, 'knn',
        command=command, run_s=run_s, sizes=sizes, dim=args.dim, k=args.k,
        nprobes=args.nprobes, recall='self excluded: fraction of the k - 1 exact neighbours '
        'other than the item itself that the method lists too',
        data=dict(centres=args.centres, topics=args.topics, noise=args.noise, seed=args.seed),
        repeat=args.repeat, repeat_large=args.repeat_large, cell_budget_s=args.cell_budget_s,
        sample_above=args.sample_above, sample_queries=args.sample_queries,
        train_size=args.train_size, target_recall=args.target_recall,
        quick=args.quick, full=args.full, rows=rows,
    )  # fmt: skip
    md = [f'Command: `{command}`', '',
          f'Run time: {fmt_seconds(run_s)} ({result["date"]}, commit {result["commit"]}, '
          f'load average {", ".join(f"{v:.1f}" for v in result["load_average"] or [])})', '',
          *lines]  # fmt: skip
    args.out.with_suffix('.md').write_text('\n'.join(md) + '\n')
    return result


if __name__ == '__main__':
    main()

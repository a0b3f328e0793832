"""Benchmark: LightGCN propagation throughput of our layers against the alternatives.

Every method computes one product with the normalised adjacency
:math:`\\mathbf{D}^{-1/2} \\mathbf{A} \\mathbf{D}^{-1/2}` of the symmetric
(users + items) graph, i.e. the users' outputs from the items and the items'
outputs from the users, forward only (``fwd``) and forward plus backward to
the input embeddings (``fwd+bwd``). All methods run in the same process,
interleaved, on the same inputs:

* ours: a ``HeteroConv`` of two ``BipartiteLightConv(cached=True)``
  (user -> item and item -> user; inputs ``x_user``, ``x_item``) and one
  ``BipartiteLightConv(cached=True)`` on the homogeneous (U + I)-node graph.
  The cache is warm (built once before timing, as in training); the time of
  that first call is given in the table's title.
* release-style: a re-creation of the approach of the released research code
  (the ``Base_gcn`` layer of the MMRec family of models): a ``MessagePassing``
  that removes self-loops and recomputes the degrees and the per-edge
  symmetric norm in ``message()`` on every call, then scatter-adds
  ``norm * x_j``. It is written in this file (:class:`ReleaseStyleConv`).
* PyG: ``LGConv(normalize=True)`` on the homogeneous ``edge_index`` (it runs
  ``gcn_norm`` on every call, the default users get), ``LGConv(normalize=False)``
  on a precomputed normalised ``torch.sparse`` CSR ``adj_t`` (PyG's fused
  ``spmm`` path) and on a precomputed normalised, destination-sorted
  ``EdgeIndex`` with ``edge_weight`` (``LGConv`` does not declare
  ``SUPPORTS_FUSED_EDGE_INDEX``, so this runs per-edge messages), and the raw
  fused ``EdgeIndex.matmul`` (which our layer calls only for edge weights that
  require a gradient; otherwise it multiplies by precomputed CSR matrices of
  ``A^T`` and ``A``, see :func:`pyg_mentor.nn.conv.bipartite_light_conv.to_csr_pair`).
* raw SpMM: ``torch.sparse.mm`` with a precomputed normalised N x N COO and
  CSR matrix (gradients by autograd), CSR with a hand-written backward that
  uses a precomputed transposed CSR, and ``torch_sparse.SparseTensor``
  matmul when ``torch_sparse`` is installed (a skipped row otherwise).
* item graph (with Baby): ``ItemGraphConv`` on a Baby-shaped item kNN graph
  (7,050 items, k = 10, weights 1/k, built with ``knn_item_graph`` from
  random features) against ``torch.sparse.mm`` with COO (how MMRec-family
  code propagates its item graph; the baseline of those rows) and CSR.

Homogeneous methods get the concatenated (U + I) x d embedding matrix (as
LightGCN keeps it), ours-hetero gets its two row blocks (views, no copy).
Before timing, every method's output, and in ``fwd+bwd`` its input gradient
for a fixed upstream gradient, is compared with ours (``HeteroConv``):
max |difference| / max |ours| must be below 1e-4, otherwise the run fails.

    python benchmarks/propagation.py                  # Baby, Sports, Clothing; d = 64 128 448
    python benchmarks/propagation.py --full --widths 64   # + a synthetic 10M-edge graph
    python benchmarks/propagation.py --quick          # small synthetic graph (smoke test)
    python benchmarks/propagation.py --graphs baby --widths 64 --contention 0 1 2

On a CPU shared with other busy processes, set ``OMP_WAIT_POLICY=PASSIVE``
before Python starts: with spinning OpenMP threads, short sparse kernels got
10-100x slower here under load (the script prints a note when it is unset
and the load is high; the JSON records it and the load average per cell).
``--contention 0 1 2`` measures that load itself: for each level it starts
that many competing busy processes (pure-Python loops, one core each, at
this process's priority; each stops by itself after ``--contention-max-s``
seconds and is killed when its level is done), runs every cell, and stops
them. Every row records its level (``contention``), every table title the
threading environment (``OMP_WAIT_POLICY``, torch threads, competing
processes), and with more than one level a summary table gives each
method's median per level and its time relative to the fastest method of
the same cell (``time_vs_fastest``). ``--threads`` sets torch's threads.
Measured so on Baby (``benchmarks/results/propagation_contention*.md``):
``PASSIVE`` removed the collapse under load but made the quiet machine's
calls slower, since sleeping OpenMP threads must be woken for every kernel.

Per graph it prints a markdown table: median milliseconds per call over
``--repeat`` timed calls (after ``--warmup`` calls, the first of which does
the check), edges x columns per second (directed edges of the product times
the width, per call; ``fwd+bwd`` does two products), the speed-up over the
release-style method and the time relative to the best raw SpMM measured in
the same run (the fastest of torch.sparse COO, CSR, CSR with precomputed
transpose and SparseTensor; the JSON also has it relative to the fastest
of the plain autograd ones only, COO, CSR and SparseTensor). Writes JSON to
``runs/benchmarks/propagation.json`` (``--full``: ``propagation_full.json``;
``--out benchmarks/results/propagation.json`` updates the committed one)
and the tables, with the command and its run time, to the same name with
``.md``. Real train graphs are read from ``--root`` (MMRec ``.inter`` files,
read with ``load_mmrec``, which writes nothing); a missing data set is
replaced by a random graph of the same shape, and the table says so.
A method is skipped, with the reason, where the process's resident size plus
its estimated peak (calibrated on a 2M-edge graph) would exceed
``--mem-limit-gb`` (default 12) or need more than 80% of the available memory.
On the 10M-edge graph of ``--full``, the per-edge methods (release-style,
``LGConv``) need ~6 GB at d = 64 and do not fit at wider d. A progress line
per cell goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

if not __package__:  # `python benchmarks/propagation.py`: import the checkout's package
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import torch
from torch import Tensor
from torch_geometric import EdgeIndex
from torch_geometric.nn import HeteroConv, LGConv, MessagePassing
from torch_geometric.utils import degree, remove_self_loops

from benchmarks._common import (
    DEFAULT_OUT_DIR,
    QUICK_TARGETS,
    available_bytes,
    check_out,
    machine_info,
    save_result,
    time_interleaved,
)
from pyg_mentor.datasets.mmrec import DataFormatError, load_mmrec
from pyg_mentor.nn.conv import BipartiteLightConv, ItemGraphConv, bipartite_norm
from pyg_mentor.train import cpu_contention_note
from pyg_mentor.typing import ITEM, RATED_BY, RATES, USER
from pyg_mentor.utils import knn_item_graph

try:
    import torch_sparse
except ImportError:  # pragma: no cover - depends on the environment
    torch_sparse = None

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOTS = [REPO.parent / 'shared' / 'data', REPO / 'datasets']


class GraphSpec(NamedTuple):
    name: str  # table name
    dataset: str | None  # MMRec data set name, None = always synthetic
    users: int
    items: int
    pairs: int
    item_graph: tuple[int, int] | None = None  # (items, k) of an item kNN graph in its table


GRAPHS = {
    'baby': GraphSpec('Baby', 'baby', 19445, 7050, 118551, item_graph=(7050, 10)),
    'sports': GraphSpec('Sports', 'sports', 35598, 18357, 218409),
    'clothing': GraphSpec('Clothing', 'clothing', 39387, 23033, 197338),
}
QUICK_GRAPH = GraphSpec('quick', None, 2000, 800, 12000, item_graph=(800, 10))
FULL_GRAPH = GraphSpec('synthetic 10M', None, 1_000_000, 200_000, 5_000_000)

RELEASE = 'release-style (Base_gcn re-creation)'
OURS_HETERO = 'ours: HeteroConv(2 x BipartiteLightConv)'
OURS_HOMO = 'ours: BipartiteLightConv, homogeneous'
ITEM_OURS = 'ours: ItemGraphConv'
ITEM_BASELINE = 'torch.sparse.mm COO (release code path)'
FLOAT_BYTES = 4
CHECK_TOL = 1e-4
TARGET_WIDTH = 64  # the targets are set for d = 64, fwd+bwd


# ----------------------------------------------------------------------------
# The release-style layer (re-created, not imported)
# ----------------------------------------------------------------------------
class ReleaseStyleConv(MessagePassing):
    r"""RE-CREATION of the released research code's propagation approach, for
    comparison only (the ``Base_gcn`` layer of MMRec-family models): self-loops
    are removed and the symmetric norm is recomputed from :func:`degree` on
    every call inside :meth:`message`, then ``norm * x_j`` is scatter-added."""

    def __init__(self):
        super().__init__(aggr='add')

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        edge_index, _ = remove_self_loops(edge_index)
        return self.propagate(edge_index, size=(x.size(0), x.size(0)), x=x)

    def message(self, x_j: Tensor, edge_index: Tensor, size: tuple[int, int]) -> Tensor:
        row, col = edge_index
        deg = degree(row, size[0], dtype=x_j.dtype)
        deg_inv_sqrt = deg.pow(-0.5)
        norm = deg_inv_sqrt[row] * deg_inv_sqrt[col]
        return norm.view(-1, 1) * x_j


class _CsrWithTranspose(torch.autograd.Function):
    """``A @ x`` with a torch.sparse CSR ``A`` whose transpose (also CSR) is
    precomputed, so the backward pass is one more CSR product."""

    @staticmethod
    def forward(ctx, x: Tensor, adj: Tensor, adj_t: Tensor) -> Tensor:
        ctx.adj_t = adj_t
        return adj @ x

    @staticmethod
    def backward(ctx, grad: Tensor):
        return ctx.adj_t @ grad, None, None


# ----------------------------------------------------------------------------
# Graphs
# ----------------------------------------------------------------------------
def random_pairs(num_users: int, num_items: int, num_pairs: int, seed: int) -> Tensor:
    """Distinct random (user, item) pairs; every user and (when there are
    enough pairs) every item appears, up to redrawn duplicates."""
    gen = torch.Generator().manual_seed(seed)
    users = torch.cat(
        [
            torch.arange(num_users),
            torch.randint(0, num_users, (num_pairs - num_users,), generator=gen),
        ]
    )
    first = min(num_items, num_pairs)
    items = torch.cat(
        [
            torch.randperm(num_items, generator=gen)[:first],
            torch.randint(0, num_items, (num_pairs - first,), generator=gen),
        ]
    )
    while True:  # redraw duplicated pairs
        key = users * num_items + items
        sorted_key, perm = key.sort(stable=True)
        dup = torch.zeros(num_pairs, dtype=torch.bool)
        dup[perm[1:]] = sorted_key[1:] == sorted_key[:-1]
        if not dup.any():
            break
        items[dup] = torch.randint(0, num_items, (int(dup.sum()),), generator=gen)
    return torch.stack([users, items])


def load_graph(spec: GraphSpec, roots: Sequence[Path], seed: int) -> tuple[Tensor, int, int, str]:
    """``(user -> item edge_index, users, items, source)`` of a train graph:
    the real one when its ``.inter`` file is under one of ``roots``, else a
    random graph of the same shape."""
    if spec.dataset is not None:
        for root in roots:
            try:
                data = load_mmrec(root, spec.dataset)
            except DataFormatError:
                continue
            edge_index = data[RATES].edge_index
            source = f'real train graph, {root / spec.dataset}'
            return edge_index, data[USER].num_nodes, data[ITEM].num_nodes, source
        source = (
            f'SYNTHETIC random graph of the shape of {spec.name} '
            f'({spec.dataset} not found under {", ".join(map(str, roots))})'
        )
    else:
        source = 'synthetic random graph'
    edge_index = random_pairs(spec.users, spec.items, spec.pairs, seed)
    return edge_index, spec.users, spec.items, source


def item_knn_graph(num_items: int, k: int, seed: int) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return knn_item_graph(torch.randn(num_items, 64, generator=gen), k)


# ----------------------------------------------------------------------------
# Methods
# ----------------------------------------------------------------------------
class Method:
    """One way to propagate: ``run(*inputs) -> outputs`` (inputs and outputs as
    the (user block, item block) pair if ``split``), its estimated transient
    memory ``extra_bytes(width, backward)``, or the reason it is ``skipped``."""

    def __init__(
        self,
        name: str,
        family: str,  # 'ours', 'release', 'pyg' or 'raw'
        run: Callable[..., tuple[Tensor, ...]] | None,
        split: bool = False,
        extra_bytes: Callable[[int, bool], int] | None = None,
        skipped: str | None = None,
        autograd_raw: bool = False,  # a plain raw SpMM with autograd's backward
    ):
        self.name, self.family, self.run, self.split = name, family, run, split
        self.extra_bytes, self.skipped, self.autograd_raw = extra_bytes, skipped, autograd_raw
        self.setup_ms: float | None = None  # first call (cache build) of our layers


# Transient memory of one call beyond its input, calibrated against the peak RSS
# growth measured on a 2M-edge graph at d = 64 and 256 (within 1.5x):
def _sparse_extra(nnz: int, rows: int) -> Callable[[int, bool], int]:
    """torch.sparse: output and a copy (+ input gradient, transposed indices)."""
    return lambda d, bwd: rows * d * FLOAT_BYTES * (3 if bwd else 2) + (64 * nnz if bwd else 0)


def _fused_extra(nnz: int, rows: int) -> Callable[[int, bool], int]:
    """Fused SpMM: output (+ gradient, its copy, the permuted weights)."""
    return lambda d, bwd: rows * d * FLOAT_BYTES * (3 if bwd else 1) + (8 * nnz if bwd else 0)


def _per_edge_extra(nnz: int, rows: int) -> Callable[[int, bool], int]:
    """Per-edge messages: gathered x_j and the messages (E x d each), the output
    (+ gradient)."""
    return lambda d, bwd: (
        int(2.4 * nnz * d + rows * d * (2 if bwd else 1)) * FLOAT_BYTES + (48 * nnz)
    )


def user_item_methods(edge_index: Tensor, num_users: int, num_items: int) -> list[Method]:
    """Every method for one user-item graph; all precomputation done here."""
    n = num_users + num_items
    src, dst = edge_index[0], edge_index[1] + num_users
    homo = torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], dim=1)
    nnz = homo.size(1)
    weight = bipartite_norm(homo, n, n)  # the normalised symmetric adjacency
    raw, csr = raw_spmm_methods(homo, weight, n, 'torch.sparse.mm COO', 'raw')
    perm = (homo[1] * n + homo[0]).argsort()  # by destination
    ei_col = EdgeIndex(homo[:, perm], sparse_size=(n, n), sort_order='col')
    w_col = weight[perm]
    adj_t, w_row = homo.flip(0)[:, perm], weight[perm]  # A (dst, src), row-sorted
    ei_row = EdgeIndex(adj_t, sparse_size=(n, n), sort_order='row')
    ei_row.get_csr()
    ei_row.get_csc()

    hetero = HeteroConv(
        {RATES: BipartiteLightConv(cached=True), RATED_BY: BipartiteLightConv(cached=True)},
        aggr='sum',
    )
    edge_index_dict = {RATES: edge_index, RATED_BY: edge_index.flip(0)}
    ours_homo = BipartiteLightConv(cached=True)
    release = ReleaseStyleConv()
    lg_norm, lg_plain = LGConv(normalize=True), LGConv(normalize=False)

    def run_hetero(x_user: Tensor, x_item: Tensor) -> tuple[Tensor, Tensor]:
        out = hetero({USER: x_user, ITEM: x_item}, edge_index_dict)
        return out[USER], out[ITEM]

    per_edge = _per_edge_extra(nnz, n)
    sparse = _sparse_extra(nnz, n)
    fused = _fused_extra(nnz, n)
    methods = [
        Method(OURS_HETERO, 'ours', run_hetero, split=True, extra_bytes=fused),
        Method(OURS_HOMO, 'ours', lambda x: (ours_homo(x, homo),), extra_bytes=fused),
        Method(RELEASE, 'release', lambda x: (release(x, homo),), extra_bytes=per_edge),
        Method(
            'PyG LGConv(normalize=True)', 'pyg', lambda x: (lg_norm(x, homo),), extra_bytes=per_edge
        ),
        Method(
            'PyG LGConv(normalize=False), normalised CSR adj_t',
            'pyg',
            lambda x: (lg_plain(x, csr),),
            extra_bytes=sparse,
        ),
        Method(
            'PyG LGConv(normalize=False), normalised EdgeIndex',
            'pyg',
            lambda x: (lg_plain(x, ei_col, w_col),),
            extra_bytes=per_edge,
        ),
        Method(
            'PyG EdgeIndex.matmul (fused SpMM)',
            'pyg',
            lambda x: (ei_row.matmul(x, input_value=w_row),),
            extra_bytes=fused,
        ),
        *raw,
    ]
    # Warm the caches of our layers (the normalisation is built once, as in training):
    x_user, x_item = torch.zeros(num_users, 1), torch.zeros(num_items, 1)
    start = time.perf_counter()
    run_hetero(x_user, x_item)
    methods[0].setup_ms = (time.perf_counter() - start) * 1e3
    start = time.perf_counter()
    ours_homo(torch.zeros(n, 1), homo)
    methods[1].setup_ms = (time.perf_counter() - start) * 1e3
    return methods


def sparse_tensor_method(
    index: Tensor, weight: Tensor, n: int, extra: Callable[[int, bool], int]
) -> Method:
    name = 'torch_sparse.SparseTensor matmul'
    if torch_sparse is None:
        return Method(name, 'raw', None, skipped='torch_sparse not installed')
    adj_t = torch_sparse.SparseTensor(row=index[1], col=index[0], value=weight, sparse_sizes=(n, n))
    return Method(
        name,
        'raw',
        lambda x: (torch_sparse.matmul(adj_t, x, reduce='sum'),),
        extra_bytes=extra,
        autograd_raw=True,
    )


def item_graph_methods(edge_index: Tensor, edge_weight: Tensor, num_items: int) -> list[Method]:
    conv = ItemGraphConv()
    methods = [
        Method(
            ITEM_OURS,
            'ours',
            lambda x: (conv(x, edge_index, edge_weight),),
            extra_bytes=_fused_extra(edge_index.size(1), num_items),
        ),
        *raw_spmm_methods(edge_index, edge_weight, num_items, ITEM_BASELINE, 'release')[0],
    ]
    start = time.perf_counter()
    conv(torch.zeros(num_items, 1), edge_index, edge_weight)
    methods[0].setup_ms = (time.perf_counter() - start) * 1e3
    return methods


def raw_spmm_methods(
    index: Tensor, weight: Tensor, n: int, coo_name: str, coo_kind: str
) -> tuple[list[Method], Tensor]:
    """The raw sparse products of ``A`` (``A[dst, src] = weight``, ``n x n``) timed
    for every graph: ``torch.sparse.mm`` on COO (named ``coo_name``, of kind
    ``coo_kind``) and CSR, CSR with a precomputed ``A^T`` for the backward pass,
    and ``torch_sparse.SparseTensor`` when installed; and the CSR matrix."""
    nnz = index.size(1)
    coo = torch.sparse_coo_tensor(index.flip(0), weight, (n, n)).coalesce()
    csr = coo.to_sparse_csr()
    csr_t = torch.sparse_coo_tensor(index, weight, (n, n)).coalesce().to_sparse_csr()
    sparse, fused = _sparse_extra(nnz, n), _fused_extra(nnz, n)
    return [
        Method(
            coo_name,
            coo_kind,
            lambda x: (torch.sparse.mm(coo, x),),
            extra_bytes=sparse,
            autograd_raw=True,
        ),
        Method(
            'torch.sparse.mm CSR',
            'raw',
            lambda x: (torch.sparse.mm(csr, x),),
            extra_bytes=sparse,
            autograd_raw=True,
        ),
        Method(
            'torch.sparse CSR, precomputed A^T backward',
            'raw',
            lambda x: (_CsrWithTranspose.apply(x, csr, csr_t),),
            extra_bytes=fused,
        ),
        sparse_tensor_method(index, weight, n, sparse),
    ], csr


# ----------------------------------------------------------------------------
# Competing load
# ----------------------------------------------------------------------------
BUSY_LOOP = (
    'import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n'
)


@contextlib.contextmanager
def competing_load(count: int, max_s: float) -> Iterator[list[subprocess.Popen]]:
    """``count`` competing busy processes (pure-Python loops, one core each)
    while the block runs; each ends by itself after ``max_s`` seconds at the
    latest and is killed when the block exits, however it exits."""
    procs: list[subprocess.Popen] = []
    try:
        for _ in range(count):
            procs.append(
                subprocess.Popen(
                    [sys.executable, '-I', '-S', '-c', BUSY_LOOP.format(seconds=max_s)]
                )
            )
        if procs:
            time.sleep(0.2)  # let them start spinning
        yield procs
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


def check_load(procs: Sequence[subprocess.Popen], max_s: float) -> None:
    """Raises if a competing process ended before the cells did (so no row
    claims a load it did not have)."""
    if any(proc.poll() is not None for proc in procs):
        raise RuntimeError(
            f'a competing busy process stopped before the cells were done (each stops '
            f'after --contention-max-s {max_s:g} s); raise --contention-max-s'
        )


def threading_label(level: int) -> str:
    """The threading environment of a table: wait policy, threads, load."""
    policy = os.environ.get('OMP_WAIT_POLICY') or 'unset'
    return (
        f'OMP_WAIT_POLICY={policy}, {torch.get_num_threads()} torch threads, '
        f'{level} competing busy process{"es" * (level != 1)}'
    )


# ----------------------------------------------------------------------------
# Timing and checking
# ----------------------------------------------------------------------------
def make_step(
    method: Method, x: Tensor, num_users: int, backward: bool
) -> Callable[[], tuple[tuple[Tensor, ...], tuple[Tensor, ...]]]:
    """One call of ``method`` on ``x`` (its two row blocks if ``split``); with
    ``backward``, also the input gradients for the upstream gradient ``x``."""
    inputs = (x[:num_users], x[num_users:]) if method.split else (x,)
    run = method.run
    assert run is not None

    if not backward:

        def step() -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
            with torch.no_grad():
                return run(*inputs), ()

        return step

    def step_bwd() -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        leaves = [t.detach().requires_grad_() for t in inputs]
        outs = run(*leaves)
        torch.autograd.backward(outs, inputs)  # upstream gradient = the input
        return tuple(o.detach() for o in outs), tuple(leaf.grad for leaf in leaves)

    return step_bwd


CHUNK_ROWS = 1 << 16  # rows compared at once, so the check needs little memory


def join(blocks: Sequence[Tensor]) -> Tensor:
    """The row blocks as one matrix (no copy for a single block)."""
    return blocks[0] if len(blocks) == 1 else torch.cat(list(blocks))


def max_rel_diff(blocks: Sequence[Tensor], ref: Tensor) -> float:
    """max |blocks stacked - ref| / max |ref|, in chunks of rows."""
    diff, offset = 0.0, 0
    for block in blocks:
        for start in range(0, block.size(0), CHUNK_ROWS):
            part = block[start : start + CHUNK_ROWS]
            other = ref[offset + start : offset + start + part.size(0)]
            diff = max(diff, float((part - other).abs().max()))
        offset += block.size(0)
    scale = max(
        float(ref[i : i + CHUNK_ROWS].abs().max()) for i in range(0, ref.size(0), CHUNK_ROWS)
    )
    return diff / max(scale, 1e-30)


def iqr(values: Sequence[float]) -> float:
    """Interquartile range (0 for fewer than two values)."""
    if len(values) < 2:
        return 0.0
    q1, _, q3 = statistics.quantiles(values, n=4)
    return q3 - q1


def resident_bytes() -> int:
    """This process's resident set size (0 where /proc is missing)."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def bench_cell(
    table: str,
    graph: str,
    methods: list[Method],
    x: Tensor,
    num_users: int,
    nnz: int,
    backward: bool,
    args: argparse.Namespace,
    contention: int = 0,
) -> list[dict]:
    """Checks and times every method on one graph, width and pass (with
    ``contention`` competing busy processes running, recorded in the rows)."""
    d = x.size(1)
    pass_ = 'fwd+bwd' if backward else 'fwd'
    load = os.getloadavg()[0] if hasattr(os, 'getloadavg') else None
    # Memory: this process's resident size now (graphs, adjacencies, input),
    # plus the reference output and gradient, plus one call of the method,
    # must stay under --mem-limit-gb and under 80% of the available memory.
    resident = resident_bytes()
    avail = available_bytes()
    refs = (2 if backward else 1) * x.numel() * FLOAT_BYTES
    skipped: dict[str, str] = {}
    for m in methods:
        if m.skipped:
            skipped[m.name] = m.skipped
            continue
        assert m.extra_bytes is not None
        need = refs + m.extra_bytes(d, backward)
        if resident + need > args.mem_limit_gb * 2**30:
            skipped[m.name] = (
                f'needs ~{need / 2**30:.1f} GB on top of {resident / 2**30:.1f} GB resident, '
                f'over --mem-limit-gb {args.mem_limit_gb:g}'
            )
        elif avail is not None and need > 0.8 * avail:
            skipped[m.name] = f'needs ~{need / 2**30:.1f} GB, {avail / 2**30:.1f} GB available'
    ref_method = methods[0]
    if ref_method.name in skipped:  # nothing to compare with: skip the cell
        for m in methods:
            skipped.setdefault(m.name, f'reference ({ref_method.name}) skipped')

    steps = {m.name: make_step(m, x, num_users, backward) for m in methods if m.name not in skipped}
    # Check every method against ours before timing (counts as the first warm-up).
    diffs: dict[str, tuple[float, float | None]] = {}
    if steps:
        outs, grads = steps[ref_method.name]()
        ref_out = join(outs)
        del outs
        ref_grad = join(grads) if backward else None
        del grads
        for name, step in steps.items():
            outs, grads = step()
            out_diff = max_rel_diff(outs, ref_out)
            grad_diff = None if ref_grad is None else max_rel_diff(grads, ref_grad)
            del outs, grads
            diffs[name] = (out_diff, grad_diff)
            if not (out_diff < CHECK_TOL and (grad_diff is None or grad_diff < CHECK_TOL)):
                raise RuntimeError(
                    f'{graph} [{table}], d={d}, {pass_}: {name!r} disagrees with '
                    f'{ref_method.name!r}: output max rel. diff {out_diff:.2e}, gradient '
                    f'{grad_diff if grad_diff is None else f"{grad_diff:.2e}"} '
                    f'(tolerance {CHECK_TOL:.0e})'
                )
        del ref_out, ref_grad
    times = time_interleaved(steps, args.repeat, warmup=max(args.warmup - 1, 0))

    medians = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    release = next((medians.get(m.name) for m in methods if m.family == 'release'), None)
    raw = [medians[m.name] for m in methods if m.family == 'raw' and m.name in medians]
    raw_autograd = [medians[m.name] for m in methods if m.autograd_raw and m.name in medians]
    best_raw = min(raw) if raw else None
    best_raw_autograd = min(raw_autograd) if raw_autograd else None
    fastest = min(medians.values(), default=None)
    rows = []
    for m in methods:
        row = dict(
            table=table,
            graph=graph,
            nnz=nnz,
            width=d,
            pass_=pass_,
            contention=contention,
            method=m.name,
            family=m.family,
            setup_ms=m.setup_ms,
            skipped=skipped.get(m.name),
            load_average=load,
        )
        if m.name in medians:
            ms = medians[m.name]
            row.update(
                times_ms=[t * 1e3 for t in times[m.name]], median_ms=ms,
                edge_cols_per_s=nnz * d / (ms / 1e3),
                speedup_vs_release=release / ms if release else None,
                time_vs_best_raw=ms / best_raw if best_raw else None,
                time_vs_best_raw_autograd=ms / best_raw_autograd if best_raw_autograd else None,
                time_vs_fastest=ms / fastest,
                spread=iqr(times[m.name]) / statistics.median(times[m.name]),
                out_max_rel_diff=diffs[m.name][0], grad_max_rel_diff=diffs[m.name][1],
            )  # fmt: skip
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------
def _fmt_ratio(value: float | None, suffix: str = '') -> str:
    return 'n/a' if value is None else f'{value:.2f}{suffix}'


def format_table(title: str, rows: list[dict]) -> list[str]:
    lines = [
        f'### {title}',
        '',
        '| graph | d | pass | method | median ms | IQR | G edge-cols/s '
        '| speed-up vs release | time / best raw SpMM |',
        '|---|---:|---|---|---:|---:|---:|---:|---:|',
    ]
    for row in rows:
        head = f'| {row["graph"]} | {row["width"]} | {row["pass_"]} | {row["method"]} |'
        if row['skipped']:
            lines.append(f'{head} skipped: {row["skipped"]} | | | | |')
            continue
        lines.append(
            f'{head} {row["median_ms"]:,.2f} | {100 * row["spread"]:.0f}% | '
            f'{row["edge_cols_per_s"] / 1e9:.2f} | '
            f'{_fmt_ratio(row["speedup_vs_release"], "x")} | '
            f'{_fmt_ratio(row["time_vs_best_raw"])} |'
        )
    return lines


def format_contention_table(rows: list[dict], levels: Sequence[int]) -> list[str]:
    """One table per graph, width and pass: each method's median ms per
    contention level and its time relative to the fastest method there."""
    lines = ['### Contention summary', '']
    head = ''.join(f' {level} busy: ms | / fastest |' for level in levels)
    keys = dict.fromkeys((r['table'], r['graph'], r['width'], r['pass_']) for r in rows)
    for table, graph, width, pass_ in keys:
        cell = [
            r
            for r in rows
            if (r['table'], r['graph'], r['width'], r['pass_']) == (table, graph, width, pass_)
        ]
        by = {(r['method'], r['contention']): r for r in cell}
        lines += [
            f'{table}, {graph}, d={width}, {pass_}:',
            '',
            f'| method |{head}',
            '|---|' + '---:|---:|' * len(levels),
        ]
        for method in dict.fromkeys(r['method'] for r in cell):
            parts = []
            for level in levels:
                row = by.get((method, level))
                if row is None or row['skipped']:
                    parts.append(' skipped | |')
                else:
                    parts.append(f' {row["median_ms"]:,.2f} | {row["time_vs_fastest"]:.2f} |')
            lines.append(f'| {method} |' + ''.join(parts))
        lines.append('')
    return lines


def target_lines(rows: list[dict]) -> tuple[list[str], list[dict]]:
    """The targets, set for Baby, d = 64, fwd+bwd (listed for every graph):
    ours >= 12x faster than the release-style method and within 1.3x of the
    best raw SpMM with autograd's backward (torch.sparse COO / CSR,
    SparseTensor); the time relative to the hand-written CSR is listed too."""
    lines, checks = [], []
    for row in rows:
        if row['family'] != 'ours' or row['method'] == ITEM_OURS or row['skipped']:
            continue
        if row['width'] != TARGET_WIDTH or row['pass_'] != 'fwd+bwd':
            continue
        speed, strict, plain = (
            row['speedup_vs_release'],
            row['time_vs_best_raw'],
            row['time_vs_best_raw_autograd'],
        )
        ok = speed is not None and speed >= 12 and plain is not None and plain <= 1.3
        checks.append(
            dict(
                table=row['table'],
                width=row['width'],
                pass_=row['pass_'],
                contention=row['contention'],
                method=row['method'],
                speedup_vs_release=speed,
                time_vs_best_raw=strict,
                time_vs_best_raw_autograd=plain,
                time_vs_fastest=row['time_vs_fastest'],
                met=ok,
            )
        )
        lines.append(
            f'- {row["table"]}, {row["contention"]} busy, {row["method"]}: '
            f'{_fmt_ratio(speed, "x")} faster than '
            f'release-style (target >= 12x); time / best autograd raw SpMM '
            f'{_fmt_ratio(plain)} (target <= 1.3): {"met" if ok else "MISSED"}; '
            f'time / hand-written CSR with precomputed A^T {_fmt_ratio(strict)}; '
            f'time / fastest method {_fmt_ratio(row["time_vs_fastest"])}'
        )
    return lines, checks


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--graphs', nargs='*', choices=list(GRAPHS), default=list(GRAPHS),
        help='real data sets to run (none: only --full or --quick)',
    )  # fmt: skip
    parser.add_argument('--widths', type=int, nargs='+', default=[64, 128, 448])
    parser.add_argument('--repeat', type=int, default=10)
    parser.add_argument(
        '--warmup',
        type=int,
        default=2,
        help='untimed calls per method and cell; the first one checks',
    )
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--root',
        type=Path,
        nargs='+',
        default=DEFAULT_ROOTS,
        help='folders holding MMRec data sets (first match wins)',
    )
    parser.add_argument(
        '--threads', type=int, default=None, help='torch threads (default: leave as is)'
    )
    parser.add_argument(
        '--contention', type=int, nargs='+', default=[0], metavar='N',
        help='numbers of competing busy processes (one core each) to run the cells '
        'with, one level after the other (default: 0)',
    )  # fmt: skip
    parser.add_argument(
        '--contention-max-s', type=float, default=1800.0,
        help='a competing process stops by itself after this many seconds (default: 1800)',
    )  # fmt: skip
    parser.add_argument(
        '--mem-limit-gb',
        type=float,
        default=12.0,
        help='skip methods whose estimated peak resident size exceeds this (default: 12)',
    )
    parser.add_argument(
        '--full',
        action='store_true',
        help=f'add a synthetic graph of {2 * FULL_GRAPH.pairs:,} directed edges',
    )
    parser.add_argument(
        '--quick',
        action='store_true',
        help='small synthetic graph, d = 64, 2 repetitions (smoke test)',
    )
    parser.add_argument(
        '--out',
        type=Path,
        default=None,
        help=f'JSON output (default: {DEFAULT_OUT_DIR}/propagation[_full].json; to '
        'update the committed table: --out benchmarks/results/propagation.json)',
    )
    args = parser.parse_args(argv)
    if min(args.contention) < 0:
        parser.error('--contention: levels must be >= 0')
    args.contention = list(dict.fromkeys(args.contention))
    started = time.perf_counter()
    note = cpu_contention_note()
    if note:
        print(f'Note: {note}\n', flush=True)
    for message in (
        'Sparse CSR tensor support is in beta state',
        'Sparse invariant checks are implicitly disabled',
    ):
        warnings.filterwarnings('ignore', message=message, category=UserWarning)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    specs = [GRAPHS[name] for name in args.graphs]
    if args.full:
        specs.append(FULL_GRAPH)
    if args.quick:
        specs, args.widths, args.repeat = [QUICK_GRAPH], [64], 2
    if args.out is None:
        name = 'propagation_full.json' if args.full else 'propagation.json'
        args.out = DEFAULT_OUT_DIR / name
    check_out(args.out, args.quick)

    rows: list[dict] = []
    graphs: list[dict] = []
    tables: list[str] = []
    for spec in specs:
        edge_index, num_users, num_items, source = load_graph(spec, args.root, args.seed)
        methods = user_item_methods(edge_index, num_users, num_items)
        nnz = 2 * edge_index.size(1)
        n = num_users + num_items
        info = dict(
            table=spec.name,
            graph='user-item',
            users=num_users,
            items=num_items,
            pairs=edge_index.size(1),
            nnz=nnz,
            source=source,
            setup_ms={m.name: m.setup_ms for m in methods if m.setup_ms is not None},
        )
        graphs.append(info)
        title = (
            f'{spec.name}: {num_users:,} users x {num_items:,} items, '
            f'{edge_index.size(1):,} train pairs = {nnz:,} directed edges ({source}; '
            f'first call of ours, building the cache: {methods[0].setup_ms:.0f} ms hetero, '
            f'{methods[1].setup_ms:.0f} ms homogeneous)'
        )
        cells: list[tuple[str, list[Method], int, int, int]] = [
            ('user-item', methods, n, num_users, nnz)
        ]
        if spec.item_graph is not None:
            num_knn, k = spec.item_graph
            knn_index, knn_weight = item_knn_graph(num_knn, k, args.seed)
            item_methods = item_graph_methods(knn_index, knn_weight, num_knn)
            knn_name = f'item kNN (k={k})'
            graphs.append(
                dict(
                    table=spec.name,
                    graph=knn_name,
                    items=num_knn,
                    k=k,
                    nnz=knn_index.size(1),
                    source='knn_item_graph of random 64-d features, weights 1/k',
                    setup_ms={ITEM_OURS: item_methods[0].setup_ms},
                )
            )
            title += (
                f'; {knn_name}: {num_knn:,} items, {knn_index.size(1):,} edges '
                f'(weights 1/k, from random features)'
            )
            cells.append((knn_name, item_methods, num_knn, num_knn, knn_index.size(1)))

        for level in args.contention:
            table_rows = []
            with competing_load(level, args.contention_max_s) as procs:
                for d in args.widths:
                    for graph, cell_methods, num_rows, split_at, cell_nnz in cells:
                        gen = torch.Generator().manual_seed(args.seed + d)
                        x = torch.randn(num_rows, d, generator=gen)
                        for backward in (False, True):
                            table_rows += bench_cell(
                                spec.name, graph, cell_methods, x, split_at, cell_nnz,
                                backward, args, contention=level,
                            )  # fmt: skip
                            check_load(procs, args.contention_max_s)
                            print(
                                f'[{time.perf_counter() - started:.0f} s] {spec.name}, '
                                f'{graph}, d={d}, {"fwd+bwd" if backward else "fwd"}, '
                                f'{level} busy done',
                                file=sys.stderr,
                                flush=True,
                            )
                        del x
            rows += table_rows
            table = format_table(f'{title}; {threading_label(level)}', table_rows)
            tables += table + ['']
            print('\n'.join(table) + '\n', flush=True)
        del methods
    if len(args.contention) > 1:
        summary_table = format_contention_table(rows, args.contention)
        tables += summary_table
        print('\n'.join(summary_table), flush=True)

    target, checks = target_lines(rows)
    if args.quick:  # The targets are set for the full-size graphs.
        target = [f'- {QUICK_TARGETS}']
        for check in checks:
            check['met'] = None
    diffs = [r['out_max_rel_diff'] for r in rows if r.get('out_max_rel_diff') is not None]
    gdiffs = [r['grad_max_rel_diff'] for r in rows if r.get('grad_max_rel_diff') is not None]
    run_s = time.perf_counter() - started
    policy = os.environ.get('OMP_WAIT_POLICY')
    loads = [r['load_average'] for r in rows if r['load_average'] is not None]
    command = ' '.join(
        [f'OMP_WAIT_POLICY={policy}'] * (policy is not None)
        + ['python benchmarks/propagation.py', shlex.join(sys.argv[1:] if argv is None else argv)]
    )
    header = [
        f'Propagation benchmark: `{command.strip()}` took {run_s:.0f} s '
        f'({machine_info()["date"]}, commit {machine_info()["commit"]}; '
        f'{torch.get_num_threads()} threads on {os.cpu_count()} cores, torch '
        f'{torch.__version__}, float32, CPU, OMP_WAIT_POLICY={policy or "unset"}, '
        f'competing busy processes {", ".join(map(str, args.contention))} (started by '
        f'the script, pure-Python loops), 1-minute load average '
        f'{min(loads, default=0):.1f}-{max(loads, default=0):.1f} during the cells).',
        '',
        f'Median of {args.repeat} calls after {args.warmup} warm-up calls per method and '
        f'cell, methods interleaved. "G edge-cols/s" = directed edges x width / time per '
        f'call. "speed-up vs release" = release-style time / time (for the item kNN rows: '
        f'{ITEM_BASELINE}); "time / best raw SpMM" = time / fastest of torch.sparse COO, CSR, '
        f'CSR with precomputed A^T backward and SparseTensor, same cell.',
        '',
        f'All methods agree with {OURS_HETERO} (item rows: {ITEM_OURS}): output max rel. '
        f'diff <= {max(diffs, default=0):.1e}, gradient <= {max(gdiffs, default=0):.1e}.',
        '',
    ]
    summary = [
        f'Targets (set for Baby, d={TARGET_WIDTH}, fwd+bwd; other graphs for comparison):',
        '',
        *target,
    ]
    print('\n'.join(summary))
    result = save_result(
        args.out, 'propagation',
        widths=args.widths, repeat=args.repeat, warmup=args.warmup, quick=args.quick,
        full=args.full, command=command.strip(), run_s=run_s, contention=args.contention,
        contention_max_s=args.contention_max_s,
        torch_sparse=torch_sparse is not None, graphs=graphs, targets=checks, rows=rows,
    )  # fmt: skip
    args.out.with_suffix('.md').write_text('\n'.join(header + tables + summary) + '\n')
    return result


if __name__ == '__main__':
    main()

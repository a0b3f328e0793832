"""Benchmark: seconds per MENTOR training step and epoch on Baby.

Times one training step (``loss(batch)`` + backward + Adam step, batch 2048) of

* **ours**: :class:`pyg_mentor.nn.models.MENTOR` as released (``cl_scope='all'``:
  InfoNCE over all users and all items, chunked; ``feature_mask_grad=False``: the
  feature-mask term without gradient, as the release), so that it computes exactly
  what the release computes;
* **release-style**: a re-creation, written in this file, of the released code's step
  for the same computation: a dense I x I cosine similarity + ``topk`` per modality at
  set-up for the item graph (a ``torch.sparse`` COO matrix, used with
  ``torch.sparse.mm``); seven encoder blocks, each with its own per-edge
  :class:`~torch_geometric.nn.conv.MessagePassing` layer that removes self-loops and
  recomputes the degrees (:func:`~torch_geometric.utils.degree`) and edge norms in
  every ``message`` call, then scatter-adds; full U x U and I x I similarity matrices
  for the InfoNCE (dense ``logsumexp``); the feature-mask term under ``no_grad``. It
  is initialised from our model's parameters and must give the same loss (noise and
  dropout off, same batch) before it is timed with the release defaults;
* **GEMM floor**: only the step's dense matrix products, as raw ``torch.mm`` calls
  into preallocated outputs: the seven encoders' MLPs forward and backward, and the
  three N x N x 2d products (forward, two gradients) of the InfoNCE over all users
  and over all items. No implementation of this computation can beat it on a CPU;
* other computations and models, reported separately: ours with ``cl_scope='batch'``
  (InfoNCE over the batch's unique users and items: a different loss), ours with the
  package defaults (feature-mask gradient on), LightGCN and MF-BPR.

Data: the real Baby interactions (19,445 users, 7,050 items, 118,551 train pairs)
with SURROGATE item features of the real widths (4096-d image, 384-d text, from
:func:`pyg_mentor.datasets.surrogate.add_surrogate_features`; no real features exist
offline). Release hyper-parameters: d=64, 2 layers, 1 item-graph layer, k=10,
batch 2048, Adam lr 1e-4.

    python benchmarks/epoch.py            # Baby, median of 5 steps after 1 warm-up
    python benchmarks/epoch.py --quick    # small planted data set, 1 step (smoke test)

Steps are timed round-robin (one step of every method per round), so that load from
other processes hits all methods alike. Epoch seconds = median step x
ceil(train pairs / batch size) (58 on Baby), plus one full evaluation
(``model.scorer()`` + :class:`pyg_mentor.evaluation.Evaluator` on the test split).
Peak memory is the VmHWM of a fresh subprocess per method (data, set-up, two steps,
one evaluation). Writes JSON to ``runs/benchmarks/epoch.json`` and markdown next
to it (``--out benchmarks/results/epoch.json`` updates the committed one).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

if not __package__:  # `python benchmarks/epoch.py`: import the checkout's package
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData

from benchmarks._common import (
    check_out,
    default_out,
    fmt_bytes,
    machine_line,
    out_help,
    save_result,
    status_bytes,
)
from benchmarks.propagation import ReleaseStyleConv as ReleaseGCNConv
from pyg_mentor.config import expand_grid
from pyg_mentor.evaluation import Evaluator
from pyg_mentor.nn.models import MENTOR, MODELS, get_model_spec
from pyg_mentor.typing import ITEM, RATES, USER, feature_key, modalities
from pyg_mentor.utils.sampling import NegativeSampler, train_batches

ROOT = Path(__file__).resolve().parents[1]

#: method -> label; the first group computes the same thing, the second does not.
SAME_COMPUTATION = {
    'ours': 'ours (cl_scope=all)',
    'release': 'release-style',
    'floor': 'GEMM floor',
}
OTHER = {
    'ours_batch': 'ours (cl_scope=batch)',
    'ours_default': 'ours (package defaults)',
    # then every other registered model, with its registered defaults:
    **{name: spec.cls.__name__ for name, spec in MODELS.items() if name != 'mentor'},
}
METHODS = {**SAME_COMPUTATION, **OTHER}

# The release's hyper-parameters (reference section 5), as our model's defaults.
RELEASE = dict(
    embedding_dim=64,
    num_layers=2,
    num_mm_layers=1,
    reg_weight=1e-3,
    dropout=0.5,
    mask_weight=1.5,
    align_weight=0.1,
    cl_weight=1e-3,
    temperature=0.2,
    noise_eps=0.1,
)
# ... and of its item graph (data options, see pyg_mentor.config.DataConfig).
RELEASE_GRAPH = dict(knn_k=10, mm_image_weight=0.1)
LR = 1e-4


# Data #####################################################################################


def load_data(args: argparse.Namespace) -> HeteroData:
    """Baby with surrogate 4096-d / 384-d features, or the small planted set, with
    the release's fused item graph (FAISS, prepared once for every method)."""
    from pyg_mentor.config import DataConfig
    from pyg_mentor.datasets.load import prepare_data

    if args.quick:
        from pyg_mentor.datasets.synthetic import make_planted

        data = make_planted(num_users=300, num_items=150, seed=args.seed)
    else:
        import logging

        from pyg_mentor.datasets.mmrec import MMRecDataset
        from pyg_mentor.datasets.surrogate import add_surrogate_features

        logging.getLogger('pyg_mentor.datasets.surrogate').setLevel(logging.ERROR)
        data = MMRecDataset(str(args.root), 'baby')[0]
        data = add_surrogate_features(data, seed=args.seed)
    return prepare_data(data, DataConfig(**RELEASE_GRAPH), item_graph=True)


def make_batches(data: HeteroData, count: int, batch_size: int, seed: int) -> list[Tensor]:
    """The first ``count`` MMRec training batches of seeded epochs (full batches only)."""
    edge_index = data[RATES].edge_index
    sampler = NegativeSampler(edge_index, data[ITEM].num_nodes)
    gen = torch.Generator().manual_seed(seed)
    batches: list[Tensor] = []
    while len(batches) < count:
        for batch in train_batches(edge_index, sampler, batch_size, gen):
            if batch.size(1) == min(batch_size, edge_index.size(1)):
                batches.append(batch)
            if len(batches) == count:
                break
    return batches


# Release-style re-creation ################################################################


# ReleaseGCNConv: the release's GCN layer (per-edge messages whose symmetric norm is
# recomputed from the degrees in every call, summed by scatter-add), re-created once in
# propagation.py.


class ReleaseBlock(torch.nn.Module):
    """One of the release's seven encoder blocks: user preferences, an MLP on the
    item input, two propagation layers (SimGCL noise after each in the noise blocks)
    and the residual sum, over the symmetric (U + I)-node graph."""

    def __init__(self, num_users: int, in_dim: int, dim: int, noise_eps: float):
        super().__init__()
        self.noise_eps = noise_eps
        self.preference = torch.nn.Parameter(
            torch.nn.init.xavier_normal_(torch.empty(num_users, dim))
        )
        self.mlp = torch.nn.Linear(in_dim, 4 * dim)
        self.mlp_1 = torch.nn.Linear(4 * dim, dim)
        self.conv = ReleaseGCNConv()

    def perturb(self, h: Tensor) -> Tensor:
        if self.noise_eps == 0:
            return h
        noise = torch.rand_like(h)
        return h + torch.sign(h) * F.normalize(noise, dim=-1) * self.noise_eps

    def forward(self, item_input: Tensor, edge_index: Tensor) -> Tensor:
        item = self.mlp_1(F.leaky_relu(self.mlp(item_input), 0.01))
        x = F.normalize(torch.cat([self.preference, item], dim=0), dim=-1)
        h = self.perturb(self.conv(x, edge_index))
        h_1 = self.perturb(self.conv(h, edge_index))
        return x + h + h_1


def release_item_graph(features: Mapping[str, Tensor], k: int, image_weight: float) -> Tensor:
    """The release's item graph: per modality a dense I x I cosine similarity, top-k
    per row, the binary kNN adjacency normalised by its row sums
    (D^-1/2 A D^-1/2), fused 0.1 image + 0.9 text; a sparse COO I x I matrix."""
    graphs = {}
    for name, x in features.items():
        x = x / x.norm(p=2, dim=-1, keepdim=True)
        sim = x @ x.t()
        _, knn = sim.topk(k, dim=-1)
        rows = torch.arange(knn.size(0)).unsqueeze(1).expand(-1, k).reshape(-1)
        index = torch.stack([rows, knn.reshape(-1)])
        adj = torch.sparse_coo_tensor(index, torch.ones(index.size(1)), sim.shape)
        row_sum = 1e-7 + torch.sparse.sum(adj, -1).to_dense()
        inv_sqrt = row_sum.pow(-0.5)
        graphs[name] = torch.sparse_coo_tensor(
            index, inv_sqrt[index[0]] * inv_sqrt[index[1]], sim.shape
        )
    if set(graphs) == {'image', 'text'}:
        fused = image_weight * graphs['image'] + (1 - image_weight) * graphs['text']
    else:
        fused = sum(graphs.values()) / len(graphs)
    return fused.coalesce()


def dense_info_nce(a: Tensor, b: Tensor, tau: float) -> Tensor:
    """InfoNCE with the full similarity matrix, as the release (dense logsumexp)."""
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    pos = (a * b).sum(dim=1) / tau
    return (torch.logsumexp(a @ b.t() / tau, dim=1) - pos).mean()


class ReleaseStyleMENTOR(torch.nn.Module):
    """The released MENTOR's training step, re-created for the benchmark (see the
    module documentation). Two modalities, ``image`` (v) and ``text`` (t)."""

    BLOCKS = ('v', 't', 'id', 'v_n1', 't_n1', 'v_n2', 't_n2')

    def __init__(
        self,
        num_users: int,
        num_items: int,
        edge_index: Tensor,
        features: Mapping[str, Tensor],
        mm_adj: Tensor,
        *,
        embedding_dim: int,
        num_layers: int,
        num_mm_layers: int,
        reg_weight: float,
        dropout: float,
        mask_weight: float,
        align_weight: float,
        cl_weight: float,
        temperature: float,
        noise_eps: float,
        **_: Any,
    ):
        super().__init__()
        if num_layers != 2:
            raise ValueError('the release hard-codes two propagation layers')
        self.num_users, self.num_items = num_users, num_items
        self.num_mm_layers = num_mm_layers
        self.reg_weight, self.dropout, self.mask_weight = reg_weight, dropout, mask_weight
        self.align_weight, self.cl_weight, self.temperature = align_weight, cl_weight, temperature
        user, item = edge_index
        self.edge_index = torch.cat(
            [torch.stack([user, item + num_users]), torch.stack([item + num_users, user])], dim=1
        )
        self.v_feat, self.t_feat = features['image'], features['text']
        self.mm_adj = mm_adj
        d = embedding_dim
        self.item_id = torch.nn.Parameter(torch.nn.init.xavier_normal_(torch.empty(num_items, d)))
        # Seven separate blocks with their own parameters, as released.
        self.v_gcn = ReleaseBlock(num_users, self.v_feat.size(1), d, 0.0)
        self.t_gcn = ReleaseBlock(num_users, self.t_feat.size(1), d, 0.0)
        self.id_gcn = ReleaseBlock(num_users, d, d, 0.0)
        self.v_gcn_n1 = ReleaseBlock(num_users, self.v_feat.size(1), d, noise_eps)
        self.t_gcn_n1 = ReleaseBlock(num_users, self.t_feat.size(1), d, noise_eps)
        self.v_gcn_n2 = ReleaseBlock(num_users, self.v_feat.size(1), d, noise_eps)
        self.t_gcn_n2 = ReleaseBlock(num_users, self.t_feat.size(1), d, noise_eps)
        weight = torch.nn.init.xavier_normal_(torch.empty(num_users, 2))
        self.weight_u = torch.nn.Parameter(weight.softmax(dim=-1))
        self.mask_map = torch.nn.Linear(2 * d, 2 * d)
        self.cached: tuple[Tensor, Tensor] | None = None

    def set_noise(self, noise_eps: float, dropout: float) -> None:
        for name in ('v_gcn_n1', 't_gcn_n1', 'v_gcn_n2', 't_gcn_n2'):
            getattr(self, name).noise_eps = noise_eps
        self.dropout = dropout

    def param_pairs(self, ours: MENTOR) -> list[tuple[str, Tensor, Tensor]]:
        """(name, our parameter, the matching parameter here)."""
        blocks = {'v': 'image', 't': 'text', 'id': 'id'}
        pairs = [
            ('item_id', ours.item_id, self.item_id),
            ('user_modality_weight', ours.user_modality_weight, self.weight_u),
            ('mask_map.weight', ours.mask_map.weight, self.mask_map.weight),
            ('mask_map.bias', ours.mask_map.bias, self.mask_map.bias),
        ]
        for block in self.BLOCKS:
            base, _, suffix = block.partition('_')
            view = blocks[base] + (f'_{suffix}' if suffix else '')
            mine, enc = getattr(self, block.replace(base, f'{base}_gcn', 1)), ours.encoders[view]
            pairs += [
                (f'{view}.preference', enc.preference, mine.preference),
                (f'{view}.mlp.0.weight', enc.mlp[0].weight, mine.mlp.weight),
                (f'{view}.mlp.0.bias', enc.mlp[0].bias, mine.mlp.bias),
                (f'{view}.mlp.2.weight', enc.mlp[2].weight, mine.mlp_1.weight),
                (f'{view}.mlp.2.bias', enc.mlp[2].bias, mine.mlp_1.bias),
            ]
        return pairs

    @torch.no_grad()
    def copy_from(self, ours: MENTOR) -> None:
        pairs = self.param_pairs(ours)
        for name, src, dst in pairs:
            if src.shape != dst.shape:
                raise ValueError(f'{name}: {tuple(src.shape)} vs {tuple(dst.shape)}')
            dst.copy_(src)
        if len(pairs) != len(list(self.parameters())):
            raise RuntimeError('not every parameter was copied')

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x[: self.num_users], x[self.num_users :]

    def enhance(self, item: Tensor) -> Tensor:
        h = item
        for _ in range(self.num_mm_layers):
            h = torch.sparse.mm(self.mm_adj, h)
        return item + h

    def representations(self) -> dict[str, tuple[Tensor, Tensor]]:
        v_u, v_i = self.split(self.v_gcn(self.v_feat, self.edge_index))
        t_u, t_i = self.split(self.t_gcn(self.t_feat, self.edge_index))
        id_u, id_i = self.split(self.id_gcn(self.item_id, self.edge_index))
        v1_u, v1_i = self.split(self.v_gcn_n1(self.v_feat, self.edge_index))
        t1_u, t1_i = self.split(self.t_gcn_n1(self.t_feat, self.edge_index))
        v2_u, v2_i = self.split(self.v_gcn_n2(self.v_feat, self.edge_index))
        t2_u, t2_i = self.split(self.t_gcn_n2(self.t_feat, self.edge_index))
        w0, w1 = self.weight_u[:, 0:1], self.weight_u[:, 1:2]

        def fused(vu: Tensor, tu: Tensor, vi: Tensor, ti: Tensor) -> tuple[Tensor, Tensor]:
            return (torch.cat([w0 * vu, w1 * tu], dim=1), self.enhance(torch.cat([vi, ti], dim=1)))

        return {
            'fused': fused(v_u, t_u, v_i, t_i),
            'guide': (torch.cat([id_u, id_u], 1), self.enhance(torch.cat([id_i, id_i], 1))),
            'visual': (torch.cat([v_u, v_u], 1), self.enhance(torch.cat([v_i, v_i], 1))),
            'textual': (torch.cat([t_u, t_u], 1), self.enhance(torch.cat([t_i, t_i], 1))),
            'noise1': fused(v1_u, t1_u, v1_i, t1_i),
            'noise2': fused(v2_u, t2_u, v2_i, t2_i),
        }

    def loss(self, batch: Tensor) -> dict[str, Tensor]:
        users, pos, neg = batch
        reps = self.representations()
        user, item = reps['fused']
        self.cached = (user.detach(), item.detach())  # what the release evaluates
        u = user[users]
        pos_score, neg_score = (u * item[pos]).sum(-1), (u * item[neg]).sum(-1)
        bpr = -torch.log2(torch.sigmoid(pos_score - neg_score)).mean()
        reg = self.reg_weight * (
            (self.v_gcn.preference[users] ** 2).mean()
            + (self.t_gcn.preference[users] ** 2).mean()
            + (self.weight_u**2).mean()
        )
        full = {k: torch.cat(reps[k], dim=0) for k in ('guide', 'fused', 'visual', 'textual')}
        stats = {k: (torch.var(x), torch.mean(x)) for k, x in full.items()}
        align = self.align_weight * sum(
            (stats[a][0] - stats[b][0]).abs() + (stats[a][1] - stats[b][1]).abs()
            for a, b in itertools.combinations(full, 2)
        )
        with torch.no_grad():
            mask = self.mask_weight * sum(
                1
                - F.cosine_similarity(
                    F.dropout(x, self.dropout, self.training), self.mask_map(x), dim=-1
                ).mean()
                for x in (user, item)
            )
        (u1, i1), (u2, i2) = reps['noise1'], reps['noise2']
        cl = self.cl_weight * (
            dense_info_nce(u1, u2, self.temperature) + dense_info_nce(i1, i2, self.temperature)
        )
        total = bpr + reg + align + mask + cl
        return {'loss': total, 'bpr': bpr, 'reg': reg, 'align': align, 'mask': mask, 'cl': cl}

    def scorer(self) -> Callable[[Tensor], Tensor]:
        """The release scores the embeddings cached by the last training forward."""
        if self.cached is None:
            raise RuntimeError('no training forward yet')
        user, item = self.cached
        return lambda users: user[users] @ item.t()


def features_of(data: HeteroData) -> dict[str, Tensor]:
    return {m: data[ITEM][feature_key(m)] for m in modalities(data)}


def build_release(data: HeteroData) -> ReleaseStyleMENTOR:
    """Set-up as released: the dense similarity graph, then the model."""
    features = features_of(data)
    mm_adj = release_item_graph(features, RELEASE_GRAPH['knn_k'], RELEASE_GRAPH['mm_image_weight'])
    return ReleaseStyleMENTOR(
        data[USER].num_nodes,
        data[ITEM].num_nodes,
        data[RATES].edge_index,
        features,
        mm_adj,
        **RELEASE,
    )


# GEMM floor ###############################################################################


class GemmFloor:
    """The dense matrix products of one MENTOR step, as raw ``torch.mm`` calls into
    preallocated outputs (inputs random; values do not matter for the time)."""

    def __init__(
        self, num_users: int, num_items: int, feature_dims: Mapping[str, int], dim: int, seed: int
    ):
        gen = torch.Generator().manual_seed(seed)

        def randn(*shape: int) -> Tensor:
            return torch.randn(*shape, generator=gen)

        self.calls: list[tuple[str, Tensor, Tensor, Tensor]] = []
        hidden = 4 * dim
        # (block, item input width, gradient w.r.t. the input): the ID block's input
        # is the trainable item ID matrix; each modality has a main and 2 noise blocks.
        blocks = [('id', dim, True)] + [
            (f'{m}{s}', d, False) for m, d in feature_dims.items() for s in ('', '_n1', '_n2')
        ]
        inputs = {d: randn(num_items, d) for _, d, _ in blocks}
        h, z, dz, dh = (
            randn(num_items, hidden),
            randn(num_items, dim),
            randn(num_items, dim),
            randn(num_items, hidden),
        )
        w2, gw2 = randn(dim, hidden), torch.empty(dim, hidden)
        for name, d, grad_input in blocks:
            x, w1, gw1 = inputs[d], randn(hidden, d), torch.empty(hidden, d)
            self.calls += [
                (f'mlp {name}', x, w1.t(), h),  # forward, layer 1
                (f'mlp {name}', h, w2.t(), z),  # forward, layer 2
                (f'mlp {name}', dz.t(), h, gw2),  # grad W2
                (f'mlp {name}', dz, w2, dh),  # grad of the hidden layer
                (f'mlp {name}', dh.t(), x, gw1),  # grad W1
            ]
            if grad_input:
                self.calls.append((f'mlp {name}', dh, w1, torch.empty(num_items, d)))
        self.sims: list[Tensor] = []
        for name, n in (('users', num_users), ('items', num_items)):
            # small entries: exp of the similarities stays finite (see exp_step)
            a, b = 0.05 * randn(n, 2 * dim), 0.05 * randn(n, 2 * dim)
            sim, ga, gb = torch.empty(n, n), torch.empty(n, 2 * dim), torch.empty(n, 2 * dim)
            self.sims.append(sim)
            self.calls += [
                (f'info_nce {name}', a, b.t(), sim),  # similarities
                (f'info_nce {name}', sim, b, ga),  # grad of view 1
                (f'info_nce {name}', sim.t(), a, gb),
            ]  # grad of view 2

    def step(self) -> dict[str, float]:
        """Runs every product once; seconds per group (MLPs, InfoNCE users/items)."""
        seconds: dict[str, float] = {}
        for name, a, b, out in self.calls:
            start = time.perf_counter()
            torch.mm(a, b, out=out)
            group = 'mlp' if name.startswith('mlp') else name
            seconds[group] = seconds.get(group, 0.0) + time.perf_counter() - start
        return seconds

    def exp_step(self) -> float:
        """Seconds of the InfoNCE's non-GEMM work that no implementation can
        skip either: exp of every N x N similarity and its row sums (in place,
        on the similarities of the last :meth:`step`; not part of the floor)."""
        start = time.perf_counter()
        for sim in self.sims:
            sim.exp_()
            sim.sum(dim=1)
        return time.perf_counter() - start

    def flops(self) -> float:
        return sum(2.0 * a.size(0) * a.size(1) * b.size(1) for _, a, b, _ in self.calls)


# Methods ##################################################################################


class Method:
    """A benchmarked method: its set-up time, a training step and an evaluation."""

    def __init__(
        self,
        name: str,
        data: HeteroData,
        batches: Sequence[Tensor],
        evaluator: Evaluator | None,
        seed: int,
    ):
        self.name, self.evaluator, self.data = name, evaluator, data
        self.batches = itertools.cycle(batches)
        self.model: Any = None
        self.floor: GemmFloor | None = None
        self.optimizers: list[torch.optim.Optimizer] = []
        self.last_loss: float | None = None
        self.floor_groups: list[dict[str, float]] = []
        torch.manual_seed(seed)
        start = time.perf_counter()
        if name == 'floor':
            dims = {m: x.size(1) for m, x in features_of(data).items()}
            self.floor = GemmFloor(
                data[USER].num_nodes, data[ITEM].num_nodes, dims, RELEASE['embedding_dim'], seed
            )
        elif name == 'release':
            self.model = build_release(data)
        elif name in ('ours', 'ours_batch', 'ours_default'):
            options = dict(RELEASE)
            if name != 'ours_default':
                options['feature_mask_grad'] = False
            options['cl_scope'] = 'batch' if name == 'ours_batch' else 'all'
            self.model = MENTOR.from_data(data, **options)
        elif name in MODELS:
            # The registered defaults (the first point of a grid: timing does not
            # depend on the values searched).
            spec = get_model_spec(name)
            kwargs = expand_grid(spec.cls, {})[0].model_kwargs
            self.model = spec.cls.from_data(data, **kwargs)
        else:
            raise ValueError(f'unknown method {name!r}')
        self.setup_s = time.perf_counter() - start
        if isinstance(self.model, ReleaseStyleMENTOR):
            self.optimizers = [torch.optim.Adam(self.model.parameters(), lr=LR)]
        elif self.model is not None:  # the trainer's optimisers (MMSSL: + its D's)
            self.optimizers = self.model.configure_optimizers(LR)
        if self.model is not None:
            self.model.train()

    def step(self) -> None:
        if self.floor is not None:
            self.floor_groups.append(self.floor.step())
            return
        batch = next(self.batches)
        if isinstance(self.model, ReleaseStyleMENTOR):
            optimizer = self.optimizers[0]
            optimizer.zero_grad(set_to_none=True)
            loss = self.model.loss(batch)['loss']
            loss.backward()
            optimizer.step()
        else:  # the trainer's step (MMSSL: + its D step)
            loss = self.model.train_step(self.data, batch, self.optimizers)['loss']
        self.last_loss = float(loss.detach())

    def evaluate(self) -> dict[str, float] | None:
        if self.model is None or self.evaluator is None:
            return None
        if isinstance(self.model, ReleaseStyleMENTOR):
            return self.evaluator.evaluate(self.model.scorer())
        self.model.eval()
        try:
            return self.evaluator.evaluate(self.model.scorer(self.data))
        finally:
            self.model.train()


# Agreement of ours and the release-style re-creation ######################################


def check_agreement(
    ours: MENTOR, release: ReleaseStyleMENTOR, data: HeteroData, batch: Tensor
) -> dict[str, Any]:
    """Same parameters, noise and dropout off, one batch: the loss terms and the
    gradients of both, and the difference of their item graphs. Leaves ``release``
    with the release defaults (noise 0.1, dropout 0.5) and no gradients."""
    check = MENTOR.from_data(
        data,
        **{**RELEASE, 'noise_eps': 0.0, 'dropout': 0.0},
        cl_scope='all',
        feature_mask_grad=False,
    )
    check.load_state_dict(ours.state_dict())
    release.copy_from(check)
    release.set_noise(0.0, 0.0)
    check.train()
    release.train()
    terms_ours, terms_release = check.loss(data, batch), release.loss(batch)
    terms_ours['loss'].backward()
    terms_release['loss'].backward()
    terms = {}
    for key, value in terms_ours.items():
        a, b = float(value.detach()), float(terms_release[key].detach())
        terms[key] = dict(ours=a, release=b, rel_diff=abs(a - b) / max(abs(b), 1e-30))
    grad_diff = {}
    for name, p_ours, p_release in release.param_pairs(check):
        if p_release.grad is None and p_ours.grad is None:
            continue
        g_o = torch.zeros_like(p_ours) if p_ours.grad is None else p_ours.grad
        g_r = torch.zeros_like(p_release) if p_release.grad is None else p_release.grad
        scale = g_r.abs().max().clamp(min=1e-30)
        grad_diff[name] = float((g_o - g_r).abs().max() / scale)
    release.zero_grad(set_to_none=True)
    release.copy_from(ours)
    release.set_noise(RELEASE['noise_eps'], RELEASE['dropout'])
    # The two item graphs, as I x I matrices.
    size = (data[ITEM].num_nodes,) * 2
    graph = data[ITEM, 'similar', ITEM]
    src, dst = graph.edge_index
    graph_ours = torch.sparse_coo_tensor(torch.stack([dst, src]), graph.edge_weight, size)
    diff = (graph_ours.coalesce() - release.mm_adj).coalesce().values().abs()
    return dict(
        terms=terms,
        loss_rel_diff=terms['loss']['rel_diff'],
        grad_max_rel_diff=max(grad_diff.values()),
        grad_rel_diff=grad_diff,
        item_graph_max_abs_diff=float(diff.max()) if diff.numel() else 0.0,
        item_graph_entries_differing=int((diff > 1e-6).sum()),
        item_graph_nnz=int(release.mm_adj._nnz()),
    )


# Memory: one fresh process per method ####################################################


def probe(method: str, args: argparse.Namespace) -> dict[str, int]:
    """In a fresh process: data, set-up, two steps and one evaluation of a method."""
    data = load_data(args)
    rss_data = status_bytes('VmRSS:')
    evaluator = Evaluator(data, 'test')
    run = Method(
        method, data, make_batches(data, 2, args.batch_size, args.seed), evaluator, args.seed
    )
    run.step()
    run.step()
    run.evaluate()
    return dict(peak_bytes=status_bytes('VmHWM:'), data_rss_bytes=rss_data)


def measure_memory(method: str, flags: Sequence[str] = ()) -> dict[str, int] | None:
    """Peak RSS (VmHWM) of :func:`probe` in a fresh subprocess; ``None`` off Linux."""
    if not os.path.exists('/proc/self/status'):
        return None
    out = subprocess.run(
        [sys.executable, __file__, '--probe', method, *flags],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# Main #####################################################################################


def fmt_s(x: float | None) -> str:
    if x is None:
        return 'n/a'
    return f'{x:.2f}' if x >= 0.1 else f'{x * 1e3:.1f} ms'


def fmt_ratio(x: float | None) -> str:
    return 'n/a' if x is None else f'{x:.2f}x'


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--root', type=Path, default=ROOT / 'datasets', help='folder holding baby/baby.inter(.gz)'
    )
    parser.add_argument('--steps', type=int, default=5, help='timed steps per method')
    parser.add_argument('--warmup', type=int, default=1, help='untimed steps per method')
    parser.add_argument('--eval-repeat', type=int, default=3)
    parser.add_argument('--batch-size', type=int, default=2048)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--threads', type=int, default=None, help='torch threads (default: leave as is)'
    )
    parser.add_argument('--methods', nargs='+', choices=list(METHODS), default=list(METHODS))
    parser.add_argument(
        '--memory',
        action=argparse.BooleanOptionalAction,
        default=None,
        help='measure the peak RSS, one subprocess per method (default: on, off with --quick)',
    )
    parser.add_argument(
        '--quick', action='store_true', help='planted 300 users x 150 items, 1 step (smoke test)'
    )
    parser.add_argument('--out', type=Path, default=default_out('epoch'), help=out_help('epoch'))
    parser.add_argument('--probe', choices=list(METHODS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    check_out(args.out, args.quick)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.steps, args.warmup, args.eval_repeat = 1, 1, 1
    forwarded = (
        ['--seed', str(args.seed), '--batch-size', str(args.batch_size), '--root', str(args.root)]
        + (['--quick'] if args.quick else [])
        + (['--threads', str(args.threads)] if args.threads is not None else [])
    )
    if args.probe:  # child process of measure_memory
        print(json.dumps(probe(args.probe, args)))
        return {}
    measure = (not args.quick) if args.memory is None else args.memory
    command = 'python benchmarks/epoch.py ' + ' '.join(sys.argv[1:] if argv is None else list(argv))
    wall_start = time.perf_counter()

    data = load_data(args)
    num_users, num_items = data[USER].num_nodes, data[ITEM].num_nodes
    num_train = data[RATES].edge_index.size(1)
    num_batches = math.ceil(num_train / args.batch_size)
    feature_dims = {m: x.size(1) for m, x in features_of(data).items()}
    rounds = args.warmup + args.steps
    batches = make_batches(data, rounds, args.batch_size, args.seed)
    start = time.perf_counter()
    evaluator = Evaluator(data, 'test')
    evaluator_setup_s = time.perf_counter() - start

    # Set-up of every method (timed), then the agreement check.
    names = [m for m in METHODS if m in args.methods]
    runs = {name: Method(name, data, batches, evaluator, args.seed) for name in names}
    check = None
    if 'release' in runs:
        ours = (
            runs['ours'].model
            if 'ours' in runs
            else Method('ours', data, batches, None, args.seed).model
        )
        check = check_agreement(ours, runs['release'].model, data, batches[0])
        if not check['loss_rel_diff'] < 1e-4:
            raise RuntimeError(f'release-style and ours disagree: {check["terms"]}')

    # Warm-up, then timed steps, round-robin over the methods.
    times: dict[str, list[float]] = {name: [] for name in runs}
    exp_times: list[float] = []
    for r in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run.step()
            if r >= args.warmup:
                times[name].append(time.perf_counter() - start)
                if run.floor is not None:
                    exp_times.append(run.floor.exp_step())
    eval_times: dict[str, list[float]] = {}
    metrics: dict[str, dict[str, float] | None] = {}
    for _ in range(args.eval_repeat):
        for name, run in runs.items():
            start = time.perf_counter()
            metrics[name] = run.evaluate()
            if metrics[name] is not None:
                eval_times.setdefault(name, []).append(time.perf_counter() - start)
    memory = {name: measure_memory(name, forwarded) if measure else None for name in runs}

    # Rows and ratios.
    rows = []
    for name, run in runs.items():
        step_s = statistics.median(times[name])
        eval_s = statistics.median(eval_times[name]) if name in eval_times else None
        row = dict(
            method=name,
            label=METHODS[name],
            setup_s=run.setup_s,
            step_times_s=times[name],
            step_s=step_s,
            min_step_s=min(times[name]),
            epoch_train_s=step_s * num_batches,
            eval_times_s=eval_times.get(name),
            eval_s=eval_s,
            epoch_s=step_s * num_batches + (eval_s or 0.0),
            last_loss=run.last_loss,
            memory=memory[name],
            peak_bytes=(memory[name] or {}).get('peak_bytes'),
        )
        if run.floor is not None:
            row['floor_groups_s'] = {
                key: statistics.median(g[key] for g in run.floor_groups[args.warmup :])
                for key in run.floor_groups[0]
            }
            row['floor_gflop'] = run.floor.flops() / 1e9
            row['floor_exp_s'] = statistics.median(exp_times)
        rows.append(row)
    by_name = {row['method']: row for row in rows}
    floor_s = by_name['floor']['step_s'] if 'floor' in by_name else None
    release_row = by_name.get('release')
    for row in rows:
        row['step_vs_floor'] = row['step_s'] / floor_s if floor_s else None
        row['speedup_vs_release'] = release_row['step_s'] / row['step_s'] if release_row else None
        row['memory_vs_release'] = (
            row['peak_bytes'] / release_row['peak_bytes']
            if release_row and row['peak_bytes'] and release_row['peak_bytes']
            else None
        )
    run_time_s = time.perf_counter() - wall_start

    # Markdown.
    shape = (
        f'{num_users:,} users x {num_items:,} items, {num_train:,} train pairs, '
        f'features {" + ".join(f"{m} {d}" for m, d in feature_dims.items())}'
    )
    data_name = (
        'planted (quick)'
        if args.quick
        else 'Baby (real interactions, SURROGATE features of the real widths)'
    )
    header = [  # of both tables
        '| method | set-up s | step s | min step s | step / floor | speed-up vs release-style | '
        f'epoch s ({num_batches} steps) | eval s | epoch + eval s | peak RSS | '
        'RSS / release-style |',
        '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ]
    lines = [
        '# MENTOR training step and epoch',
        '',
        f'Command: `{command.strip()}`; run time {run_time_s:.0f} s; {machine_line()}.',
        '',
        f'{data_name}: {shape}. d=64, 2 layers, 1 item-graph layer, k=10, batch '
        f'{args.batch_size}, Adam lr {LR:g}; step = loss + backward + Adam step, median of '
        f'{args.steps} after {args.warmup} warm-up (round-robin over the methods; ratios are '
        f'of medians); epoch = '
        f'{num_batches} steps (+ one test evaluation); peak RSS = VmHWM of a fresh process '
        '(data, set-up, 2 steps, 1 evaluation).',
        '',
        '## The same computation',
        '',
        *header,
    ]

    def table_row(row: dict) -> str:
        setup = 'n/a' if row['method'] == 'floor' else fmt_s(row['setup_s'])
        return (
            f'| {row["label"]} | {setup} | {fmt_s(row["step_s"])} | '
            f'{fmt_s(row["min_step_s"])} | '
            f'{fmt_ratio(row["step_vs_floor"])} | {fmt_ratio(row["speedup_vs_release"])} | '
            f'{fmt_s(row["epoch_train_s"])} | {fmt_s(row["eval_s"])} | '
            f'{fmt_s(row["epoch_s"])} | {fmt_bytes(row["peak_bytes"])} | '
            f'{fmt_ratio(row["memory_vs_release"])} |'
        )

    lines += [table_row(row) for row in rows if row['method'] in SAME_COMPUTATION]
    others = [row for row in rows if row['method'] in OTHER]
    if others:
        lines += [
            '',
            '## Other computations and models (not the same loss: ratios for scale only)',
            '',
            *header,
        ]
        lines += [table_row(row) for row in others]
    if 'floor' in by_name:
        floor = by_name['floor']
        groups = floor['floor_groups_s']
        lines += [
            '',
            f'GEMM floor ({floor["floor_gflop"]:,.0f} GFLOP per step): '
            + ', '.join(f'{k} {v:.2f} s' for k, v in groups.items())
            + '.',
        ]
        if 'ours' in by_name:
            full = floor['step_s'] + floor['floor_exp_s']
            lines += [
                '',
                f'Not in the floor, but needed by any exact implementation: exp and row sums '
                f'of the N x N InfoNCE similarities (users and items), '
                f'{floor["floor_exp_s"]:.2f} s; GEMM floor + that = {full:.2f} s per step, '
                f'ours (cl_scope=all) / that = {by_name["ours"]["step_s"] / full:.2f}x.',
            ]
    if check is not None:
        lines += [
            '',
            '## Agreement (same parameters, noise and dropout off, same batch)',
            '',
            '| term | ours | release-style | rel. diff |',
            '|---|---:|---:|---:|',
        ]
        lines += [
            f'| {k} | {v["ours"]:.7g} | {v["release"]:.7g} | {v["rel_diff"]:.1e} |'
            for k, v in check['terms'].items()
        ]
        lines += [
            '',
            f'Gradients: max rel. diff {check["grad_max_rel_diff"]:.1e} over '
            f'{len(check["grad_rel_diff"])} parameters. Item graphs (FAISS vs dense '
            f'topk): {check["item_graph_entries_differing"]} of '
            f'{check["item_graph_nnz"]:,} entries differ (max |diff| '
            f'{check["item_graph_max_abs_diff"]:.1e}).',
        ]
    text = '\n'.join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix('.md').write_text(text + '\n')

    result = save_result(
        args.out, 'epoch',
        command=command.strip(), run_time_s=run_time_s, quick=args.quick,
        data=data_name,
        shape=dict(users=num_users, items=num_items, train_pairs=num_train,
                   features=feature_dims),
        batch_size=args.batch_size, batches_per_epoch=num_batches, steps=args.steps,
        warmup=args.warmup, eval_repeat=args.eval_repeat, lr=LR, hyper_parameters=RELEASE,
        evaluator_setup_s=evaluator_setup_s,
        rows=rows, check=check,
        metrics={name: m for name, m in metrics.items() if m is not None},
    )  # fmt: skip
    return result


if __name__ == '__main__':
    main()

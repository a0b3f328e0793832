r"""The two parts of :class:`~pyg_mentor.nn.models.MMSSL` besides the
recommender itself: its :class:`Discriminator` and the state of its generated
(modality-aware) user-item graphs, :class:`GeneratedGraphs`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch_geometric.utils import coalesce


class Discriminator(torch.nn.Module):
    r"""MMSSL's discriminator on user-item score rows :obj:`[N, I]`.

    .. math::
        D(\mathbf{x}) = 100 \cdot \sigma\big(\mathbf{W}_3\,
        \mathrm{Drop}_{p_2}(\mathrm{BN}(\phi(\mathbf{W}_2\,
        \mathrm{Drop}_{p_1}(\mathrm{BN}(\phi(\mathbf{W}_1 \mathbf{x}))))))\big)

    with widths :math:`I \to I/4 \to I/8 \to 1`, :math:`\phi` a LeakyReLU,
    Kaiming-normal weights and zero biases.

    Args:
        num_items (int): Input width :math:`I`.
        dropout (tuple[float, float]): :math:`(p_1, p_2)`.
            (default: :obj:`(0.31, 0.5)`)
        negative_slope (float): Slope of :math:`\phi`; the release's
            ``LeakyReLU(True)`` passes :obj:`True` as the slope, i.e. 1 (the
            identity). (default: :obj:`0.01`)

    Shapes:
        - **input:** :math:`(N, I)`
        - **output:** :math:`(N)`, in :math:`(0, 100)`
    """

    def __init__(
        self,
        num_items: int,
        dropout: tuple[float, float] = (0.31, 0.5),
        negative_slope: float = 0.01,
    ):
        super().__init__()
        h1, h2 = max(num_items // 4, 1), max(num_items // 8, 1)
        self.negative_slope = negative_slope
        self.net = torch.nn.Sequential(
            torch.nn.Linear(num_items, h1),
            torch.nn.LeakyReLU(negative_slope),
            torch.nn.BatchNorm1d(h1),
            torch.nn.Dropout(dropout[0]),
            torch.nn.Linear(h1, h2),
            torch.nn.LeakyReLU(negative_slope),
            torch.nn.BatchNorm1d(h2),
            torch.nn.Dropout(dropout[1]),
            torch.nn.Linear(h2, 1),
        )
        self.reset_parameters()

    def reset_parameters(self):
        for layer in self.net:
            if isinstance(layer, torch.nn.Linear):
                torch.nn.init.kaiming_normal_(layer.weight)
                torch.nn.init.zeros_(layer.bias)
            elif isinstance(layer, torch.nn.BatchNorm1d):
                layer.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        return 100 * torch.sigmoid(self.net(x)).view(-1)


class GeneratedGraph(torch.nn.Module):
    r"""One modality's generated user-item graph and what it is built from,
    as buffers (:meth:`to` moves them, :meth:`state_dict` carries them).

    Buffers:
        edge_index: The graph's coalesced (user, item) pairs :obj:`[2, E]`.
        weight: Their multiplicities :obj:`[E]` (floating point).
        memory: Every user's top-:math:`k` items :obj:`[U, k]` (the fixed
            schedule; :obj:`[U, 0]` otherwise).
        pending: (user, item) pairs accumulated since the last rebuild
            :obj:`[2, P]` (the release's schedule).

    Their sizes change during training; :meth:`load_state_dict` takes the
    saved ones.
    """

    def __init__(self, num_users: int):
        super().__init__()
        self.num_users = num_users
        self.register_buffer('edge_index', torch.empty(2, 0, dtype=torch.long))
        self.register_buffer('weight', torch.empty(0))
        self.register_buffer('memory', torch.empty(num_users, 0, dtype=torch.long))
        self.register_buffer('pending', torch.empty(2, 0, dtype=torch.long))

    def reset(self) -> None:
        r"""Empties the graph, the memory and the pending pairs."""
        self.edge_index = self.edge_index.new_empty(2, 0)
        self.weight = self.weight.new_empty(0)
        self.memory = self.memory.new_empty(self.num_users, 0)
        self.pending = self.pending.new_empty(2, 0)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Resize to the saved shapes (device and dtype stay the module's).
        for name, buf in self._buffers.items():
            saved = state_dict.get(prefix + name)
            if buf is not None and isinstance(saved, Tensor) and saved.shape != buf.shape:
                self._buffers[name] = buf.new_empty(saved.shape)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def __repr__(self) -> str:
        return (
            f'{self.__class__.__name__}(num_edges={self.edge_index.size(1)}, '
            f'k={self.memory.size(1)}, pending={self.pending.size(1)})'
        )


class GeneratedGraphs(torch.nn.Module):
    r"""The state of MMSSL's generated (modality-aware) user-item graphs
    :math:`\mathbf{G}_m`, one :class:`GeneratedGraph` per modality, and the
    schedule that updates them from the score rows
    :math:`\mathbf{Q}^m` :obj:`[B, I]` of a training batch's users.

    Fixed schedule (default): every user keeps its top-:math:`k` items in a
    memory (:meth:`refresh` fills it for all users); after every batch the
    batch users' rows are replaced, and every :obj:`period` batches the memory
    becomes the graph (:math:`U k` edges).

    The release's schedule (:obj:`release_schedule=True`, reference A.4.1,
    A.4.4): the graphs start as the training graph (:meth:`start_from`); on
    batch :obj:`idx` of an epoch with :obj:`idx % period != 0 or idx == 0`
    the batch users' top-:math:`k` pairs are accumulated, otherwise the graph
    is rebuilt from the accumulated pairs only (possibly none) and they are
    cleared. Duplicate pairs add up.

    The state is buffers (moved by :meth:`to`, carried by :meth:`state_dict`)
    and three counters in the extra state (:attr:`initialized`,
    :attr:`epoch_batch`, :attr:`num_steps`).

    Args:
        modalities (Sequence[str]): The modality names.
        num_users (int): Number of users :math:`U`.
        num_items (int): Number of items :math:`I`.
        topk (int): :math:`k`, items per user and batch (:obj:`0` gives
            empty graphs, the release on Baby).
        period (int): :math:`T`, batches between rebuilds. (default: :obj:`1`)
        release_schedule (bool): The release's schedule. (default: :obj:`False`)
        release_pairing (bool): The release's pairing of the tiled user list
            with the row-major top-:math:`k` matrix (scrambled for
            :math:`k > 1`). (default: :obj:`False`)
    """

    def __init__(
        self,
        modalities: Sequence[str],
        num_users: int,
        num_items: int,
        topk: int,
        period: int = 1,
        release_schedule: bool = False,
        release_pairing: bool = False,
    ):
        super().__init__()
        if period < 1:
            raise ValueError(f'period must be >= 1, got {period}')
        self.modalities = list(modalities)
        self.num_users = num_users
        self.num_items = num_items
        self.topk = topk
        self.period = period
        self.release_schedule = release_schedule
        self.release_pairing = release_pairing
        self.graphs = torch.nn.ModuleDict({m: GeneratedGraph(num_users) for m in self.modalities})
        self.reset()

    def reset(self) -> None:
        r"""Empties every graph; :attr:`initialized` becomes :obj:`False`."""
        for graph in self.graphs.values():
            graph.reset()
        #: Whether the graphs were set up (:meth:`refresh` / :meth:`start_from`).
        self.initialized = False
        #: The release's schedule: the batch index in the epoch.
        self.epoch_batch = 0
        #: The fixed schedule: batches since the start.
        self.num_steps = 0

    def graph(self, modality: str) -> tuple[Tensor, Tensor]:
        r"""The current graph of a modality: coalesced (user, item) pairs
        :obj:`[2, E]` and their multiplicities :obj:`[E]`."""
        graph = self.graphs[modality]
        return graph.edge_index, graph.weight

    def topk_items(self, scores: Tensor) -> Tensor:
        r"""Each row's top-:math:`k` items :obj:`[B, k]` of :obj:`scores`
        :obj:`[B, I]`; with :obj:`release_pairing`, the items the release
        pairs with each row's user instead."""
        top = scores.topk(min(self.topk, self.num_items), dim=1).indices
        if self.release_pairing and top.size(1) > 1:
            # The release pairs tile(users, k) with the row-major top-k: pair j
            # is (users[j mod B], top.flatten()[j]), i.e. user b gets
            # top.flatten()[b + B c], c < k.
            top = top.flatten().view(top.size(1), top.size(0)).t()
        return top

    def _install(self, modality: str, edge_index: Tensor) -> None:
        r"""Makes (user, item) pairs (duplicates summed) the graph of a
        modality."""
        graph = self.graphs[modality]
        edge_index = edge_index.to(graph.edge_index.device)
        weight = torch.ones(
            edge_index.size(1), dtype=graph.weight.dtype, device=graph.weight.device
        )
        if edge_index.numel() > 0:
            edge_index, weight = coalesce(
                edge_index, weight, reduce='sum', num_nodes=max(self.num_users, self.num_items)
            )
        graph.edge_index, graph.weight = edge_index, weight

    def _install_memory(self, modality: str) -> None:
        top = self.graphs[modality].memory
        users = torch.arange(self.num_users, device=top.device)
        self._install(modality, torch.stack([users.repeat_interleave(top.size(1)), top.flatten()]))

    def start_from(self, edge_index: Tensor) -> None:
        r"""The release's start: every graph is the training graph
        :obj:`edge_index` :obj:`[2, E]` (release schedule only)."""
        if not self.release_schedule:
            raise RuntimeError(
                'start_from() is the release schedule; the fixed one starts from refresh()'
            )
        self.reset()
        for m in self.modalities:
            self._install(m, edge_index)
        self.initialized = True

    def refresh(self, top: Mapping[str, Tensor]) -> None:
        r"""Sets every user's top-:math:`k` items :obj:`[U, k]` per modality
        (from :meth:`topk_items`) and installs the graphs (fixed schedule
        only)."""
        if self.release_schedule:
            raise RuntimeError('refresh() is not part of the release schedule')
        for m in self.modalities:
            if top[m].shape != (self.num_users, min(self.topk, self.num_items)):
                raise ValueError(
                    f"The top-k items of '{m}' must be "
                    f'[{self.num_users}, {self.topk}], got {list(top[m].shape)}'
                )
            graph = self.graphs[m]
            graph.memory = top[m].to(graph.memory.device)
            self._install_memory(m)
        self.initialized = True

    def start_epoch(self) -> None:
        r"""Called before every training epoch (the release's batch index)."""
        self.epoch_batch = 0

    @torch.no_grad()
    def update(self, users: Tensor, scores: Mapping[str, Tensor]) -> None:
        r"""Updates the graphs after a training batch.

        Args:
            users (torch.Tensor): The batch's distinct users :obj:`[B]`.
            scores (Mapping[str, torch.Tensor]): Per modality, the masked
                feature-branch scores :math:`\mathbf{Q}^m` :obj:`[B, I]`.
        """
        if not self.initialized:
            raise RuntimeError(
                'The generated graphs are not set up: run a forward '
                'pass or MMSSL.reset_generated_graphs(data) first'
            )
        if not self.release_schedule:
            for m in self.modalities:
                self.graphs[m].memory[users] = self.topk_items(scores[m])
            self.num_steps += 1
            if self.num_steps % self.period == 0:
                for m in self.modalities:
                    self._install_memory(m)
            return
        # The release: accumulate on batches idx % T != 0 or idx == 0, else
        # rebuild from the accumulated pairs only (possibly none).
        idx = self.epoch_batch
        self.epoch_batch += 1
        for m in self.modalities:
            graph = self.graphs[m]
            if idx % self.period != 0 or idx == 0:
                if self.topk > 0:
                    top = self.topk_items(scores[m])
                    pairs = torch.stack([users.repeat_interleave(top.size(1)), top.flatten()]).to(
                        graph.pending.device
                    )
                    graph.pending = torch.cat([graph.pending, pairs], dim=1)
            else:
                self._install(m, graph.pending)
                graph.pending = graph.pending.new_empty(2, 0)

    def get_extra_state(self) -> dict[str, Any]:
        return {
            'initialized': self.initialized,
            'epoch_batch': self.epoch_batch,
            'num_steps': self.num_steps,
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.initialized = bool(state['initialized'])
        self.epoch_batch = int(state['epoch_batch'])
        self.num_steps = int(state['num_steps'])

    def __repr__(self) -> str:
        schedule = 'release' if self.release_schedule else 'fixed'
        return (
            f'{self.__class__.__name__}(modalities={self.modalities}, '
            f'topk={self.topk}, period={self.period}, schedule={schedule}'
            f'{", release_pairing=True" if self.release_pairing else ""})'
        )

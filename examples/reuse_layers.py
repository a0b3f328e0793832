"""Reuse pyg_mentor's layers in your own PyG model.

A LightGCN variant whose every layer is ONE `HeteroConv` over three edge types:
user -> item and item -> user interactions (`BipartiteLightConv`) and the FAISS kNN
item-item graph built from the item features (`ItemGraphConv`), so items also receive
messages from their semantic neighbours. It is trained with the package's `Trainer`
(MMRec protocol) next to plain LightGCN, on planted synthetic data whose features carry
real signal.

    python examples/reuse_layers.py --epochs 20
"""

from __future__ import annotations

import argparse

import torch
import torch_geometric.transforms as T
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.nn import HeteroConv

from pyg_mentor.config import TrainConfig
from pyg_mentor.datasets import make_planted
from pyg_mentor.evaluation import format_metrics_table
from pyg_mentor.nn.conv import BipartiteLightConv, ItemGraphConv
from pyg_mentor.nn.functional import bpr_loss
from pyg_mentor.nn.models import LightGCN, Recommender
from pyg_mentor.train import Trainer, seed_everything
from pyg_mentor.transforms import FuseItemGraphs, ModalityKNNGraph

SIMILAR = ('item', 'similar', 'item')


class SemanticLightGCN(Recommender):
    r"""LightGCN whose layers also propagate over the fused item graph:
    :math:`\mathbf{E}^{(l+1)}_I = \hat{\mathbf{A}}_{IU}\mathbf{E}^{(l)}_U
    + \mathbf{S}\mathbf{E}^{(l)}_I`, with :math:`\mathbf{S}` the weighted
    :obj:`('item', 'similar', 'item')` edges of the graph it is given."""

    def __init__(self, num_users: int, num_items: int, dim: int = 64, num_layers: int = 2):
        super().__init__(num_users, num_items)
        self.num_layers = num_layers
        self.emb = torch.nn.ParameterDict(
            {
                'user': torch.nn.Parameter(torch.empty(num_users, dim)),
                'item': torch.nn.Parameter(torch.empty(num_items, dim)),
            }
        )
        for p in self.emb.values():
            torch.nn.init.xavier_uniform_(p)
        # Parameter-free layers; each caches the normalised adjacency of the
        # graph it is called on.
        self.conv = HeteroConv(
            {
                ('user', 'rates', 'item'): BipartiteLightConv(cached=True),
                ('item', 'rated_by', 'user'): BipartiteLightConv(cached=True),
                SIMILAR: ItemGraphConv(),
            },
            aggr='sum',
        )

    def forward(self, data: HeteroData) -> tuple[Tensor, Tensor]:
        edge_index_dict = {k: v for k, v in data.edge_index_dict.items() if k in self.conv.convs}
        x = dict(self.emb)
        out = {k: [v] for k, v in x.items()}
        for _ in range(self.num_layers):
            x = self.conv(x, edge_index_dict, edge_weight_dict={SIMILAR: data[SIMILAR].edge_weight})
            for k, v in x.items():
                out[k].append(v)
        return (torch.stack(out['user']).mean(0), torch.stack(out['item']).mean(0))

    def loss(self, data: HeteroData, batch: Tensor) -> dict[str, Tensor]:
        users, pos, neg = batch
        user, item = self(data)
        u = user[users]
        loss = bpr_loss((u * item[pos]).sum(-1), (u * item[neg]).sum(-1))
        return {'loss': loss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--epochs', type=int, default=20)
    parser.add_argument('--k', type=int, default=10, help='kNN neighbours per item')
    parser.add_argument('--beta', type=float, default=0.5, help='weight of the item-graph messages')
    args = parser.parse_args()

    # The data path: PyG transforms add the FAISS kNN graph of each modality and
    # fuse them, with weights summing to beta, into ('item', 'similar', 'item').
    data = make_planted(num_users=2000, num_items=800, seed=0)
    data = T.Compose(
        [
            ModalityKNNGraph(k=args.k),
            FuseItemGraphs({'image': args.beta / 2, 'text': args.beta / 2}),
        ]
    )(data)
    print(data)
    config = TrainConfig(epochs=args.epochs, lr=1e-2, batch_size=1024, patience=args.epochs)

    results = {}
    for name, build in [
        ('LightGCN', lambda: LightGCN.from_data(data)),
        ('LightGCN + FAISS item graph', lambda: SemanticLightGCN.from_data(data)),
    ]:
        seed_everything(config.seed)
        result = Trainer(build(), data, config).fit()
        results[name] = result.test
        print(f'{name}: best epoch {result.best_epoch}')
    print('\nTest metrics at the best-valid epoch')
    print(format_metrics_table(results, ks=(10, 20)))


if __name__ == '__main__':
    main()

import pytest
import torch


@pytest.fixture
def popularity_and_random():
    r"""Valid Recall@20 of ranking by training popularity and at random."""
    from pyg_mentor.evaluation import Evaluator

    def baselines(data) -> tuple[float, float]:
        evaluator = Evaluator(data, 'valid', ks=(20,))
        train = data['user', 'rates', 'item'].edge_index
        pop = torch.bincount(train[1], minlength=data['item'].num_nodes).float()
        g = torch.Generator().manual_seed(0)
        random = torch.rand(data['user'].num_nodes, data['item'].num_nodes, generator=g)
        return (
            evaluator.evaluate(lambda u: pop.expand(u.numel(), -1).clone())['recall@20'],
            evaluator.evaluate(lambda u: random[u])['recall@20'],
        )

    return baselines

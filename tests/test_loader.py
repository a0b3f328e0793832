r"""Sampled mini-batch training (:mod:`pyg_mentor.loader`): the sampler against
an independent k-hop neighbourhood, every supported model on a subgraph with
all neighbours against its full-graph forward (embeddings, loss terms and
gradients of a batch), training, resuming and the errors."""

import csv
import itertools

import pytest
import torch
from torch_geometric.data import HeteroData
from torch_geometric.loader import LinkLoader, NodeLoader

from pyg_mentor.config import DataConfig, TrainConfig, expand_grid
from pyg_mentor.datasets.load import prepare_data
from pyg_mentor.datasets.synthetic import make_planted
from pyg_mentor.evaluation import Evaluator
from pyg_mentor.loader import BPRNeighborLoader, NeighborSampler
from pyg_mentor.nn import functional as PF
from pyg_mentor.nn.models import FREEDOM, MENTOR, MFBPR, MMSSL, VBPR, LightGCN
from pyg_mentor.train import Trainer, train_model
from pyg_mentor.transforms import BipartiteNorm
from pyg_mentor.typing import ITEM, RATED_BY, RATES, SIMILAR, USER
from pyg_mentor.utils.sampling import NegativeSampler, train_batches


@pytest.fixture(scope='module')
def tiny():
    data = make_planted(
        num_users=60,
        num_items=50,
        avg_interactions=4,
        min_interactions=3,
        seed=0,
        modalities={'image': 6, 'text': 5},
    )
    return prepare_data(data, DataConfig(knn_k=3), item_graph=True)


@pytest.fixture(scope='module')
def planted():
    return make_planted(num_users=300, num_items=120, seed=0)


def first_batch(data: HeteroData, size: int = 4, seed: int = 0) -> torch.Tensor:
    edge_index = data[RATES].edge_index
    negatives = NegativeSampler(edge_index, data[ITEM].num_nodes)
    generator = torch.Generator().manual_seed(seed)
    return next(train_batches(edge_index, negatives, size, generator))


# The sampler ###############################################################


def reference_neighborhood(data, seed, num_neighbors):
    r"""All edges into the nodes within the receptive field, by a plain
    breadth-first search over the edge lists (all neighbours at every hop)."""
    visited = {t: set(seed.get(t, [])) for t in data.node_types}
    frontier = {t: set(v) for t, v in visited.items()}
    edges = {e: set() for e in num_neighbors}
    for hop in range(max(len(c) for c in num_neighbors.values())):
        new = {t: set() for t in data.node_types}
        for edge_type, counts in num_neighbors.items():
            if hop >= len(counts) or counts[hop] == 0:
                continue
            for src, dst in data[edge_type].edge_index.t().tolist():
                if dst in frontier[edge_type[2]]:
                    edges[edge_type].add((src, dst))
                    if src not in visited[edge_type[0]]:
                        new[edge_type[0]].add(src)
        for t in data.node_types:
            visited[t] |= new[t]
        frontier = new
    return visited, edges


def sampled_sets(out, data):
    nodes = {t: set(n.tolist()) for t, n in out.node.items()}
    edges = {}
    for edge_type, row in out.row.items():
        src, dst = out.node[edge_type[0]][row], out.node[edge_type[2]][out.col[edge_type]]
        edges[edge_type] = set(zip(src.tolist(), dst.tolist()))
    return nodes, edges


def test_all_neighbors_is_the_khop_neighborhood(tiny):
    schedule = {RATES: [-1, -1, -1], RATED_BY: [-1, -1, -1], SIMILAR: [-1]}
    sampler = NeighborSampler(tiny, schedule)
    seed = {USER: torch.tensor([3, 7]), ITEM: torch.tensor([0, 5, 11])}
    out = sampler._sample(seed)
    nodes, edges = sampled_sets(out, tiny)
    expected_nodes, expected_edges = reference_neighborhood(
        tiny, {t: v.tolist() for t, v in seed.items()}, schedule
    )
    assert nodes == expected_nodes
    assert edges == expected_edges
    # Seeds first, in their order; every edge once; edge ids are the graph's.
    for t, ids in seed.items():
        assert torch.equal(out.node[t][: ids.numel()], ids)
    for edge_type, pos in out.edge.items():
        e_id = sampler.edge_permutation[edge_type][pos]
        assert e_id.unique().numel() == e_id.numel()
        src, dst = tiny[edge_type].edge_index[:, e_id]
        assert torch.equal(src, out.node[edge_type[0]][out.row[edge_type]])
        assert torch.equal(dst, out.node[edge_type[2]][out.col[edge_type]])
    assert sum(out.num_sampled_nodes[USER]) == out.node[USER].numel()
    assert sum(out.num_sampled_edges[RATES]) == out.row[RATES].numel()


def test_sampled_neighbors_are_at_most_k_distinct_real_edges(tiny):
    k = 2
    sampler = NeighborSampler(
        tiny, {RATES: [k, k], RATED_BY: [k, k]}, torch.Generator().manual_seed(0)
    )
    seed = {USER: torch.tensor([1, 2, 3]), ITEM: torch.tensor([4, 9])}
    out = sampler._sample(seed)
    assert len(out.num_sampled_nodes[USER]) == 3  # Seeds, then one entry per hop.
    # Every node visited before the last hop got min(k, in-degree) incoming
    # edges of each type, distinct edges of the graph.
    for edge_type in (RATES, RATED_BY):
        dst_type = edge_type[2]
        visited = out.node[dst_type][: sum(out.num_sampled_nodes[dst_type][:2])]
        indegree = torch.bincount(tiny[edge_type].edge_index[1], minlength=tiny[dst_type].num_nodes)
        got = torch.bincount(out.col[edge_type], minlength=out.node[dst_type].numel())
        torch.testing.assert_close(got[: visited.numel()], indegree[visited].clamp(max=k))
        e_id = sampler.edge_permutation[edge_type][out.edge[edge_type]]
        assert e_id.unique().numel() == e_id.numel()
        src, dst = tiny[edge_type].edge_index[:, e_id]
        assert torch.equal(src, out.node[edge_type[0]][out.row[edge_type]])
        assert torch.equal(dst, out.node[dst_type][out.col[edge_type]])


def test_sampling_is_uniform_and_reproducible():
    data = HeteroData()
    data[USER].num_nodes = 4
    data[ITEM].num_nodes = 1
    data[RATES].edge_index = torch.tensor([[0, 1, 2, 3], [0, 0, 0, 0]])
    sampler = NeighborSampler(data, {RATES: [2]}, torch.Generator().manual_seed(1))
    pairs = [
        tuple(sorted(sampler._sample({ITEM: torch.tensor([0])}).node[USER].tolist()))
        for _ in range(1200)
    ]
    counts = {p: pairs.count(p) for p in itertools.combinations(range(4), 2)}
    assert sum(counts.values()) == 1200
    assert all(140 < c < 260 for c in counts.values()), counts  # 200 each
    again = NeighborSampler(data, {RATES: [2]}, torch.Generator().manual_seed(1))
    assert [
        tuple(sorted(again._sample({ITEM: torch.tensor([0])}).node[USER].tolist()))
        for _ in range(20)
    ] == pairs[:20]


def test_runs_in_pygs_node_and_link_loaders(tiny):
    sampler = NeighborSampler(
        tiny, {RATES: [3, 3], RATED_BY: [3, 3]}, torch.Generator().manual_seed(0)
    )
    graph = HeteroData()
    for t in (USER, ITEM):
        graph[t].num_nodes = tiny[t].num_nodes
    for e in (RATES, RATED_BY):
        graph[e].edge_index = tiny[e].edge_index
    batches = list(NodeLoader(graph, sampler, input_nodes=(USER, torch.arange(6)), batch_size=4))
    assert [b[USER].batch_size for b in batches] == [4, 2]
    assert torch.equal(batches[1][USER].n_id[:2], torch.tensor([4, 5]))
    pairs = tiny[RATES].edge_index[:, :5]
    for batch in LinkLoader(graph, sampler, edge_label_index=(RATES, pairs), batch_size=5):
        label = batch[RATES].edge_label_index
        assert torch.equal(batch[USER].n_id[label[0]], pairs[0])
        assert torch.equal(batch[ITEM].n_id[label[1]], pairs[1])


def test_sampler_errors(tiny):
    with pytest.raises(ValueError, match='no such edges'):
        NeighborSampler(tiny, {(USER, 'likes', ITEM): [1]})
    with pytest.raises(ValueError, match='-1 .all. or >= 0'):
        NeighborSampler(tiny, {RATES: [-2]})
    with pytest.raises(ValueError, match='distinct'):
        NeighborSampler(tiny, {RATES: [1]})._sample({ITEM: torch.tensor([1, 1])})


# Models: a subgraph with all neighbours computes what the full graph does ##

MODELS = {
    'lightgcn': (LightGCN, {'num_layers': 2}),
    'mf_bpr': (MFBPR, {}),
    'vbpr': (VBPR, {}),
    'freedom': (FREEDOM, {'num_layers': 2, 'num_mm_layers': 3, 'reg_weight': 0.1}),
    'mentor': (MENTOR, {'num_layers': 2, 'cl_scope': 'batch'}),
}


def build(name, data, **kwargs):
    cls, options = MODELS[name]
    torch.manual_seed(0)
    model = cls.from_data(data, embedding_dim=8, **{**options, **kwargs})
    # Eval mode: MENTOR's noise views and feature mask are random draws
    # whose shapes follow the graph; without them both paths are deterministic.
    return model.eval()


def loader_for(model, data, num_neighbors):
    return BPRNeighborLoader(
        model.sampled_neighbors(num_neighbors),
        torch.Generator().manual_seed(0),
        features=model.multimodal,
    )


def grads(model, loss):
    model.zero_grad()
    loss.backward()
    return {
        n: torch.zeros_like(p) if p.grad is None else p.grad.clone()
        for n, p in model.named_parameters()
    }


def mentor_expected_terms(model, data, batch):
    r"""MENTOR's loss from the FULL-graph representations with the all-node
    terms over the batch's users and items, written out."""
    users, pos, neg = batch
    reps = model.representations(data)
    user, item = reps['fused']
    u = user[users]
    bpr = PF.bpr_loss((u * item[pos]).sum(-1), (u * item[neg]).sum(-1), base=2)
    reg = model.reg_weight * PF.reg_loss(
        *[model.encoders[m].preference[users] for m in model.modalities], model.user_modality_weight
    )
    bu, bi = users.unique(), torch.cat([pos, neg]).unique()
    align = model.align_weight * PF.align_loss(
        {
            k: torch.cat([reps[k][0][bu], reps[k][1][bi]])
            for k in ('guide', 'fused', *model.modalities)
        }
    )
    with torch.no_grad():
        mask = model.mask_weight * (
            PF.masked_cosine_loss(user[bu], model.mask_map(user[bu]))
            + PF.masked_cosine_loss(item[bi], model.mask_map(item[bi]))
        )
    (u1, i1), (u2, i2) = reps['noise1'], reps['noise2']
    cl = model.cl_weight * (
        PF.info_nce(u1[bu], u2[bu], model.temperature, None)
        + PF.info_nce(i1[bi], i2[bi], model.temperature, None)
    )
    total = bpr + reg + align + mask + cl
    return {'loss': total, 'bpr': bpr, 'reg': reg, 'align': align, 'mask': mask, 'cl': cl}


@pytest.mark.parametrize('name', list(MODELS))
def test_all_neighbors_equal_the_full_graph(tiny, name):
    model = build(name, tiny)
    batch = first_batch(tiny)
    num_neighbors = [-1] * model.num_layers if hasattr(model, 'num_layers') else [-1]
    subgraph, local = loader_for(model, tiny, num_neighbors)(tiny, batch)
    assert torch.equal(subgraph[USER].n_id[local[0]], batch[0])
    assert torch.equal(subgraph[ITEM].n_id[local[1]], batch[1])
    assert torch.equal(subgraph[ITEM].n_id[local[2]], batch[2])
    if name in ('lightgcn', 'freedom', 'mentor'):  # A proper subgraph.
        assert subgraph[RATES].num_edges < tiny[RATES].num_edges

    # The batch's representations.
    with torch.no_grad():
        user, item = model(tiny)
        sub_user, sub_item = model(subgraph)
    torch.testing.assert_close(sub_user[local[0]], user[batch[0]])
    torch.testing.assert_close(sub_item[local[1]], item[batch[1]])
    torch.testing.assert_close(sub_item[local[2]], item[batch[2]])

    # The loss terms of the batch and the gradients of every parameter.
    if name == 'mentor':
        expected = mentor_expected_terms(model, tiny, batch)
    else:
        expected = model.loss(tiny, batch)
    expected_grads = grads(model, expected['loss'])
    terms = model.loss(subgraph, local)
    assert set(terms) == set(expected)
    for key in expected:
        torch.testing.assert_close(terms[key], expected[key], msg=key)
    for param, grad in grads(model, terms['loss']).items():
        torch.testing.assert_close(grad, expected_grads[param], msg=param)


def test_freedom_samples_from_the_epochs_pruned_view(tiny):
    model = build('freedom', tiny, dropout=0.5)
    view = model.on_epoch_start(tiny, 0, torch.Generator().manual_seed(0))
    assert view[RATES].num_edges < tiny[RATES].num_edges
    batch = first_batch(tiny)
    loader = loader_for(model, view, [-1, -1])
    subgraph, local = loader(view, batch)
    with torch.no_grad():
        user, item = model(view)
        sub_user, sub_item = model(subgraph)
    torch.testing.assert_close(sub_user[local[0]], user[batch[0]])
    torch.testing.assert_close(sub_item[local[1]], item[batch[1]])
    # A new view (next epoch) gets its own sampling graph and weights.
    graph = loader.graph
    loader(model.on_epoch_start(tiny, 1, torch.Generator().manual_seed(1)), batch)
    assert loader.graph is not graph


def test_few_neighbors_give_a_smaller_subgraph(tiny):
    model = build('lightgcn', tiny)
    batch = first_batch(tiny)
    full, _ = loader_for(model, tiny, [-1, -1])(tiny, batch)
    small, local = loader_for(model, tiny, [1, 1])(tiny, batch)
    assert small[RATES].num_edges < full[RATES].num_edges
    # The weights are the full graph's, times deg(i) / sampled(i): each
    # neighbour of i is drawn with probability sampled(i) / deg(i).
    for edge_type in (RATES, RATED_BY):
        store = small[edge_type]
        weight = BipartiteNorm()(tiny)[edge_type].edge_weight[store.e_id]
        dst = store.edge_index[1]
        deg = torch.bincount(tiny[edge_type].edge_index[1])[small[edge_type[2]].n_id[dst]]
        sampled = torch.bincount(dst)[dst]
        assert (sampled <= 1).all() and (deg > 1).any()
        torch.testing.assert_close(store.edge_weight, weight * deg / sampled)
    plain, _ = BPRNeighborLoader(
        model.sampled_neighbors([1, 1]), torch.Generator().manual_seed(0), rescale=False
    )(tiny, batch)
    torch.testing.assert_close(
        plain[RATES].edge_weight, BipartiteNorm()(tiny)[RATES].edge_weight[plain[RATES].e_id]
    )
    assert torch.isfinite(model.loss(small, local)['loss'])


def test_receptive_fields(tiny):
    lightgcn = build('lightgcn', tiny, num_layers=3)
    assert lightgcn.sampled_neighbors([10, 5, 2]) == {RATES: [10, 5, 2], RATED_BY: [10, 5, 2]}
    freedom = build('freedom', tiny, num_layers=2, num_mm_layers=1)
    assert freedom.sampled_neighbors([10, 5]) == {
        RATES: [10, 5],
        RATED_BY: [10, 5],
        SIMILAR: [-1, 0],
    }
    mentor = build('mentor', tiny, num_layers=2, num_mm_layers=1)
    assert mentor.sampled_neighbors([10, 5]) == {
        RATES: [10, 5, 5],
        RATED_BY: [10, 5, 5],
        SIMILAR: [-1, 0, 0],
    }
    assert build('mf_bpr', tiny).sampled_neighbors([10, 10]) == {}
    with pytest.raises(ValueError, match='one entry per user-item layer'):
        lightgcn.sampled_neighbors([10, 10])


# Training ##################################################################


def popularity_recall(data, k=20):
    popularity = torch.bincount(data[RATES].edge_index[1], minlength=data[ITEM].num_nodes).float()
    evaluator = Evaluator(data, 'valid', ks=(k,))
    return evaluator.evaluate(lambda users: popularity.repeat(users.numel(), 1))[f'recall@{k}']


def test_sampled_training_learns(tmp_path):
    # Without the popularity prior of the planted data, so that popularity is
    # a baseline to beat (valid recall@20 ~.26; random ranking ~.15).
    data = make_planted(num_users=300, num_items=120, popularity=0.0, seed=0)
    options = {
        'epochs': 12,
        'progress': False,
        'lr': 0.01,
        'batch_size': 256,
        'patience': 50,
        'sampler': 'neighbor',
        'num_neighbors': [5, 5],
    }
    result = train_model('lightgcn', data, options, tmp_path)
    assert result['status'] == 'max_epochs'
    # ~.34 (full-graph training: ~.36; .30-.34 over sampler seeds).
    assert result['valid']['recall@20'] > popularity_recall(data) + 0.03
    rows = list(csv.DictReader(open(tmp_path / 'log.csv')))
    assert float(rows[-1]['train/loss']) < float(rows[0]['train/loss'])


def test_one_sampled_epoch_with_all_neighbors_is_the_full_graph_epoch(planted):
    def run(**options):
        config = TrainConfig(
            epochs=1,
            lr=0.01,
            batch_size=512,
            progress=False,
            tensorboard=False,
            checkpoint=False,
            **options,
        )
        torch.manual_seed(0)
        model = LightGCN.from_data(planted, num_layers=2)
        trainer = Trainer(model, planted, config)
        log, error = trainer._train_epoch(0)
        assert error is None
        return model, trainer, log

    full, full_trainer, full_log = run()
    sampled, sampled_trainer, sampled_log = run(sampler='neighbor', num_neighbors=[-1, -1])
    # The same batches and negatives ...
    assert torch.equal(full_trainer.generator.get_state(), sampled_trainer.generator.get_state())
    # ... and the same steps, to float rounding.
    for key in full_log:
        assert sampled_log[key] == pytest.approx(full_log[key], rel=1e-5)
    for a, b in zip(full.parameters(), sampled.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    'model,options',
    [
        ('lightgcn', {'num_layers': 1, 'num_neighbors': [3]}),
        ('freedom', {'num_layers': 1, 'num_neighbors': [3], 'knn_k': 3}),
    ],
)
def test_sampled_resume_continues_to_the_same_result(planted, tmp_path, model, options):
    options = {
        'epochs': 4,
        'progress': False,
        'lr': 0.01,
        'patience': 50,
        'batch_size': 512,
        'sampler': 'neighbor',
        **options,
    }
    full = train_model(model, planted, options, tmp_path / 'full')
    train_model(model, planted, {**options, 'epochs': 2}, tmp_path / 'part')
    resumed = train_model(model, planted, options, tmp_path / 'part', resume=True)
    assert resumed['valid'] == full['valid'] and resumed['test'] == full['test']
    a = torch.load(tmp_path / 'full' / 'last.pt', weights_only=False)
    b = torch.load(tmp_path / 'part' / 'last.pt', weights_only=False)
    assert all(torch.equal(a['model'][k], b['model'][k]) for k in a['model'])
    assert torch.equal(a['neighbor_generator'], b['neighbor_generator'])
    rows = [list(csv.DictReader(open(tmp_path / d / 'log.csv'))) for d in ('full', 'part')]
    assert [r['train/loss'] for r in rows[0]] == [r['train/loss'] for r in rows[1]]


# Errors ####################################################################


def test_unsupported_models_and_options_are_refused(tiny, tmp_path):
    config = TrainConfig(sampler='neighbor', num_neighbors=[5, 5], progress=False)
    with pytest.raises(ValueError, match='MMSSL does not support sampled training'):
        Trainer(MMSSL.from_data(tiny, embedding_dim=8), tiny, config)
    with pytest.raises(ValueError, match="cl_scope='all' cannot train on sampled"):
        Trainer(build('mentor', tiny, cl_scope='all'), tiny, config)
    with pytest.raises(ValueError, match='eval_cached_embeddings=True cannot'):
        Trainer(build('mentor', tiny, eval_cached_embeddings=True), tiny, config)
    with pytest.raises(
        ValueError,
        match=r'one entry per user-item layer of LightGCN '
        r'\(num_layers=3\), got \[5, 5\]',
    ):
        Trainer(build('lightgcn', tiny, num_layers=3), tiny, config)
    # Refused before anything is written.
    with pytest.raises(ValueError, match="cl_scope='all'"):
        train_model(
            'mentor',
            tiny,
            {'sampler': 'neighbor', 'num_neighbors': [5, 5], 'epochs': 1, 'progress': False},
            tmp_path / 'run',
        )
    assert not (tmp_path / 'run' / 'run.json').exists()


def test_config_checks_num_neighbors():
    with pytest.raises(ValueError, match="sampler='neighbor' needs num_neighbors"):
        TrainConfig(sampler='neighbor')
    with pytest.raises(ValueError, match='each >= 1 or -1'):
        TrainConfig(sampler='neighbor', num_neighbors=[10, 0])
    with pytest.raises(ValueError, match="only used with sampler='neighbor'"):
        TrainConfig(num_neighbors=[10, 10])
    with pytest.raises(ValueError, match='num_neighbors must be a list'):
        TrainConfig(sampler='neighbor', num_neighbors=[10, 'all'])
    # A list is a value; a list of lists is a grid axis.
    trials = expand_grid(LightGCN, {'sampler': 'neighbor', 'num_neighbors': [10, 5]})
    assert [t.train.num_neighbors for t in trials] == [[10, 5]]
    trials = expand_grid(LightGCN, {'sampler': 'neighbor', 'num_neighbors': [[10, 5], [-1, -1]]})
    assert [t.train.num_neighbors for t in trials] == [[10, 5], [-1, -1]]

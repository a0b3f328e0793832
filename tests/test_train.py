import copy
import csv
import json

import pytest
import torch

from pyg_mentor.config import TrainConfig
from pyg_mentor.datasets.synthetic import make_planted
from pyg_mentor.nn.models import MFBPR, LightGCN, Recommender
from pyg_mentor.train import Trainer, train_model


@pytest.fixture(scope='module')
def data():
    return make_planted(num_users=300, num_items=120, seed=0)


class ScheduledEvaluator:
    r"""Returns a fixed sequence of metric values, one per call."""

    def __init__(self, values, metric='recall@20'):
        self.values = list(values)
        self.metric = metric
        self.calls = 0

    def evaluate(self, scorer):
        value = self.values[min(self.calls, len(self.values) - 1)]
        self.calls += 1
        return {self.metric: value}


class Toy(Recommender):
    r"""One parameter; the loss turns NaN at a chosen epoch."""

    def __init__(self, num_users, num_items, nan_at_epoch=None):
        super().__init__(num_users, num_items)
        self.w = torch.nn.Parameter(torch.ones(2))
        self.nan_at_epoch = nan_at_epoch
        self.epoch = -1

    def on_epoch_start(self, data, epoch, generator):
        self.epoch = epoch
        return data

    def forward(self, data):
        return torch.zeros(self.num_users, 2), torch.zeros(self.num_items, 2)

    def loss(self, data, batch):
        loss = (self.w**2).sum()
        if self.epoch == self.nan_at_epoch:
            loss = loss * float('nan')
        return {'loss': loss}


def toy_trainer(data, valid, test=None, tmp_path=None, **cfg):
    nan_at_epoch = cfg.pop('nan_at_epoch', None)
    config = TrainConfig(progress=False, tensorboard=False, **{'patience': 2, 'epochs': 50, **cfg})
    model = Toy(data['user'].num_nodes, data['item'].num_nodes, nan_at_epoch)
    evaluators = {
        'valid': ScheduledEvaluator(valid),
        'test': ScheduledEvaluator(test or [0.5] * 100),
    }
    return Trainer(model, data, config, tmp_path, evaluators)


def test_early_stopping_semantics_as_mmrec(data):
    # Rounded to 4 decimals: 0.10004 is not an improvement over 0.1000.
    valid = [0.05, 0.1, 0.10004, 0.0999, 0.1, 0.2]
    trainer = toy_trainer(data, valid, patience=2)
    result = trainer.fit()
    # Best at epoch 1; epochs 2, 3, 4 are bad, and the 3rd (> patience) stops.
    assert result.best_epoch == 1
    assert result.epochs_run == 5
    assert result.status == 'early_stopped'
    assert result.valid == {'recall@20': 0.1}
    # Test is evaluated only when validation improved (epochs 0 and 1).
    assert trainer.evaluators['test'].calls == 2


def test_test_every_epoch_reports_the_same_numbers(data):
    valid = [0.05, 0.1, 0.09, 0.08, 0.07]
    test = [0.3, 0.4, 0.5, 0.6, 0.7]
    a = toy_trainer(data, valid, test, patience=1, test_every_epoch=True)
    result = a.fit()
    assert a.evaluators['test'].calls == 4  # Epochs 0-3; stops after epoch 3.
    assert result.test == {'recall@20': 0.4}


def test_nan_loss_stops_and_keeps_best_checkpoint(data, tmp_path):
    trainer = toy_trainer(data, [0.1, 0.2, 0.3, 0.4], tmp_path=tmp_path, nan_at_epoch=2)
    result = trainer.fit()
    assert result.status == 'nan_loss'
    assert 'epoch 2' in result.error
    assert result.best_epoch == 1 and result.valid == {'recall@20': 0.2}
    assert torch.load(tmp_path / 'best.pt', weights_only=False)['epoch'] == 1
    rows = list(csv.DictReader(open(tmp_path / 'log.csv')))
    assert [int(r['epoch']) for r in rows] == [0, 1]


def test_lightgcn_learns_and_writes_outputs(data, tmp_path):
    result = train_model(
        'lightgcn',
        data,
        {'epochs': 12, 'progress': False, 'lr': 0.01, 'batch_size': 256, 'patience': 50},
        tmp_path,
        dataset='synthetic',
    )
    assert result['status'] == 'max_epochs'
    # Random ranking has recall@20 ~ 20 / 120 * (1 - train share) ~ 0.15.
    assert result['valid']['recall@20'] > 0.3
    metrics = json.loads((tmp_path / 'metrics.json').read_text())
    assert metrics['best_epoch'] == result['best_epoch']
    assert set(metrics['test']) >= {'recall@20', 'ndcg@10', 'map@50', 'precision@5'}
    for name in ('best.pt', 'last.pt', 'log.csv'):
        assert (tmp_path / name).exists()
    rows = list(csv.DictReader(open(tmp_path / 'log.csv')))
    assert len(rows) == 12 and 'valid/recall@20' in rows[0]


def test_resume_continues_to_the_same_result(data, tmp_path):
    options = {'epochs': 6, 'progress': False, 'lr': 0.01, 'patience': 50, 'num_layers': 1}
    full = train_model('lightgcn', data, options, tmp_path / 'full')
    train_model('lightgcn', data, {**options, 'epochs': 3}, tmp_path / 'part')
    resumed = train_model('lightgcn', data, options, tmp_path / 'part', resume=True)
    assert resumed['valid'] == full['valid']
    assert resumed['test'] == full['test']
    assert resumed['best_epoch'] == full['best_epoch']
    a = torch.load(tmp_path / 'full' / 'last.pt', weights_only=False)['model']
    b = torch.load(tmp_path / 'part' / 'last.pt', weights_only=False)['model']
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = list(csv.DictReader(open(tmp_path / 'part' / 'log.csv')))
    assert [int(r['epoch']) for r in rows] == list(range(6))


def test_resume_refuses_other_options(data, tmp_path):
    options = {'epochs': 1, 'progress': False}
    train_model('mf_bpr', data, options, tmp_path)
    with pytest.raises(ValueError, match='other options'):
        train_model('mf_bpr', data, {**options, 'lr': 0.5, 'epochs': 2}, tmp_path, resume=True)


def test_deterministic_given_seed(data):
    options = {'epochs': 2, 'progress': False, 'checkpoint': False}
    a = train_model('mf_bpr', data, options)
    b = train_model('mf_bpr', data, options)
    c = train_model('mf_bpr', data, {**options, 'seed': 1})
    assert a['valid'] == b['valid']
    assert a['valid'] != c['valid']


def test_grid_selects_on_valid_or_on_test_as_released(data, tmp_path, monkeypatch):
    # Trial 0 is better on valid, trial 1 on test.
    scores = {1e-4: (0.3, 0.1), 1e-3: (0.2, 0.4)}

    def fake_fit(self, resume=False):
        from pyg_mentor.train import TrainResult

        v, t = scores[self.model.reg_weight]
        return TrainResult(0, {'recall@20': v}, {'recall@20': t}, 1, 'early_stopped', 1.0, 1.0)

    monkeypatch.setattr(Trainer, 'fit', fake_fit)
    grid = {'reg_weight': [1e-4, 1e-3], 'progress': False}
    out = train_model('mf_bpr', data, grid, tmp_path / 'v')
    assert out['winner'] == 0 and out['valid']['recall@20'] == 0.3
    assert len(out['trials']) == 2
    assert (tmp_path / 'v' / 'trials' / '001' / 'metrics.json').exists()
    out = train_model('mf_bpr', data, {**grid, 'select_on': 'test-as-released'}, tmp_path / 't')
    assert out['winner'] == 1 and out['selected_on'] == 'test-as-released'


def test_model_kwargs_reach_the_model(data):
    model = LightGCN.from_data(data, num_layers=3)
    assert model.num_layers == 3
    with pytest.raises(KeyError, match='Unknown option'):
        train_model('lightgcn', data, {'num_layer': 3})


def test_trainer_owns_the_optimisers_and_the_epoch_graph(data):
    class TwoOptimisers(Toy):
        """Two parameters, each with its own optimiser; every epoch trains on a
        view of the graph with the first training pair removed."""

        def __init__(self, num_users, num_items):
            super().__init__(num_users, num_items)
            self.v = torch.nn.Parameter(torch.ones(1))
            self.seen = []

        def configure_optimizers(self, lr, weight_decay=0.0):
            return [torch.optim.SGD([self.w], lr=lr), torch.optim.SGD([self.v], lr=2 * lr)]

        def on_epoch_start(self, data, epoch, generator):
            view = copy.copy(data)
            view['user', 'rates', 'item'].edge_index = data['user', 'rates', 'item'].edge_index[
                :, 1:
            ]
            return view

        def train_step(self, data, batch, optimizers):
            self.seen.append(data['user', 'rates', 'item'].edge_index.size(1))
            for opt in optimizers:
                opt.zero_grad()
            loss = (self.w**2).sum() + (self.v**2).sum()
            loss.backward()
            for opt in optimizers:
                opt.step()
            return {'loss': loss.detach()}

    config = TrainConfig(progress=False, tensorboard=False, epochs=1, lr=0.1, batch_size=10**6)
    model = TwoOptimisers(data['user'].num_nodes, data['item'].num_nodes)
    trainer = Trainer(
        model,
        data,
        config,
        None,
        {'valid': ScheduledEvaluator([0.1]), 'test': ScheduledEvaluator([0.1])},
    )
    assert len(trainer.optimizers) == 2
    trainer.fit()
    num_edges = data['user', 'rates', 'item'].edge_index.size(1)
    assert model.seen == [num_edges - 1]  # the epoch's view, not the graph
    # One step each: w <- w - 0.1 * 2w, v <- v - 0.2 * 2v.
    assert torch.allclose(model.w, torch.full((2,), 0.8))
    assert torch.allclose(model.v, torch.full((1,), 0.6))


def test_deterministic_mode_without_filling_new_tensors(data, monkeypatch):
    # During training: deterministic algorithms on, torch's NaN-filling of every
    # new tensor off (a write pass per allocation); both restored afterwards.
    seen = []
    loss = MFBPR.loss

    def spy(self, *args, **kwargs):
        seen.append(
            (
                torch.are_deterministic_algorithms_enabled(),
                torch.utils.deterministic.fill_uninitialized_memory,
            )
        )
        return loss(self, *args, **kwargs)

    monkeypatch.setattr(MFBPR, 'loss', spy)
    before = torch.utils.deterministic.fill_uninitialized_memory
    train_model('mf_bpr', data, {'epochs': 1, 'progress': False, 'checkpoint': False})
    assert seen and all(on and not fill for on, fill in seen)
    assert torch.utils.deterministic.fill_uninitialized_memory == before
    assert not torch.are_deterministic_algorithms_enabled()

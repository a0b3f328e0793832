import json

import torch

from benchmarks import train_epoch
from pyg_mentor.datasets.synthetic import make_planted
from pyg_mentor.nn.models import MFBPR


def test_quick_run_writes_the_table(tmp_path):
    result = train_epoch.main(['--quick', '--out', str(tmp_path / 'te.json')])
    assert result['same_metrics'] is True  # the fill changes no result
    assert set(result['runs']) == {'fill off', 'fill on'}
    saved = json.loads((tmp_path / 'te.json').read_text())
    assert saved['medians'] == result['medians']
    text = (tmp_path / 'te.md').read_text()
    assert '| fill off |' in text and '| fill on |' in text and '1.00x' in text


def test_train_once_sets_and_restores_the_fill(monkeypatch):
    seen = []
    loss = MFBPR.loss

    def spy(self, *args, **kwargs):
        seen.append(torch.utils.deterministic.fill_uninitialized_memory)
        return loss(self, *args, **kwargs)

    monkeypatch.setattr(MFBPR, 'loss', spy)
    data = make_planted(num_users=60, num_items=30, seed=0)
    before = torch.utils.deterministic.fill_uninitialized_memory
    rows = train_epoch.train_once('mf_bpr', data, 2, fill=True)
    assert len(rows) == 2 and 'valid/recall@20' in rows[0]
    assert seen and all(seen)
    seen.clear()
    train_epoch.train_once('mf_bpr', data, 2, fill=False)
    assert seen and not any(seen)  # the trainer's own setting
    assert torch.utils.deterministic.fill_uninitialized_memory == before

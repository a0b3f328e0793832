"""Tests of ``benchmarks/scale.py``: the blocked planted catalogue, and (slow) a smoke
run of ``--quick`` on one tiny catalogue, every method in fresh processes (two of them
gloo ranks) and the item graph built, so that the script cannot rot."""

from __future__ import annotations

import json
import math

import pytest
import torch

from benchmarks import scale
from benchmarks._common import RESULTS
from pyg_mentor.typing import ITEM, RATES, USER, label_key

pytestmark = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason='torch.distributed with gloo is not available',
)


def test_make_catalogue_counts():
    data = scale.make_catalogue(3000, 30001, 8, avg_interactions=10, block_items=1000, seed=1)
    pairs = data[RATES].edge_index.size(1) + sum(
        data[RATES][label_key(s)].size(1) for s in ('valid', 'test')
    )
    assert pairs == 30001  # exactly, over the three blocks
    assert data[ITEM].num_nodes == 3000 and data[ITEM].x_text.shape == (3000, 8)
    assert data[USER].num_nodes == 3 * 1000  # 10000 pairs / 10 per user, per block
    # Block-diagonal: users 0..999 rate items 0..999 only.
    user, item = data[RATES].edge_index
    assert (item[user < 1000] < 1000).all() and (item[user >= 1000] >= 1000).all()


@pytest.mark.slow  # six fresh Python processes: ~30 s idle, ~2 min on a busy 2-core box
def test_quick_run(tmp_path):
    out = tmp_path / 's.json'
    scale.main(['--quick', '--sizes', '2000:20000', '--out', str(out)])
    saved = json.loads(out.read_text())
    assert saved['quick'] and saved['steps'] == 2
    (size,) = saved['sizes']
    rows = {row['method']: row for row in size['rows']}
    assert list(rows) == [name for name, _, _ in scale.METHODS]
    for row in rows.values():
        assert 'not_run' not in row
        assert row['steps_timed'] == 2 and all(s > 0 for s in row['step_seconds'])
        # The epoch is extrapolated: ceil(train pairs / batch) steps of the median.
        assert row['steps_per_epoch'] == math.ceil(size['size']['train'] / 1024)
        step = (row['step_seconds'][0] + row['step_seconds'][1]) / 2  # median of two
        assert row['seconds_per_step'] == pytest.approx(step)
        assert row['seconds_per_epoch'] == pytest.approx(
            row['epoch_start_seconds'] + row['steps_per_epoch'] * step
        )
        assert row['eval_seconds'] > row['embed_seconds'] > 0
        assert 0 < row['train_peak_rss_bytes'] <= row['peak_rss_bytes']
    full, two = rows['full graph, 1 process'], rows['sampled, 2 processes']
    assert (
        full['seconds_per_epoch_ratio'] == 1.0 and full['threads_per_process'] == saved['threads']
    )
    assert two['processes'] == 2 and two['threads_per_process'] == max(1, saved['threads'] // 2)
    # Each rank ranked its 50 users; both ranks' peaks are summed.
    assert two['ranked_users'] == 100 and two['peak_rss_bytes'] > full['peak_rss_bytes']
    graphs = {row['method']: row for row in size['item_graph']}
    assert graphs['dense I x I (release)']['estimated_bytes'] == 2000**2 * 4
    assert graphs['faiss exact']['how'] == 'estimated'  # above --exact-max in quick mode
    assert graphs['faiss IVF nprobe=8']['how'] == 'measured'
    text = (tmp_path / 's.md').read_text()
    assert text.startswith('# Scale: training, evaluation')
    assert 'extrapolated from 2 steps' in text
    assert 'Command: `python benchmarks/scale.py --quick' in text


def test_quick_refuses_committed_results():
    with pytest.raises(ValueError, match='quick run does not write'):
        scale.main(['--quick', '--out', str(RESULTS / 'scale.json')])

"""Smoke test of ``benchmarks/sampled_training.py``, so the script cannot rot."""

from __future__ import annotations

import json

from benchmarks import sampled_training


def test_quick_run(tmp_path):
    out = tmp_path / 's.json'
    sampled_training.main(['--quick', '--models', 'lightgcn', '--out', str(out)])
    saved = json.loads(out.read_text())
    assert saved['quick'] and saved['epochs'] == 1
    rows = {row['method']: row for row in saved['rows']}
    assert list(rows) == ['full graph', 'sampled [10, 10]', 'sampled all (-1)']
    assert rows['full graph']['ratio'] == 1.0 and rows['full graph']['subgraph'] is None
    assert all(row['seconds_per_epoch'] > 0 for row in rows.values())
    # All neighbours: every edge into the two hops around the batch (~all here).
    assert rows['sampled all (-1)']['subgraph']['edges'] > 0.9
    assert 0 < rows['sampled [10, 10]']['subgraph']['edges'] < 1
    text = (tmp_path / 's.md').read_text()
    assert text.startswith('# Sampled vs full-graph training')
    assert 'Command: `python benchmarks/sampled_training.py --quick' in text

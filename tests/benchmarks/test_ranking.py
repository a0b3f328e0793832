"""Smoke test of ``benchmarks/ranking.py``, so the script cannot rot."""

from __future__ import annotations

import json

from benchmarks import ranking


def test_quick_run(tmp_path):
    out = tmp_path / 'r.json'
    ranking.main(['--quick', '--out', str(out)])
    saved = json.loads(out.read_text())
    assert saved['quick'] and saved['users'] == 200
    rows = {row['method']: row for row in saved['rows']}
    assert list(rows) == list(ranking.METHODS)
    ours = rows['torch (evaluator)']
    assert ours['ratio'] == 1.0 and ours['chunk_rows'] == 200
    assert ours['memory_bound_bytes'] == 200 * 5000 * 2 * 4
    if ours['peak_extra_bytes'] is not None:  # Linux: the chunk's scores, within the bound
        assert ours['peak_extra_bytes'] <= ours['memory_bound_bytes'] + 16 * 2**20
    assert all(row['seconds_per_1k_users'] > 0 for row in rows.values())
    # Random embeddings, no ties: FAISS finds the evaluator's lists.
    mips = rows['MIPSKNNIndex (FAISS)']
    assert mips['same_lists'] > 0.95 and mips['max_metric_diff'] < 1e-3
    text = (tmp_path / 'r.md').read_text()
    assert text.startswith('# Full ranking over large catalogues')
    assert 'Command: `python benchmarks/ranking.py --quick' in text

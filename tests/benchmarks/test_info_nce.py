"""Smoke test of ``benchmarks/info_nce.py``, so the script cannot rot."""

from __future__ import annotations

import json

from benchmarks import info_nce


def test_quick_run(tmp_path, capsys):
    out = tmp_path / 'x.json'
    result = info_nce.main(['--quick', '--out', str(out)])
    saved = json.loads(out.read_text())
    assert saved['quick'] and saved['repeat'] == 1
    assert {'date', 'torch', 'threads', 'cores'} <= set(saved)
    cells = {(row['pass_'], row['method']) for row in saved['rows']}
    assert cells == {(p, m) for p in ('fwd', 'fwd+bwd') for m in ('dense', 'chunked 128')}
    for row in saved['rows']:
        if row['method'] != 'dense':
            assert row['value_rel_diff'] < 1e-6  # same value as dense
            assert row['time_vs_dense'] > 0
            if row['pass_'] == 'fwd+bwd':
                assert row['grad_max_rel_diff'] < 1e-5  # same gradients
    assert result['rows'][0]['rows'] == 600
    assert '| quick | 600 x 128 | fwd+bwd | chunked 128 |' in capsys.readouterr().out

"""Smoke test of ``benchmarks/evaluation.py``, so the script cannot rot."""

from __future__ import annotations

import json

from benchmarks import evaluation


def test_quick_run(tmp_path, capsys):
    out = tmp_path / 'evaluation.json'
    result = evaluation.main(['--quick', '--out', str(out)])
    saved = json.loads(out.read_text())
    assert saved['quick'] and saved['repeat'] == 1
    assert {'date', 'torch', 'threads', 'cores'} <= set(saved)
    assert [row['method'] for row in saved['rows']] == [
        'naive MMRec-style loop',
        'pyg_mentor Evaluator',
    ]
    assert saved['max_abs_diff'] < 1e-5  # both compute the same metrics
    assert result['shape']['users'] == 2000
    printed = capsys.readouterr().out
    # The quick shape is too small for a meaningful speed-up: no ratio is printed.
    assert '| pyg_mentor Evaluator |' in printed
    assert printed.count('| quick mode: targets not applicable |') == 2

"""Smoke test of ``benchmarks/memory.py``, so the script cannot rot."""

from __future__ import annotations

import json
import math

import pytest
import torch

from benchmarks import memory


@pytest.mark.slow  # ~30 s: one subprocess per cell, dense 3,000 x 3,000 matrices
def test_quick_run(tmp_path, capsys):
    out = tmp_path / 'm.json'
    module = memory
    result = module.main(['--quick', '--out', str(out)])
    saved = json.loads(out.read_text())
    assert saved['quick'] and {'date', 'commit', 'torch', 'cores'} <= set(saved)
    assert [(r['side'], r['rows']) for r in saved['rows']] == [('users', 3000), ('items', 1200)]
    for row in saved['rows']:
        assert row['value_rel_diff'] < 1e-6
        # Four N x N float32 matrices for the release's dense forward + backward.
        assert row['dense_estimated_bytes'] == 4 * row['rows'] ** 2 * 4
        if row['chunked_peak_extra_bytes'] is not None:  # Linux
            assert 0 < row['chunked_peak_extra_bytes']
            # The full matrices really are measured, and cost more (3000^2: 137 MB).
            if row['rows'] == 3000 and row['dense_measured']:
                assert row['dense_peak_extra_bytes'] > 2 * row['chunked_peak_extra_bytes']
    assert result['datasets']['quick']['chunked'] == max(
        r['chunked_peak_extra_bytes'] or 0 for r in saved['rows']
    )
    text = (tmp_path / 'm.md').read_text()
    assert text.startswith('# Memory: graph-perturbation InfoNCE')
    assert 'Target <= 300 MB extra on Sports: quick mode: targets not applicable.' in text
    assert '| quick | users | 3,000 |' in capsys.readouterr().out


def test_reference_value_is_the_formula():
    # Hand-sized case: N = 2 rows, tau = 1, orthogonal / aligned unit rows.
    module = memory
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    # rows: log(e^1 + e^0) - 1, twice
    expected = math.log(math.e + 1) - 1
    assert abs(module.reference_value(a, b, 1.0, block=1) - expected) < 1e-12

"""Smoke test of ``benchmarks/epoch.py``, so the script cannot rot."""

from __future__ import annotations

import json

from benchmarks import epoch


def test_quick_run(tmp_path, capsys):
    out = tmp_path / 'e.json'
    result = epoch.main(['--quick', '--out', str(out)])
    saved = json.loads(out.read_text())
    assert saved['quick'] and saved['steps'] == 1
    assert {'date', 'torch', 'threads', 'cores', 'command', 'run_time_s'} <= set(saved)
    from pyg_mentor.nn.models import MODELS

    methods = [row['method'] for row in saved['rows']]
    assert methods[:5] == ['ours', 'release', 'floor', 'ours_batch', 'ours_default']
    # Every other registered model is timed too.
    assert set(methods[5:]) == set(MODELS) - {'mentor'} >= {'lightgcn', 'mf_bpr'}
    rows = {row['method']: row for row in saved['rows']}
    for row in saved['rows']:
        assert row['step_s'] > 0 and row['step_vs_floor'] > 0
        assert row['epoch_s'] >= row['epoch_train_s']
    assert rows['floor']['eval_s'] is None and rows['ours']['eval_s'] > 0
    assert rows['release']['speedup_vs_release'] == 1.0
    # The release-style re-creation computes what our model computes.
    check = saved['check']
    assert check['loss_rel_diff'] < 1e-4
    assert all(term['rel_diff'] < 1e-4 for term in check['terms'].values())
    assert check['grad_max_rel_diff'] < 1e-3
    assert check['item_graph_entries_differing'] == 0
    assert set(saved['metrics']) >= {'ours', 'release', 'lightgcn', 'mf_bpr'}
    assert result['shape']['users'] == 300
    text = (tmp_path / 'e.md').read_text()
    assert text.startswith('# MENTOR training step and epoch')
    assert 'Command: `python benchmarks/epoch.py --quick' in text
    assert '| release-style |' in capsys.readouterr().out


def test_memory_probe():
    memory = epoch.measure_memory('mf_bpr', ['--quick'])
    if memory is not None:  # Linux only
        assert memory['peak_bytes'] >= memory['data_rss_bytes'] > 0

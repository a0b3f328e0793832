"""Smoke test of ``benchmarks/propagation.py``, so the script cannot rot."""

from __future__ import annotations

import json

import pytest

from benchmarks import propagation


def test_quick_run(tmp_path, capsys):
    module = propagation
    out = tmp_path / 'p.json'
    result = module.main(['--quick', '--contention', '0', '1', '--out', str(out)])
    saved = json.loads(out.read_text())
    assert saved['quick'] and saved['repeat'] == 2 and saved['widths'] == [64]
    assert saved['contention'] == [0, 1]
    assert {'date', 'torch', 'threads', 'cores', 'load_average'} <= set(saved)
    assert result['rows'] == saved['rows']

    rows = saved['rows']
    user_item = {r['method'] for r in rows if r['graph'] == 'user-item'}
    assert {
        module.OURS_HETERO,
        module.OURS_HOMO,
        module.RELEASE,
        'PyG LGConv(normalize=True)',
        'torch.sparse.mm COO',
        'torch.sparse.mm CSR',
        'torch_sparse.SparseTensor matmul',
    } <= user_item
    assert {r['graph'] for r in rows} == {'user-item', 'item kNN (k=10)'}
    # Every method of every cell ran (or says why not) and agreed with ours:
    cells = {(r['graph'], r['width'], r['pass_'], r['contention']) for r in rows}
    assert cells == {
        (g, 64, p, c)
        for g in ('user-item', 'item kNN (k=10)')
        for p in ('fwd', 'fwd+bwd')
        for c in (0, 1)
    }
    for row in rows:
        if row['skipped']:
            assert row['method'] == 'torch_sparse.SparseTensor matmul'
            assert module.torch_sparse is None
            continue
        assert len(row['times_ms']) == 2 and row['median_ms'] > 0
        assert row['edge_cols_per_s'] > 0
        assert row['out_max_rel_diff'] < 1e-4
        if row['pass_'] == 'fwd+bwd':
            assert row['grad_max_rel_diff'] < 1e-4
        else:
            assert row['grad_max_rel_diff'] is None
        assert row['speedup_vs_release'] > 0 and row['time_vs_best_raw'] > 0
        assert row['time_vs_fastest'] >= 1.0
        if row['family'] == 'release':
            assert row['speedup_vs_release'] == 1.0
    assert len(saved['targets']) == 4  # 2 layers, d = 64, fwd+bwd, 2 levels
    assert {t['contention'] for t in saved['targets']} == {0, 1}

    md = out.with_suffix('.md').read_text()
    assert md.startswith('Propagation benchmark: `')
    assert 'python benchmarks/propagation.py --quick --contention 0 1 --out' in md.splitlines()[0]
    # The targets are set for the full-size graphs: a quick run does not judge them.
    assert '- quick mode: targets not applicable' in md and 'MISSED' not in md
    assert all(check['met'] is None for check in saved['targets'])
    # Every table records the threading environment; one summary per cell.
    titles = [line for line in md.splitlines() if line.startswith('### quick:')]
    assert len(titles) == 2
    assert titles[0].endswith('torch threads, 0 competing busy processes')
    assert titles[1].endswith('torch threads, 1 competing busy process')
    assert all('OMP_WAIT_POLICY=' in t for t in titles)
    assert '| method | 0 busy: ms | / fastest | 1 busy: ms | / fastest |' in md
    assert md.count('| method | 0 busy: ms |') == 4
    printed = capsys.readouterr().out
    assert f'| user-item | 64 | fwd+bwd | {module.OURS_HETERO} |' in printed
    assert '| item kNN (k=10) | 64 | fwd | ours: ItemGraphConv |' in printed


def test_release_style_conv_matches_ours():
    import torch

    module = propagation
    edge_index = module.random_pairs(30, 12, 80, seed=1)
    assert edge_index.unique(dim=1).size(1) == 80  # distinct pairs
    methods = module.user_item_methods(edge_index, 30, 12)
    x = torch.randn(42, 8)
    ref = methods[0].run(x[:30], x[30:])
    for method in methods[1:]:
        if method.run is None:
            continue
        out = method.run(x)[0]
        assert torch.allclose(out, torch.cat(ref), atol=1e-5), method.name


def test_competing_load_is_bounded_and_stopped():
    module = propagation
    with module.competing_load(2, max_s=60) as procs:
        assert len(procs) == 2 and all(p.poll() is None for p in procs)
        module.check_load(procs, 60)
    assert all(p.poll() is not None for p in procs)  # killed on exit

    with pytest.raises(RuntimeError, match='--contention-max-s'):
        with module.competing_load(1, max_s=0.01) as procs:
            procs[0].wait(timeout=10)  # stopped by itself
            module.check_load(procs, 0.01)
    with module.competing_load(0, max_s=60) as procs:
        assert procs == []


def test_contention_levels_must_not_be_negative():
    with pytest.raises(SystemExit):
        propagation.main(['--quick', '--contention', '-1'])

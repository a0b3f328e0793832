"""Smoke tests of ``benchmarks/knn.py``, so the script cannot rot."""

from __future__ import annotations

import json

import pytest

from benchmarks import knn

QUICK_METHODS = {
    'dense torch (release)',
    'faiss exact',
    'faiss IVF nprobe=8',
    'faiss IVF nprobe=32',
    'faiss IVF nprobe=128',
}


@pytest.mark.slow  # ~1 min: 22,000 items of 384-d features, dense and FAISS
def test_quick_run(tmp_path, capsys):
    out = tmp_path / 'k.json'
    result = knn.main(['--quick', '--out', str(out)])
    saved = json.loads(out.read_text())
    assert saved['quick'] and saved['repeat'] == 1
    assert {'date', 'torch', 'threads', 'cores', 'command', 'run_s'} <= set(saved)
    rows = saved['rows']
    assert {(row['items'], row['method']) for row in rows} == {
        (items, method) for items in (2000, 20_000) for method in QUICK_METHODS
    }
    for row in rows:
        assert row['runs'] == 1 and not row['estimated'] and row['median_s'] > 0
        assert 0.0 <= row['recall'] <= 1.0
        assert row['recall_queries'] == row['items']
        assert row['peak_extra_bytes'] is None or row['peak_extra_bytes'] >= 0
        if row['method'] == 'faiss exact':
            assert row['recall'] == 1.0  # the reference
        if row['method'] == 'dense torch (release)':
            assert row['recall'] > 0.99  # the same neighbours, up to rounding
    # nprobe=128 visits all 51 lists of 2,000 items: exhaustive search.
    assert next(r for r in rows if r['items'] == 2000 and r.get('nprobe') == 128)['recall'] == 1.0
    assert result['rows'] == rows
    printed = capsys.readouterr().out
    assert '| 20,000 | faiss IVF nprobe=8 |' in printed
    md = out.with_suffix('.md').read_text()
    assert md.startswith('Command: `python benchmarks/knn.py --quick --out ')
    assert 'Run time: ' in md and '| 2,000 | faiss exact |' in md
    assert '- quick mode: targets not applicable' in md and 'smallest tried' not in md


def test_sampled_large_size_path(tmp_path):
    # The path of the 1M cell of --full, on 3,000 items: sampled exact search,
    # IVF trained on a sample (knn_item_graph train_size), the full build of the chosen nprobe.
    out = tmp_path / 's.json'
    knn.main([
        '--sizes', '3000', '--sample-above', '2000', '--sample-queries', '500',
        '--train-size', '1000', '--nprobes', '1', '64', '--repeat', '1', '--out', str(out),
    ])  # fmt: skip
    rows = {row['method']: row for row in json.loads(out.read_text())['rows']}
    assert set(rows) == {
        'dense torch (release)',
        'faiss exact',
        'faiss IVF nprobe=1',
        'faiss IVF nprobe=64',
    }
    assert rows['faiss exact']['estimated'] and rows['faiss exact']['recall'] == 1.0
    nlist = rows['faiss exact']['nlist']
    assert nlist == 76  # knn_item_graph's default for 3,000 items
    for name in ('faiss IVF nprobe=1', 'faiss IVF nprobe=64'):
        row = rows[name]
        assert row['recall_queries'] == 500 and 0.0 <= row['recall'] <= 1.0
        assert row['train_size'] == 39 * nlist  # raised to 39 points per list
    assert rows['faiss IVF nprobe=1']['estimated']
    assert rows['faiss IVF nprobe=1']['recall'] < 0.95
    # nprobe=64 of 76 lists reaches the target: built in full and measured.
    assert not rows['faiss IVF nprobe=64']['estimated']
    assert rows['faiss IVF nprobe=64']['recall'] > 0.95
    assert rows['dense torch (release)']['recall'] > 0.99

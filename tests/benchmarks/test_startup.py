"""Smoke test of ``benchmarks/startup.py``, so the script cannot rot."""

import json

from benchmarks import startup


def test_quick_run(tmp_path, capsys):
    out = tmp_path / 's.json'
    result = startup.main(['--quick', '--out', str(out)])
    saved = json.loads(out.read_text())
    assert saved['quick'] and saved['repeat'] == 1 and saved['rows'] == result['rows']
    rows = {row['command']: row for row in saved['rows']}
    judged = [row for row in saved['rows'] if row['judged']]
    assert len(judged) == 6 and all(row['met'] is None for row in judged)  # quick: no verdict
    # Help and argument errors never import torch; a library command does.
    for row in judged[1:]:
        assert row['imports_torch'] is False, row['command']
    assert rows['pyg-mentor models (loads the library)']['imports_torch'] is True
    assert all(row['median_s'] > 0 for row in saved['rows'])
    md = out.with_suffix('.md').read_text()
    assert md.startswith('# Start-up of the command line')
    assert md.count('| quick mode: targets not applicable |') == 6 and 'NOT met' not in md
    assert '| pyg-mentor --help |' in capsys.readouterr().out

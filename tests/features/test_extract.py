import logging

import numpy as np
import pytest

from pyg_mentor.features import FeatureExtractionError, extract_features


def embed(text):
    r"""A 4-d "embedding" the test can compute on its own."""
    return np.array([len(text), sum(map(ord, text)) % 1009, text.count(','), 1.0], dtype=np.float32)


class FakeEncoder:
    r"""Encodes texts with :func:`embed`; counts calls; optionally crashes (a
    simulated kill) when called for batch number :obj:`crash_at` (0-based), or
    reports the values in :obj:`fail` as failed."""

    def __init__(self, crash_at=None, fail=(), fingerprint='fake-v1'):
        self.fingerprint = fingerprint
        self.crash_at = crash_at
        self.fail = set(fail)
        self.calls = []

    def encode(self, texts):
        if self.crash_at is not None and len(self.calls) == self.crash_at:
            raise KeyboardInterrupt('simulated kill')
        self.calls.append(list(texts))
        rows = np.stack([embed(t) for t in texts])
        if not self.fail:
            return rows
        return rows, [f'bad value {t}' if t in self.fail else None for t in texts]


VALUES = {i: f'item {i}, text' * (i % 3 + 1) for i in range(11) if i not in (4, 9)}


def expected_rows(num_items=11):
    out = np.zeros((num_items, 4), dtype=np.float32)
    for i, text in VALUES.items():
        out[i] = embed(text)
    return out


def partial_folders(folder):
    return sorted(p.name for p in folder.iterdir() if '.partial-' in p.name)


def test_rows_line_up_with_item_ids(tmp_path):
    out = tmp_path / 'text_feat.npy'
    enc = FakeEncoder()
    report = extract_features(VALUES, 11, enc, out, batch_size=4, missing='zero', progress=False)
    rows = np.load(out)
    assert rows.dtype == np.float32 and rows.shape == (11, 4)
    np.testing.assert_array_equal(rows, expected_rows())
    # Batches of 4 in increasing id order, without the missing items 4 and 9.
    assert enc.calls == [[VALUES[i] for i in ids] for ids in ([0, 1, 2, 3], [5, 6, 7, 8], [10])]
    assert report.missing == [4, 9] and report.failed == {} and report.encoded == 9
    assert (report.num_items, report.dim, report.batches) == (11, 4, 3)
    assert partial_folders(tmp_path) == []  # Cleaned up.
    # Deterministic: a second run writes the same bytes.
    extract_features(
        VALUES,
        11,
        FakeEncoder(),
        tmp_path / 'again.npy',
        batch_size=4,
        missing='zero',
        progress=False,
    )
    assert out.read_bytes() == (tmp_path / 'again.npy').read_bytes()


def test_missing_policies(tmp_path, caplog):
    names = [f'orig{i}' for i in range(12)]
    names[11] = None  # MMRec id 11 has no original id (a gap in the id map).
    with pytest.raises(
        FeatureExtractionError,
        match=r"3 item\(s\) have no value: 4 \(original 'orig4'\), 9 "
        r"\(original 'orig9'\), 11 \(not in the id map\)\. Choose how",
    ):
        extract_features(
            VALUES, 12, FakeEncoder(), tmp_path / 'a.npy', original_ids=names, progress=False
        )
    assert not (tmp_path / 'a.npy').exists()

    with caplog.at_level(logging.WARNING):
        extract_features(
            VALUES,
            12,
            FakeEncoder(),
            tmp_path / 'z.npy',
            missing='zero',
            original_ids=names,
            progress=False,
        )
    assert "3 item(s) have no value, filled with zeros: 4 (original 'orig4')" in caplog.text
    np.testing.assert_array_equal(np.load(tmp_path / 'z.npy'), expected_rows(12))

    extract_features(VALUES, 12, FakeEncoder(), tmp_path / 'm.npy', missing='mean', progress=False)
    expected = expected_rows(12)
    mean = np.mean([embed(t).astype(np.float64) for t in VALUES.values()], axis=0)
    expected[[4, 9, 11]] = mean.astype(np.float32)
    np.testing.assert_allclose(np.load(tmp_path / 'm.npy'), expected, rtol=1e-6)


def test_failed_values_are_reported_and_kept_for_a_rerun(tmp_path):
    out = tmp_path / 'feat.npy'
    values = {i: f'text {i}' for i in range(11)}  # No missing item: only failures.
    bad = {values[2], values[7]}
    with pytest.raises(
        FeatureExtractionError,
        match=r"2 value\(s\) failed to encode: 2 \(original 'o2'\): bad value "
        r"text 2; 7 \(original 'o7'\): bad value text 7\. .*the encoded "
        r'batches are kept in',
    ):
        extract_features(
            values,
            11,
            FakeEncoder(fail=bad),
            out,
            batch_size=3,
            missing='error',
            original_ids=[f'o{i}' for i in range(11)],
            progress=False,
        )
    assert not out.exists() and len(partial_folders(tmp_path)) == 1
    # Another policy reuses every encoded batch: the encoder is not called again.
    enc = FakeEncoder(fail=bad)
    report = extract_features(values, 11, enc, out, batch_size=3, missing='zero', progress=False)
    assert enc.calls == [] and report.resumed_batches == report.batches == 4
    expected = np.stack([embed(values[i]) for i in range(11)])
    expected[[2, 7]] = 0
    np.testing.assert_array_equal(np.load(out), expected)
    assert sorted(report.failed) == [2, 7] and report.missing == []
    assert report.to_dict()['failed'][0] == {
        'item': 2,
        'original_id': None,
        'reason': 'bad value text 2',
    }
    assert partial_folders(tmp_path) == []


@pytest.mark.parametrize('crash_at', [0, 1, 2])
def test_resume_after_a_kill_gives_the_same_file(tmp_path, crash_at):
    reference = tmp_path / 'reference.npy'
    extract_features(
        VALUES, 11, FakeEncoder(), reference, batch_size=2, missing='zero', progress=False
    )
    run = tmp_path / 'run'
    run.mkdir()
    out = run / 'text_feat.npy'
    with pytest.raises(KeyboardInterrupt):
        extract_features(
            VALUES,
            11,
            FakeEncoder(crash_at=crash_at),
            out,
            batch_size=2,
            missing='zero',
            progress=False,
        )
    assert not out.exists()
    (side,) = partial_folders(run)
    assert len(list((run / side).glob('batch-*.npz'))) == crash_at
    enc = FakeEncoder()
    report = extract_features(VALUES, 11, enc, out, batch_size=2, missing='zero', progress=False)
    # Only the batches after the kill are encoded again (9 values in 5 batches).
    assert report.resumed_batches == crash_at and len(enc.calls) == 5 - crash_at
    assert out.read_bytes() == reference.read_bytes()
    assert partial_folders(run) == []


def test_partial_results_are_keyed_by_inputs_and_options(tmp_path):
    out = tmp_path / 'feat.npy'
    with pytest.raises(KeyboardInterrupt):
        extract_features(
            VALUES, 11, FakeEncoder(crash_at=2), out, batch_size=2, missing='zero', progress=False
        )
    # Another batch size, model or text: nothing is reused.
    for kwargs, values in [
        ({'batch_size': 3}, VALUES),
        ({'fingerprint': 'fake-v2'}, VALUES),
        ({}, {**VALUES, 0: 'changed'}),
    ]:
        enc = FakeEncoder(fingerprint=kwargs.get('fingerprint', 'fake-v1'))
        report = extract_features(
            values,
            11,
            enc,
            tmp_path / 'other.npy',
            batch_size=kwargs.get('batch_size', 2),
            missing='zero',
            progress=False,
        )
        assert report.resumed_batches == 0
    # A damaged partial batch is encoded again.
    (side,) = partial_folders(tmp_path)
    (tmp_path / side / 'batch-000001.npz').write_bytes(b'not a zip')
    enc = FakeEncoder()
    report = extract_features(VALUES, 11, enc, out, batch_size=2, missing='zero', progress=False)
    assert report.resumed_batches == 1 and len(enc.calls) == 4
    np.testing.assert_array_equal(np.load(out), expected_rows())


def test_misbehaving_encoders_and_bad_arguments(tmp_path):
    class Wrong:
        fingerprint = 'wrong'

        def __init__(self, result):
            self.result = result

        def encode(self, texts):
            return self.result(len(texts))

    out = tmp_path / 'f.npy'
    values = {0: 'a', 1: 'b'}
    with pytest.raises(
        FeatureExtractionError,
        match=r'shape \[2, dim\] for 2 values, got '
        r'shape \(3, 4\)',
    ):
        extract_features(values, 2, Wrong(lambda n: np.ones((n + 1, 4))), out, progress=False)
    with pytest.raises(
        FeatureExtractionError,
        match=r'NaN or infinite values for MMRec '
        r'item\(s\) \[1\]',
    ):
        extract_features(
            values, 2, Wrong(lambda n: np.array([[1.0], [np.nan]])), out, progress=False
        )
    with pytest.raises(ValueError, match=r'MMRec item ids \[5\] are outside \[0, 2\)'):
        extract_features({5: 'x'}, 2, FakeEncoder(), out, progress=False)
    with pytest.raises(ValueError, match='missing must be one of'):
        extract_features(values, 2, FakeEncoder(), out, missing='drop', progress=False)
    with pytest.raises(FeatureExtractionError, match='no item has a usable value'):
        extract_features({0: ' '}, 2, FakeEncoder(), out, missing='zero', progress=False)
    assert not out.exists()

from __future__ import annotations

import gzip
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.data import HeteroData

from pyg_mentor.datasets import mmrec
from pyg_mentor.datasets.mmrec import (
    DataFormatError,
    MMRecDataset,
    load_mmrec,
    read_mmrec_inter,
)

SHIPPED = Path(__file__).parents[2] / 'datasets'

# A hand-built file: columns in a non-standard order plus ignored columns, rows
# not grouped by user, user 2 without train rows (cold), item 5 only in test.
TINY = """\
itemID\trating\tuserID\tx_label\ttimestamp
1\t5\t0\t0\t100
3\t4\t1\t2\t101
2\t3\t0\t0\t102
4\t1\t2\t1\t103
0\t2\t0\t1\t104
2\t5\t1\t0\t105
3\t5\t0\t2\t106
0\t4\t2\t2\t107
4\t3\t3\t0\t108
1\t2\t1\t1\t109
5\t1\t1\t2\t110
0\t1\t3\t0\t111
2\t1\t3\t1\t112
1\t1\t3\t2\t113
4\t1\t1\t0\t114
"""
# Expected, written out by hand (file order kept inside each split):
TINY_NUM_USERS, TINY_NUM_ITEMS = 4, 6
TINY_TRAIN = [[0, 0, 1, 3, 3, 1], [1, 2, 2, 4, 0, 4]]
TINY_VALID = [[0, 1, 3], [0, 1, 2]]  # user 2's (2, 4) dropped: cold
TINY_TEST = [[1, 0, 1, 3], [3, 3, 5, 1]]  # user 2's (2, 0) dropped: cold

HEADER = 'userID\titemID\tx_label\n'


def write(root: Path, name: str, text: str, *, gz: bool = False) -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    if gz:
        path = folder / f'{name}.inter.gz'
        with gzip.open(path, 'wb') as f:
            f.write(text.encode())
    else:
        path = folder / f'{name}.inter'
        path.write_text(text)
    return path


def assert_tiny(data: HeteroData) -> None:
    assert set(data.node_types) == {'user', 'item'}
    assert set(data.edge_types) == {
        ('user', 'rates', 'item'),
        ('item', 'rated_by', 'user'),
    }
    assert data['user'].num_nodes == TINY_NUM_USERS
    assert data['item'].num_nodes == TINY_NUM_ITEMS
    store = data['user', 'rates', 'item']
    assert set(store.keys()) == {'edge_index', 'valid_label_index', 'test_label_index'}
    for key, expected in (
        ('edge_index', TINY_TRAIN),
        ('valid_label_index', TINY_VALID),
        ('test_label_index', TINY_TEST),
    ):
        assert store[key].dtype == torch.long
        assert store[key].tolist() == expected
    flipped = data['item', 'rated_by', 'user']
    assert list(flipped.keys()) == ['edge_index']
    assert flipped.edge_index.tolist() == [TINY_TRAIN[1], TINY_TRAIN[0]]


# ------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------
def test_read_mmrec_inter_columns_in_any_order(tmp_path):
    path = write(tmp_path, 'tiny', TINY)
    cols = read_mmrec_inter(path)
    assert set(cols) == {'userID', 'itemID', 'x_label'}
    assert cols['userID'].tolist() == [0, 1, 0, 2, 0, 1, 0, 2, 3, 1, 1, 3, 3, 3, 1]
    assert cols['itemID'].tolist() == [1, 3, 2, 4, 0, 2, 3, 0, 4, 1, 5, 0, 2, 1, 4]
    assert cols['x_label'].tolist() == [0, 2, 0, 1, 1, 0, 2, 2, 0, 1, 2, 0, 1, 2, 0]
    assert all(v.dtype == np.int64 for v in cols.values())


def test_read_mmrec_inter_crlf_bom_trailing_blank_lines(tmp_path):
    text = '\ufeffuserID\titemID\tx_label\r\n0\t1\t0\r\n1\t0\t2\r\n\r\n\n'
    path = tmp_path / 'x.inter'
    path.write_bytes(text.encode('utf-8'))
    cols = read_mmrec_inter(path)
    assert cols['userID'].tolist() == [0, 1]
    assert cols['itemID'].tolist() == [1, 0]
    assert cols['x_label'].tolist() == [0, 2]


def test_read_mmrec_inter_header_only(tmp_path):
    path = tmp_path / 'x.inter'
    path.write_text(HEADER)
    cols = read_mmrec_inter(path)
    assert all(v.shape == (0,) for v in cols.values())


def test_load_mmrec_tiny(tmp_path, caplog):
    write(tmp_path, 'tiny', TINY)
    with caplog.at_level(logging.INFO, logger=mmrec.__name__):
        data = load_mmrec(tmp_path, 'tiny')
    assert_tiny(data)
    assert list(data['item'].keys()) == ['num_nodes']  # no feature files
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert 'dropped 1 valid row(s) of 1 cold-start user(s)' in warnings[0]
    assert 'dropped 1 test row(s) of 1 cold-start user(s)' in warnings[1]
    assert all('tiny.inter' in w for w in warnings)
    # Items 3 and 5 (valid/test only) are kept and reported.
    assert any('2 of 6 item(s) have no train row' in r.getMessage() for r in caplog.records)


def test_load_mmrec_gzip(tmp_path):
    write(tmp_path, 'tiny', TINY, gz=True)
    assert_tiny(load_mmrec(tmp_path, 'tiny'))


def test_plain_file_preferred_over_gzip(tmp_path):
    write(tmp_path, 'tiny', TINY)
    write(tmp_path, 'tiny', HEADER + '0\t0\t0\n', gz=True)
    assert_tiny(load_mmrec(tmp_path, 'tiny'))


def test_duplicates_dropped_and_logged(tmp_path, caplog):
    write(
        tmp_path,
        'dup',
        HEADER
        + (
            '0\t1\t0\n'
            '0\t2\t0\n'
            '0\t1\t0\n'  # duplicate train pair
            '0\t3\t1\n'
            '0\t4\t2\n'
            '1\t0\t0\n'
            '1\t1\t2\n'
            '1\t1\t2\n'  # duplicate test pair
            '1\t1\t2\n'  # and again
            '1\t3\t0\n'
            '1\t2\t1\n'
            '1\t2\t0\n'  # the same pair in another split is not a duplicate
        ),
    )
    with caplog.at_level(logging.WARNING, logger=mmrec.__name__):
        data = load_mmrec(tmp_path, 'dup')
    store = data['user', 'rates', 'item']
    assert store.edge_index.tolist() == [[0, 0, 1, 1, 1], [1, 2, 0, 3, 2]]
    assert store.valid_label_index.tolist() == [[0, 1], [3, 2]]
    assert store.test_label_index.tolist() == [[0, 1], [4, 1]]
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        'dropped 1 duplicate (user, item) row(s) from the train split' in m for m in messages
    )
    assert any('dropped 2 duplicate (user, item) row(s) from the test split' in m for m in messages)
    assert any('1 valid pair(s) also appear in the train split' in m for m in messages)


def test_features_attached(tmp_path):
    write(tmp_path, 'tiny', TINY)
    image = np.arange(18, dtype=np.float64).reshape(6, 3) / 7
    text = -np.arange(12, dtype=np.float32).reshape(6, 2)
    np.save(tmp_path / 'tiny' / 'image_feat.npy', image)
    np.save(tmp_path / 'tiny' / 'text_feat.npy', text)
    np.save(tmp_path / 'tiny' / 'user_graph_dict.npy', np.zeros(3))  # ignored
    data = load_mmrec(tmp_path, 'tiny')
    assert_tiny(data)
    assert sorted(data['item'].keys()) == ['num_nodes', 'x_image', 'x_text']
    assert data['item'].x_image.dtype == torch.float32
    assert data['item'].x_text.dtype == torch.float32
    assert torch.equal(data['item'].x_image, torch.tensor(image.astype(np.float32)))
    assert torch.equal(data['item'].x_text, torch.tensor(text))


def test_real_baby_shipped(tmp_path):
    # Copied, so that the processed cache is not written into the repository.
    shutil.copytree(SHIPPED / 'baby', tmp_path / 'baby', ignore=shutil.ignore_patterns('processed'))
    data = MMRecDataset(tmp_path, 'baby')[0]
    store = data['user', 'rates', 'item']
    assert data['user'].num_nodes == 19445
    assert data['item'].num_nodes == 7050
    assert store.edge_index.size() == (2, 118551)
    assert store.valid_label_index.size() == (2, 20559)
    assert store.test_label_index.size() == (2, 21682)
    assert torch.equal(data['item', 'rated_by', 'user'].edge_index, store.edge_index.flip(0))
    for key in ('edge_index', 'valid_label_index', 'test_label_index'):
        users = store[key][0]
        assert torch.bincount(users, minlength=19445).min() >= 1, key


# ------------------------------------------------------------------------------
# The processed cache
# ------------------------------------------------------------------------------
def test_dataset_processes_once_and_reuses_cache(tmp_path, monkeypatch):
    write(tmp_path, 'tiny', TINY)
    dataset = MMRecDataset(tmp_path, 'tiny')
    assert len(dataset) == 1
    assert str(dataset) == 'MMRecDataset(tiny)'
    assert_tiny(dataset[0])
    cached = sorted(
        p.name for p in (tmp_path / 'tiny' / 'processed').iterdir() if p.name.startswith('data_')
    )
    assert len(cached) == 1

    def fail(*args, **kwargs):
        raise AssertionError('processed again although the raw files are unchanged')

    monkeypatch.setattr(mmrec, 'load_mmrec', fail)
    assert_tiny(MMRecDataset(tmp_path, 'tiny')[0])
    with pytest.raises(AssertionError, match='processed again'):
        MMRecDataset(tmp_path, 'tiny', force_reload=True)


def test_dataset_cache_invalidated_when_raw_files_change(tmp_path):
    path = write(tmp_path, 'tiny', TINY)
    processed = tmp_path / 'tiny' / 'processed'
    assert_tiny(MMRecDataset(tmp_path, 'tiny')[0])
    first = {p.name for p in processed.glob('data_*.pt')}

    # Same size, different content (user 3's train pair (3, 4) becomes (3, 5)):
    changed = TINY.replace('4\t3\t3\t0\t108', '5\t3\t3\t0\t108')
    assert len(changed) == len(TINY)
    path.write_text(changed)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    data = MMRecDataset(tmp_path, 'tiny')[0]
    assert data['user', 'rates', 'item'].edge_index[1].tolist() == [1, 2, 2, 5, 0, 4]
    second = {p.name for p in processed.glob('data_*.pt')}
    assert len(second) == 1 and second != first  # the stale file is removed

    # A new feature file changes the raw file list:
    np.save(tmp_path / 'tiny' / 'image_feat.npy', np.ones((6, 2)))
    data = MMRecDataset(tmp_path, 'tiny')[0]
    assert data['item'].x_image.shape == (6, 2)
    assert {p.name for p in processed.glob('data_*.pt')}.isdisjoint(second)


def test_dataset_pre_transform_and_transform(tmp_path):
    write(tmp_path, 'tiny', TINY)

    def pre(data):
        data['user'].marker = torch.tensor([7])
        return data

    def post(data):
        data['item'].seen = torch.tensor([1])
        return data

    data = MMRecDataset(tmp_path, 'tiny', pre_transform=pre, transform=post)[0]
    assert data['user'].marker.tolist() == [7]
    assert data['item'].seen.tolist() == [1]


# ------------------------------------------------------------------------------
# Bad input: one DataFormatError naming the file (and line)
# ------------------------------------------------------------------------------
def test_missing_folder(tmp_path):
    with pytest.raises(DataFormatError) as e:
        MMRecDataset(tmp_path, 'nope')
    message = str(e.value)
    assert 'does not exist' in message
    assert str(tmp_path / 'nope' / 'nope.inter') in message
    assert str(tmp_path / 'nope' / 'nope.inter.gz') in message
    assert not (tmp_path / 'nope').exists()


def test_missing_file(tmp_path):
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'empty' / 'other.inter').write_text(HEADER)
    with pytest.raises(DataFormatError) as e:
        load_mmrec(tmp_path, 'empty')
    message = str(e.value)
    assert str(tmp_path / 'empty' / 'empty.inter') in message
    assert str(tmp_path / 'empty' / 'empty.inter.gz') in message


BAD_INTER = {
    # case: (file text, expected line, fragments of the message)
    'empty_file': ('', 1, ['empty file']),
    'missing_column': (
        'userID\titemID\trating\n0\t0\t5\n',
        1,
        ["missing column(s) ['x_label']"],
    ),
    'duplicate_column': (
        'userID\titemID\tx_label\titemID\n0\t0\t0\t0\n',
        1,
        ["duplicate column 'itemID'"],
    ),
    'non_integer_id': (
        HEADER + '0\t0\t0\n0\tabc\t0\n',
        3,
        ["column 'itemID'", "integer id, got 'abc'"],
    ),
    'float_id': (HEADER + '0\t0\t0\n1.5\t0\t0\n', 3, ["column 'userID'", "got '1.5'"]),
    'empty_id': (HEADER + '0\t0\t0\n\t0\t0\n', 3, ["column 'userID'", "got ''"]),
    'huge_id': (
        HEADER + '0\t0\t0\n0\t99999999999999999999\t0\n',
        3,
        ["column 'itemID'"],
    ),
    'negative_id': (
        HEADER + '0\t0\t0\n0\t1\t0\n-3\t1\t1\n',
        4,
        ["column 'userID' must be a non-negative integer id, got -3"],
    ),
    'unknown_x_label': (
        HEADER + '0\t0\t0\n0\t1\t3\n',
        3,
        ["column 'x_label' must be 0 (train), 1 (valid) or 2 (test), got 3"],
    ),
    'non_integer_x_label': (
        HEADER + '0\t0\t0\n0\t1\ttest\n',
        3,
        ["column 'x_label'", "got 'test'"],
    ),
    'too_few_fields': (
        HEADER + '0\t0\t0\n0\t1\n0\t2\t0\n',
        3,
        ['expected 3 tab-separated fields', 'found 2 field(s)'],
    ),
    'too_many_fields': (
        HEADER + '0\t0\t0\n0\t2\t0\n0\t1\t0\t7\n',
        4,
        ['expected 3 tab-separated fields', 'found 4 field(s)'],
    ),
    'space_separated': (HEADER + '0 0 0\n', 2, ['found 1 field(s)']),
    'blank_line_inside': (HEADER + '0\t0\t0\n\n0\t1\t0\n', 3, ['an empty line']),
}


@pytest.mark.parametrize('case', sorted(BAD_INTER))
def test_bad_inter_file(tmp_path, case):
    text, line, fragments = BAD_INTER[case]
    path = write(tmp_path, 'bad', text)
    for call in (lambda: read_mmrec_inter(path), lambda: MMRecDataset(tmp_path, 'bad')):
        with pytest.raises(DataFormatError) as e:
            call()
        message = str(e.value)
        assert message.startswith(f'{path}, line {line}: '), message
        for fragment in fragments:
            assert fragment in message, message


def test_bad_gzip_file(tmp_path):
    folder = tmp_path / 'bad'
    folder.mkdir()
    path = folder / 'bad.inter.gz'
    path.write_text(HEADER)  # not gzip
    with pytest.raises(DataFormatError, match='cannot be read') as e:
        load_mmrec(tmp_path, 'bad')
    assert str(path) in str(e.value)


@pytest.mark.parametrize('text', [HEADER, HEADER + '0\t0\t1\n0\t1\t2\n'])
def test_empty_train_split(tmp_path, text):
    path = write(tmp_path, 'bad', text)
    with pytest.raises(DataFormatError) as e:
        load_mmrec(tmp_path, 'bad')
    assert str(e.value).startswith(f'{path}: the train split is empty')


def object_array() -> np.ndarray:
    arr = np.empty((6, 2), dtype=object)
    arr[:] = 1.0
    return arr


BAD_FEATURES = {
    # case: (array, fragments of the message)
    'wrong_rows': (np.zeros((5, 3)), ['has 5 rows', '6 items']),
    'one_dimensional': (np.zeros(6), ['has shape (6,) (1-D)']),
    'three_dimensional': (np.zeros((6, 2, 2)), ['(3-D)']),
    'integer': (np.zeros((6, 3), dtype=np.int64), ['has dtype int64']),
    'boolean': (np.zeros((6, 3), dtype=bool), ['has dtype bool']),
    'object': (object_array(), ['holds Python objects', 'refused']),
    'no_columns': (np.zeros((6, 0)), ['has no columns']),
}


@pytest.mark.parametrize('case', sorted(BAD_FEATURES))
def test_bad_feature_file(tmp_path, case):
    arr, fragments = BAD_FEATURES[case]
    write(tmp_path, 'tiny', TINY)
    path = tmp_path / 'tiny' / 'image_feat.npy'
    np.save(path, arr, allow_pickle=True)
    with pytest.raises(DataFormatError) as e:
        load_mmrec(tmp_path, 'tiny')
    message = str(e.value)
    assert message.startswith(f'{path}: '), message
    for fragment in fragments:
        assert fragment in message, message


def test_feature_file_not_npy(tmp_path):
    write(tmp_path, 'tiny', TINY)
    path = tmp_path / 'tiny' / 'text_feat.npy'
    path.write_bytes(b'not an array')
    with pytest.raises(DataFormatError) as e:
        load_mmrec(tmp_path, 'tiny')
    assert str(e.value).startswith(
        f"{path}: is not a .npy file (it starts with the text 'not an a', e.g. a text file)"
    )
    assert 'pickle' not in str(e.value)


def test_feature_file_npz(tmp_path):
    write(tmp_path, 'tiny', TINY)
    path = tmp_path / 'tiny' / 'text_feat.npy'
    with open(path, 'wb') as f:
        np.savez(f, x=np.zeros((6, 2)))
    with pytest.raises(DataFormatError) as e:
        load_mmrec(tmp_path, 'tiny')
    assert str(e.value).startswith(f'{path}: ')


def test_feature_file_non_finite(tmp_path):
    write(tmp_path, 'tiny', TINY)
    x = np.zeros((6, 3))
    x[2, 1] = np.nan
    x[4, 0] = np.inf
    x[4, 2] = -np.inf
    x[5, 0] = 1e300  # finite in float64, inf in float32
    path = tmp_path / 'tiny' / 'image_feat.npy'
    np.save(path, x)
    with pytest.raises(DataFormatError) as e:
        load_mmrec(tmp_path, 'tiny')
    message = str(e.value)
    assert message.startswith(f'{path}: 4 non-finite value(s)'), message
    assert 'in 3 row(s)' in message
    assert 'the first is row 2' in message


def test_feature_file_bad_modality_name(tmp_path):
    write(tmp_path, 'tiny', TINY)
    path = tmp_path / 'tiny' / 'my-image_feat.npy'
    np.save(path, np.zeros((6, 2)))
    with pytest.raises(DataFormatError) as e:
        load_mmrec(tmp_path, 'tiny')
    assert str(e.value).startswith(f'{path}: ')


def test_parser_is_fast(tmp_path):
    rng = np.random.default_rng(0)
    n = 200_000
    table = np.stack(
        [rng.integers(0, 20_000, n), rng.integers(0, 7_000, n), rng.integers(0, 3, n)],
        axis=1,
    )
    path = tmp_path / 'big.inter'
    with open(path, 'w') as f:
        f.write(HEADER)
        np.savetxt(f, table, fmt='%d', delimiter='\t')
    t = time.perf_counter()
    cols = read_mmrec_inter(path)
    elapsed = time.perf_counter() - t
    assert np.array_equal(cols['itemID'], table[:, 1])
    assert elapsed < 2.0, f'{elapsed:.2f} s for {n} rows'

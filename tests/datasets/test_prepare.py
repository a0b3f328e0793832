r"""Tests of ``pyg_mentor.datasets.prepare`` (``pyg-mentor prepare``).

Expected values come from independent re-derivations written here: a k-core that
peels one user or item at a time, and MMRec's ``1splitting.ipynb`` labelling code
transcribed line by line, applied to the shuffle the documented RNG contract names
(``np.random.RandomState(seed).permutation``).
"""

from __future__ import annotations

import csv
import gzip
import json
import os
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyg_mentor.cli import main
from pyg_mentor.datasets.mmrec import DataFormatError, MMRecDataset, load_mmrec
from pyg_mentor.datasets.prepare import (
    drop_duplicate_interactions,
    filter_min_rating,
    first_appearance_ids,
    k_core_mask,
    mmrec_split,
    mmrec_split_sizes,
    prepare_dataset,
    read_interactions,
    write_mmrec_dataset,
)
from pyg_mentor.typing import RATES


# --------------------------------------------------------------------------------------
# Independent re-derivations
# --------------------------------------------------------------------------------------
def brute_k_core(pairs: list[tuple], user_k: int, item_k: int) -> list[int]:
    r"""Indices of the rows kept by a k-core computed by peeling ONE violating user
    or item at a time (a different removal order than the code under test)."""
    alive = list(range(len(pairs)))
    while True:
        users = Counter(pairs[r][0] for r in alive)
        items = Counter(pairs[r][1] for r in alive)
        bad_users = sorted(u for u, c in users.items() if c < user_k)
        bad_items = sorted(i for i, c in items.items() if c < item_k)
        if bad_users:
            alive = [r for r in alive if pairs[r][0] != bad_users[0]]
        elif bad_items:
            alive = [r for r in alive if pairs[r][1] != bad_items[0]]
        else:
            return alive


def mmrec_labels(u_i_dict: dict[int, list]) -> list[int]:
    r"""MMRec ``preprocessing/1splitting.ipynb``, the labelling cell, verbatim."""
    new_label = []
    u_ids_sorted = sorted(u_i_dict.keys())
    for u in u_ids_sorted:
        items = u_i_dict[u]
        n_items = len(items)
        if n_items < 10:
            tmp_ls = [0] * (n_items - 2) + [1] + [2]
        else:
            val_test_len = int(n_items * 0.2)
            train_len = n_items - val_test_len
            val_len = val_test_len // 2
            test_len = val_test_len - val_len
            tmp_ls = [0] * train_len + [1] * val_len + [2] * test_len
        new_label.extend(tmp_ls)
    return new_label


def reference_prepare(
    records: list[tuple],
    *,
    min_rating: float | None = None,
    duplicates: str = 'mmrec',
    user_k: int = 5,
    item_k: int = 5,
    seed: int = 0,
) -> dict:
    r"""The whole pipeline in plain Python on (user, item, rating, time) records in
    file order. Returns the expected file rows and id maps."""
    rows = [r for r in records if min_rating is None or r[2] >= min_rating]
    if duplicates == 'mmrec':  # drop_duplicates(subset=[user, item, timestamp])
        seen, kept = set(), []
        for r in rows:
            if (r[0], r[1], r[3]) not in seen:
                seen.add((r[0], r[1], r[3]))
                kept.append(r)
        rows = kept
    else:  # One row per pair: earliest (first) / latest (last) time, file order on ties.
        best: dict[tuple, int] = {}
        for pos, r in enumerate(rows):
            key = (r[0], r[1])
            if key not in best:
                best[key] = pos
            else:
                t_old = rows[best[key]][3]
                if (duplicates == 'first' and r[3] < t_old) or (
                    duplicates == 'last' and r[3] >= t_old
                ):
                    best[key] = pos
        rows = [rows[p] for p in sorted(best.values())]
    rows = [rows[k] for k in brute_k_core([(r[0], r[1]) for r in rows], user_k, item_k)]

    user_map: dict[str, int] = {}
    item_map: dict[str, int] = {}
    for r in rows:  # pd.unique: order of first appearance
        user_map.setdefault(r[0], len(user_map))
        item_map.setdefault(r[1], len(item_map))
    indexed = [(user_map[r[0]], item_map[r[1]]) for r in rows]

    # df.sample(frac=1, random_state=seed) then a stable sort by userID:
    perm = np.random.RandomState(seed).permutation(len(indexed))
    u_i_dict: dict[int, list] = defaultdict(list)
    for p in perm.tolist():
        u_i_dict[indexed[p][0]].append(indexed[p][1])
    labels = mmrec_labels(u_i_dict)
    file_rows = [(u, i) for u in sorted(u_i_dict) for i in u_i_dict[u]]
    return {
        'rows': [(u, i, lab) for (u, i), lab in zip(file_rows, labels)],
        'users': list(user_map),
        'items': list(item_map),
        'kept': rows,
    }


def make_records(num: int = 1500, seed: int = 0) -> list[tuple]:
    r"""Skewed raw records (user, item, rating, time) with exact and time-shifted
    repeats, so every filter has work to do."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(num):
        u = int(rng.zipf(1.6)) % 120
        i = int(rng.zipf(1.6)) % 70
        out.append((f'A{u:03d}X', f'{i:010d}', float(rng.integers(1, 6)), 1_300_000_000 + t))
    for k in range(0, num, 37):  # exact repeats (dropped by every rule)
        out.insert(k + 1, out[k])
    for k in range(0, num, 53):  # same pair, later time
        u, i, r, t = out[k]
        out.append((u, i, 5.0 if r < 3 else 1.0, t + 10**6))
    return out


def write_csv(path: Path, records, header=None, sep=',', order=(0, 1, 2, 3)) -> Path:
    opener = gzip.open if path.name.endswith('.gz') else open
    with opener(path, 'wt', newline='') as f:
        w = csv.writer(f, delimiter=sep, lineterminator='\n')
        if header is not None:
            w.writerow(header)
        for r in records:
            w.writerow([r[j] if j != 3 else int(r[3]) for j in order])
    return path


def write_json_2014(path: Path, records) -> Path:
    opener = gzip.open if path.name.endswith('.gz') else open
    with opener(path, 'wt') as f:
        for u, i, r, t in records:
            rec = {
                'reviewerID': u,
                'asin': i,
                'reviewerName': 'x',
                'helpful': [0, 0],
                'reviewText': 'ok, fine\tgood',
                'overall': r,
                'summary': 's',
                'unixReviewTime': int(t),
                'reviewTime': '01 1, 2014',
            }
            f.write(json.dumps(rec) + '\n')
    return path


def write_json_2023(path: Path, records) -> Path:
    opener = gzip.open if path.name.endswith('.gz') else open
    with opener(path, 'wt') as f:
        for u, i, r, t in records:
            rec = {
                'rating': r,
                'title': 't',
                'text': 'x',
                'images': [],
                'asin': 'VARIANT-' + i,
                'parent_asin': i,
                'user_id': u,
                'timestamp': int(t) * 1000,
                'helpful_vote': 0,
                'verified_purchase': True,
            }
            f.write(json.dumps(rec) + '\n')
    return path


def read_file_rows(folder: Path, name: str) -> list[tuple[int, int, int]]:
    lines = (folder / f'{name}.inter').read_text().splitlines()
    assert lines[0] == 'userID\titemID\tx_label'
    return [tuple(int(x) for x in line.split('\t')) for line in lines[1:]]


def read_map_independently(path: Path, header: list[str]) -> list[str]:
    with open(path, newline='') as f:
        rows = list(csv.reader(f, delimiter='\t'))
    assert rows[0] == header
    assert [int(r[1]) for r in rows[1:]] == list(range(len(rows) - 1))
    return [r[0] for r in rows[1:]]


RECORDS = make_records()


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    'kind', ['csv', 'csv-header', 'tsv-named', 'json2014', 'json2023', 'csv.gz', 'json2023.gz']
)
def test_every_format_reads_the_same_rows(tmp_path, kind):
    recs = RECORDS[:200]
    kwargs = {}
    if kind == 'csv':  # McAuley's "ratings only" layout: no header
        path = write_csv(tmp_path / 'r.csv', recs)
    elif kind == 'csv.gz':
        path = write_csv(tmp_path / 'r.csv.gz', recs)
    elif kind == 'csv-header':
        path = write_csv(
            tmp_path / 'r.csv', recs, header=['userID', 'itemID', 'rating', 'timestamp']
        )
    elif kind == 'tsv-named':  # other column order, names chosen explicitly
        path = write_csv(
            tmp_path / 'r.tsv',
            recs,
            header=['when', 'stars', 'who', 'what'],
            sep='\t',
            order=(3, 2, 0, 1),
        )
        kwargs = dict(user_col='who', item_col='what', rating_col='stars', time_col='when')
    elif kind == 'json2014':
        path = write_json_2014(tmp_path / 'reviews_Baby_5.json', recs)
    else:
        path = write_json_2023(tmp_path / f'Baby.{"jsonl.gz" if "gz" in kind else "jsonl"}', recs)
    inter = read_interactions(path, **kwargs)
    assert inter.pairs() == [(r[0], r[1]) for r in recs]  # 2023: parent_asin, not asin
    assert inter.rating.tolist() == [r[2] for r in recs]
    scale = 1000 if kind.startswith('json2023') else 1  # 2023 times are in ms
    assert inter.timestamp.tolist() == [r[3] * scale for r in recs]
    assert inter.line.tolist() == [
        k + (2 if 'header' in kind or 'named' in kind else 1) for k in range(len(recs))
    ]
    # Ids are factorised in order of first appearance:
    assert inter.user_ids == list(dict.fromkeys(r[0] for r in recs))


def test_positions_and_header_options(tmp_path):
    path = tmp_path / 'x.txt'  # unknown extension: sniffed as TSV (a tab in line 1)
    path.write_text('7\tu1\ti1\n8\tu2\ti1\n\n9\tu1\ti2\n')
    inter = read_interactions(path, user_col=1, item_col='2')
    assert inter.pairs() == [('u1', 'i1'), ('u2', 'i1'), ('u1', 'i2')]
    assert inter.rating is None and inter.timestamp is None  # blank line skipped
    assert inter.line.tolist() == [1, 2, 4]
    # A header that is not auto-detected must be declared:
    path.write_text('a,b\nu1,i1\n')
    assert read_interactions(path, format='csv').pairs() == [('a', 'b'), ('u1', 'i1')]
    assert read_interactions(path, format='csv', header=True, user_col=0, item_col=1).pairs() == [
        ('u1', 'i1')
    ]
    with pytest.raises(DataFormatError, match='line 1: cannot tell the user column'):
        read_interactions(path, format='csv', header=True)
    with pytest.raises(ValueError, match='need a header'):
        read_interactions(path, format='csv', header=False, user_col='a', item_col='b')


def test_json_python_literal_lines_and_chosen_keys(tmp_path):
    path = tmp_path / 'old.json'
    path.write_text(
        "{'reviewerID': 'u1', 'asin': 'i1', 'overall': 4.0, "
        "'unixReviewTime': 5, 'helpful': [0, 1]}\n"
        '{"who": "u2", "what": 7, "overall": 1, "unixReviewTime": 6}\n'
    )
    inter = read_interactions(path, on_bad_row='skip')
    assert inter.pairs() == [('u1', 'i1')] and inter.bad_rows == 1  # literal accepted
    assert inter.rating.tolist() == [4.0] and inter.timestamp.tolist() == [5.0]
    with pytest.raises(DataFormatError, match=r'old\.json, line 2: missing the user field'):
        read_interactions(path)
    path.write_text('{"who": "u2", "what": 7}\n')
    inter = read_interactions(path, user_col='who', item_col='what')
    assert inter.pairs() == [('u2', '7')] and inter.rating is None


# --------------------------------------------------------------------------------------
# Bad rows: file and line, never a traceback
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    'name,text,line,match',
    [
        ('a.csv', 'u1,i1,5,1\nu2,i2,5\nu3,i3,5,3\n', 2, 'expected 4 field'),
        ('a.csv', 'u1,i1,5,1\nu2,i2,five,2\n', 2, "rating column 'field 2' must be a finite"),
        ('a.csv', 'u1,i1,5,1\nu2,i2,5,nan\n', 2, 'timestamp column'),
        ('a.csv', 'userID,itemID\nu1,i1\n,i2\n', 3, 'empty user id'),
        ('a.csv', 'userID,itemID\nu1,i1\nu2, \n', 3, 'empty item id'),
        ('a.csv', 'u,i,r\nu1,i1,5\n', 1, 'is line 1 a header'),
        (
            'a.json',
            '{"reviewerID": "u", "asin": "i", "overall": 5}\n\n{"reviewerID": "u"\n',
            3,
            'not a JSON object',
        ),
        ('a.json', '{"reviewerID": "u", "asin": "i"}\n[1, 2]\n', 2, 'expected a JSON object'),
        (
            'a.json',
            '{"reviewerID": "u", "asin": "i", "overall": 5}\n{"reviewerID": "v", "asin": "j"}\n',
            2,
            "missing the rating field 'overall'",
        ),
        (
            'a.json',
            '{"reviewerID": "u", "asin": "i"}\n{"reviewerID": "", "asin": "j"}\n',
            2,
            'must be a non-empty string',
        ),
        (
            'a.json',
            '{"user_id": "u", "parent_asin": "i", "rating": true}\n',
            1,
            "rating field 'rating' must be a finite number",
        ),
        ('a.json', '{"uid": "u", "iid": "i"}\n', 1, 'cannot tell the user field'),
        ('a.tsv', 'user\titem\nu1\ti1\nu2\ti2\textra\n', 3, 'expected 2 field'),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, name, text, line, match):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DataFormatError, match=match) as info:
        read_interactions(path)
    assert str(info.value).startswith(f'{path}, line {line}: ')


def test_unreadable_files(tmp_path):
    path = tmp_path / 'r.csv.gz'
    write_csv(path, RECORDS[:300])
    path.write_bytes(path.read_bytes()[:-30])  # truncated gzip
    with pytest.raises(DataFormatError, match=r'r\.csv\.gz: cannot be read after line'):
        read_interactions(path)
    bad = tmp_path / 'b.csv'
    bad.write_bytes(b'u1,i1\nu2,\xff\xfe\n')
    with pytest.raises(DataFormatError, match=r'b\.csv, line 2: not valid UTF-8'):
        read_interactions(bad)
    empty = tmp_path / 'e.csv'
    empty.write_text('\n\n')
    with pytest.raises(DataFormatError, match='empty'):
        read_interactions(empty)
    with pytest.raises(FileNotFoundError):
        read_interactions(tmp_path / 'missing.csv')


def test_skip_bad_rows_counts_them(tmp_path, caplog):
    path = tmp_path / 'a.csv'
    path.write_text('u1,i1,5,1\nu2,i2,x,2\nu3,i3\nu4,i4,4,4\n')
    inter = read_interactions(path, on_bad_row='skip')
    assert inter.pairs() == [('u1', 'i1'), ('u4', 'i4')] and inter.bad_rows == 2
    assert f'{path}, line 2' in caplog.text and f'{path}, line 3' in caplog.text


# --------------------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------------------
def test_duplicate_rules(tmp_path):
    path = tmp_path / 'd.csv'
    write_csv(
        path,
        [
            ('u', 'a', 5, 20),
            ('u', 'b', 5, 1),
            ('u', 'a', 3, 10),
            ('u', 'a', 4, 20),
            ('v', 'a', 1, 5),
            ('u', 'a', 2, 10),
        ],
    )
    inter = read_interactions(path)
    mmrec = drop_duplicate_interactions(inter, 'mmrec')  # (user, item, time), first kept
    assert mmrec.line.tolist() == [1, 2, 3, 5]
    first = drop_duplicate_interactions(inter, 'first')  # earliest time, then file order
    assert first.line.tolist() == [2, 3, 5]
    last = drop_duplicate_interactions(inter, 'last')  # latest time, then last in file
    assert last.line.tolist() == [2, 4, 5]
    for keep in ('mmrec', 'first', 'last'):
        expected = reference_prepare(read_back(inter), duplicates=keep, user_k=0, item_k=0)
        got = drop_duplicate_interactions(inter, keep)
        assert list(zip(got.pairs(), got.timestamp.tolist())) == [
            ((r[0], r[1]), r[3]) for r in expected['kept']
        ]
    no_time = tmp_path / 'n.csv'
    no_time.write_text('user,item\nu,a\nu,b\nu,a\n')
    assert drop_duplicate_interactions(read_interactions(no_time)).line.tolist() == [2, 3]


def read_back(inter) -> list[tuple]:
    return [
        (u, i, r, t)
        for (u, i), r, t in zip(inter.pairs(), inter.rating.tolist(), inter.timestamp.tolist())
    ]


def test_rating_threshold(tmp_path):
    path = write_csv(tmp_path / 'r.csv', RECORDS[:100])
    inter = read_interactions(path)
    kept = filter_min_rating(inter, 4)
    assert kept.pairs() == [(r[0], r[1]) for r in RECORDS[:100] if r[2] >= 4]
    path.write_text('user,item\nu,a\n')
    with pytest.raises(ValueError, match='needs a rating column'):
        filter_min_rating(read_interactions(path), 4)


@pytest.mark.parametrize('user_k,item_k', [(5, 5), (3, 7), (10, 2), (1, 1), (0, 4)])
def test_k_core_matches_brute_force(user_k, item_k):
    codes_u = np.unique([r[0] for r in RECORDS], return_inverse=True)[1]
    codes_i = np.unique([r[1] for r in RECORDS], return_inverse=True)[1]
    mask = k_core_mask(codes_u, codes_i, user_k, item_k)
    pairs = list(zip(codes_u.tolist(), codes_i.tolist()))
    assert np.flatnonzero(mask).tolist() == brute_k_core(pairs, user_k, item_k)


def test_k_core_cascade():
    # Item 'c' has 1 row; removing it leaves user 1 with 1 row, which removes
    # the 2nd row of item 'b', ... until nothing is left but the 2x2 block.
    pairs = [(0, 0), (0, 1), (1, 0), (1, 1), (2, 1), (2, 2), (3, 2), (3, 3)]
    user, item = np.array(pairs).T
    assert k_core_mask(user, item, 2, 2).tolist() == [True] * 4 + [False] * 4
    assert brute_k_core(pairs, 2, 2) == [0, 1, 2, 3]


@settings(max_examples=150, deadline=None)
@given(
    pairs=st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), max_size=60),
    user_k=st.integers(0, 5),
    item_k=st.integers(0, 5),
)
def test_k_core_property(pairs, user_k, item_k):
    user = np.array([p[0] for p in pairs], dtype=np.int64)
    item = np.array([p[1] for p in pairs], dtype=np.int64)
    mask = k_core_mask(user, item, user_k, item_k)
    kept = np.flatnonzero(mask).tolist()
    assert kept == brute_k_core(pairs, user_k, item_k)
    # Every kept user / item meets its k (the fixpoint):
    assert all(c >= user_k for c in Counter(pairs[r][0] for r in kept).values())
    assert all(c >= item_k for c in Counter(pairs[r][1] for r in kept).values())


def test_first_appearance_ids():
    new, old = first_appearance_ids(np.array([7, 3, 7, 9, 3, 1]))
    assert new.tolist() == [0, 1, 0, 2, 1, 3] and old.tolist() == [7, 3, 9, 1]


# --------------------------------------------------------------------------------------
# Split
# --------------------------------------------------------------------------------------
def test_split_sizes_follow_mmrec_code():
    for n in range(2, 2000):
        labels = mmrec_labels({0: list(range(n))})
        assert mmrec_split_sizes(n) == (labels.count(0), labels.count(1), labels.count(2))
    with pytest.raises(ValueError, match='at least 2'):
        mmrec_split_sizes(1)


@pytest.mark.parametrize('seed', [0, 1, 999])
def test_split_matches_rederivation(seed):
    rng = np.random.default_rng(seed)
    user = np.repeat(np.arange(40), rng.integers(2, 40, size=40))
    user = rng.permutation(user)  # rows of a user scattered through the file
    x_label, order = mmrec_split(user, seed)

    perm = np.random.RandomState(seed).permutation(user.size)
    u_rows: dict[int, list] = defaultdict(list)
    for p in perm.tolist():
        u_rows[int(user[p])].append(p)  # a user's rows in shuffled order
    labels = mmrec_labels(u_rows)
    expected_order = [p for u in sorted(u_rows) for p in u_rows[u]]
    assert order.tolist() == expected_order
    assert x_label[order].tolist() == labels
    with pytest.raises(ValueError, match='at least 2 interactions per user'):
        mmrec_split(np.array([0, 0, 1]))


def test_split_seed():
    user = np.repeat(np.arange(30), 12)
    a, _ = mmrec_split(user, 5)
    assert np.array_equal(a, mmrec_split(user, 5)[0])
    assert not np.array_equal(a, mmrec_split(user, 6)[0])
    assert np.array_equal(np.bincount(a), np.bincount(mmrec_split(user, 6)[0]))


# --------------------------------------------------------------------------------------
# The whole pipeline
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    'duplicates,min_rating,user_k,item_k,seed',
    [
        ('mmrec', None, 5, 5, 0),
        ('first', 3.0, 3, 4, 7),
        ('last', None, 4, 2, 123),
    ],
)
def test_prepare_matches_reference(tmp_path, duplicates, min_rating, user_k, item_k, seed):
    path = write_json_2014(tmp_path / 'reviews.json.gz', RECORDS)
    result = prepare_dataset(
        path,
        tmp_path / 'data',
        'toy',
        duplicates=duplicates,
        min_rating=min_rating,
        user_k=user_k,
        item_k=item_k,
        seed=seed,
    )
    ref = reference_prepare(
        RECORDS,
        duplicates=duplicates,
        min_rating=min_rating,
        user_k=user_k,
        item_k=item_k,
        seed=seed,
    )
    folder = tmp_path / 'data' / 'toy'
    assert result.folder == folder
    assert read_file_rows(folder, 'toy') == ref['rows']
    assert (
        read_map_independently(folder / 'u_id_mapping.csv', ['user_id', 'userID']) == ref['users']
    )
    assert read_map_independently(folder / 'i_id_mapping.csv', ['asin', 'itemID']) == ref['items']
    s = result.stats
    assert (s.users, s.items, s.interactions) == (
        len(ref['users']),
        len(ref['items']),
        len(ref['rows']),
    )
    assert [s.train, s.valid, s.test] == [[r[2] for r in ref['rows']].count(v) for v in range(3)]
    assert s.rows_read - s.below_min_rating - s.duplicates - s.k_core_rows == s.interactions
    meta = json.loads((folder / 'prepare.json').read_text())
    assert meta['options']['seed'] == seed and meta['stats']['interactions'] == s.interactions
    assert sorted(os.listdir(tmp_path / 'data')) == ['toy']  # no temporary left


def test_round_trip_through_the_loader(tmp_path):
    path = write_csv(tmp_path / 'ratings.csv', RECORDS)
    prepare_dataset(path, tmp_path, 'toy', duplicates='first', user_k=3, item_k=3, seed=3)
    ref = reference_prepare(RECORDS, duplicates='first', user_k=3, item_k=3, seed=3)
    users = read_map_independently(tmp_path / 'toy' / 'u_id_mapping.csv', ['user_id', 'userID'])
    items = read_map_independently(tmp_path / 'toy' / 'i_id_mapping.csv', ['asin', 'itemID'])

    data = MMRecDataset(tmp_path, 'toy')[0]
    store = data[RATES]
    got = {}
    for split, index in (
        ('train', store.edge_index),
        ('valid', store.valid_label_index),
        ('test', store.test_label_index),
    ):
        got[split] = Counter((users[u], items[i]) for u, i in index.t().tolist())
    # Every kept raw pair comes back exactly once, with the split the rule gave it:
    kept = Counter((r[0], r[1]) for r in ref['kept'])
    assert got['train'] + got['valid'] + got['test'] == kept
    for value, split in enumerate(('train', 'valid', 'test')):
        expected = Counter(
            (ref['users'][u], ref['items'][i]) for u, i, lab in ref['rows'] if lab == value
        )
        assert got[split] == expected
    assert data['user'].num_nodes == len(users) and data['item'].num_nodes == len(items)
    assert load_mmrec(tmp_path, 'toy')[RATES].edge_index.size(1) == sum(got['train'].values())


def test_every_format_gives_the_same_dataset(tmp_path):
    recs = [(u, i, r, t) for u, i, r, t in RECORDS]
    paths = [
        write_csv(tmp_path / 'a.csv', recs),
        write_csv(
            tmp_path / 'b.tsv', recs, header=['user_id', 'item_id', 'rating', 'timestamp'], sep='\t'
        ),
        write_json_2014(tmp_path / 'c.json.gz', recs),
        write_json_2023(tmp_path / 'd.jsonl', recs),
    ]
    files = []
    for k, path in enumerate(paths):
        prepare_dataset(path, tmp_path / 'out', f'd{k}', seed=11)
        folder = tmp_path / 'out' / f'd{k}'
        files.append(
            [
                (folder / f).read_bytes()
                for f in (f'd{k}.inter', 'u_id_mapping.csv', 'i_id_mapping.csv')
            ]
        )
    assert all(f == files[0] for f in files[1:])


def test_id_maps_quote_odd_ids_as_pandas_does(tmp_path):
    users = ['plain', 'with\ttab', 'with "quote"', 'line\nbreak']
    items = ['0000031852', 'B00X']
    write_mmrec_dataset(
        tmp_path,
        'odd',
        np.array([0, 1, 2, 3]),
        np.array([0, 1, 0, 1]),
        np.array([0, 0, 1, 2]),
        users,
        items,
    )
    text = (tmp_path / 'odd' / 'u_id_mapping.csv').read_text()
    # pandas' to_csv(sep='\t') (MMRec's writer) quotes exactly these fields:
    assert text == (
        'user_id\tuserID\nplain\t0\n"with\ttab"\t1\n"with ""quote"""\t2\n"line\nbreak"\t3\n'
    )
    assert (
        read_map_independently(tmp_path / 'odd' / 'u_id_mapping.csv', ['user_id', 'userID'])
        == users
    )
    assert (
        tmp_path / 'odd' / 'i_id_mapping.csv'
    ).read_text() == 'asin\titemID\n0000031852\t0\nB00X\t1\n'
    with pytest.raises(FileExistsError):
        write_mmrec_dataset(
            tmp_path, 'odd', np.array([0]), np.array([0]), np.array([0]), ['a'], ['b']
        )
    with pytest.raises(ValueError, match='item ids must lie in'):
        write_mmrec_dataset(
            tmp_path, 'x', np.array([0]), np.array([2]), np.array([0]), ['a'], ['b']
        )


def test_prepare_rejects_bad_options(tmp_path):
    path = write_csv(tmp_path / 'r.csv', RECORDS[:50])
    with pytest.raises(ValueError, match='user_k must be >= 2'):
        prepare_dataset(path, tmp_path, 'x', user_k=1)
    with pytest.raises(ValueError, match='plain folder name'):
        prepare_dataset(path, tmp_path, '../x')
    with pytest.raises(ValueError, match='no interaction survives'):
        prepare_dataset(path, tmp_path, 'x', user_k=500)
    assert not (tmp_path / 'x').exists()


# --------------------------------------------------------------------------------------
# Writing: atomic, --force
# --------------------------------------------------------------------------------------
def test_cli_force_semantics(tmp_path, capsys):
    path = write_csv(tmp_path / 'r.csv', RECORDS)
    root = tmp_path / 'data'
    args = ['prepare', str(path), '--name', 'toy', '--root', str(root)]
    assert main(args) == 0
    out = capsys.readouterr().out
    ref = reference_prepare(RECORDS)
    assert f'{len(ref["users"])} users, {len(ref["items"])} items' in out
    assert 'split' in out and 'k-core 5/5' in out
    before = (root / 'toy' / 'toy.inter').read_bytes()

    (root / 'toy' / 'image_feat.npy').write_bytes(b'stale')  # e.g. features of old ids
    assert main(args + ['--seed', '1']) == 2  # exists: refused, nothing touched
    assert 'already exists' in capsys.readouterr().err
    assert (root / 'toy' / 'toy.inter').read_bytes() == before

    bad = tmp_path / 'bad.csv'
    bad.write_text('u1,i1,5,1\nu2,i2\n')
    assert main(['prepare', str(bad), '--name', 'toy', '--root', str(root), '--force']) == 2
    assert f'{bad}, line 2' in capsys.readouterr().err  # one line, no traceback
    assert (root / 'toy' / 'toy.inter').read_bytes() == before  # failure: untouched

    assert main(args + ['--seed', '1', '--force']) == 0
    assert (root / 'toy' / 'toy.inter').read_bytes() != before
    assert not (root / 'toy' / 'image_feat.npy').exists()  # the whole folder replaced
    assert read_file_rows(root / 'toy', 'toy') == reference_prepare(RECORDS, seed=1)['rows']
    assert sorted(os.listdir(root)) == ['toy']


def test_write_is_atomic(tmp_path, monkeypatch):
    from pyg_mentor.datasets import prepare

    path = write_csv(tmp_path / 'r.csv', RECORDS)
    prepare_dataset(path, tmp_path / 'data', 'toy')
    before = {p.name: p.read_bytes() for p in (tmp_path / 'data' / 'toy').iterdir()}

    def fail(*args, **kwargs):
        raise OSError('disk full')

    monkeypatch.setattr(prepare, '_write_id_map', fail)
    with pytest.raises(OSError, match='disk full'):
        prepare_dataset(path, tmp_path / 'data', 'toy', seed=5, force=True)
    with pytest.raises(OSError, match='disk full'):
        prepare_dataset(path, tmp_path / 'data', 'new')
    assert sorted(os.listdir(tmp_path / 'data')) == ['toy']  # no partial folder, no temp
    assert {p.name: p.read_bytes() for p in (tmp_path / 'data' / 'toy').iterdir()} == before


def test_cli_column_options(tmp_path, capsys):
    path = write_csv(
        tmp_path / 'r.txt', RECORDS, header=['t', 'r', 'item', 'who'], order=(3, 2, 1, 0)
    )
    code = main(
        [
            'prepare',
            str(path),
            '--format',
            'csv',
            '--name',
            'toy',
            '--root',
            str(tmp_path),
            '--user-col',
            'who',
            '--item-col',
            '2',
            '--rating-col',
            'r',
            '--time-col',
            't',
            '--min-rating',
            '4',
            '--duplicates',
            'last',
            '--user-k',
            '3',
            '--item-k',
            '3',
            '--seed',
            '2',
        ]
    )
    assert code == 0
    ref = reference_prepare(RECORDS, min_rating=4, duplicates='last', user_k=3, item_k=3, seed=2)
    assert read_file_rows(tmp_path / 'toy', 'toy') == ref['rows']
    assert f'{len(ref["rows"])} interactions' in capsys.readouterr().out

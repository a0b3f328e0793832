import gzip

import pytest

from pyg_mentor.datasets.mmrec import DataFormatError
from pyg_mentor.features import IdMap, id_map_from_inter, read_id_map


def write(path, text):
    path.write_text(text)
    return path


def test_read_mmrec_i_id_mapping(tmp_path):
    # MMRec's layout: tab-separated despite the name, header asin<TAB>itemID, ids as
    # text (leading zeros kept), a tab inside an id quoted as csv quotes it.
    path = write(
        tmp_path / 'i_id_mapping.csv', 'asin\titemID\n0000031852\t0\nB00X\t2\n"a\tb"\t1\n\n'
    )
    id_map = read_id_map(path)
    assert id_map.to_mmrec == {'0000031852': 0, 'B00X': 2, 'a\tb': 1}
    assert id_map.num_items == 3 and len(id_map) == 3
    assert id_map.original_ids() == ['0000031852', 'a\tb', 'B00X']


def test_read_id_map_column_detection_and_names(tmp_path):
    # 'itemID' first: still the MMRec column; comma-separated files work too.
    path = write(tmp_path / 'map.csv', 'itemID,asin\n1,x\n0,y\n')
    assert read_id_map(path).to_mmrec == {'x': 1, 'y': 0}
    # Without an 'itemID' column: first = original, second = MMRec.
    path = write(tmp_path / 'map2.tsv', 'orig\tnew\nx\t3\n')
    id_map = read_id_map(path)
    assert id_map.to_mmrec == {'x': 3}
    assert id_map.original_ids() == [None, None, None, 'x']
    assert id_map.original_ids(5) == [None, None, None, 'x', None]
    # Named columns pick two of many.
    path = write(tmp_path / 'map3.tsv', 'a\tb\tc\nx\tjunk\t7\n')
    assert read_id_map(path, 'a', 'c').to_mmrec == {'x': 7}
    with pytest.raises(
        DataFormatError,
        match=r'map3.tsv, line 1: an id map without column '
        r'names must have exactly two columns',
    ):
        read_id_map(path)
    with pytest.raises(DataFormatError, match=r"map3.tsv, line 1: no column 'zz'"):
        read_id_map(path, 'a', 'zz')


@pytest.mark.parametrize(
    'body, line, message',
    [
        ('x\t0\ny\t1\t9\n', 3, r'expected 2 tab-separated fields \(asin, itemID\), found 3'),
        (
            'x\t0\ny\tone\n',
            3,
            r"column 'itemID' must be a non-negative integer MMRec id, got 'one'",
        ),
        ('x\t0\ny\t-1\n', 3, r"column 'itemID' must be a non-negative integer MMRec id, got -1"),
        ('x\t0\n \t1\n', 3, r"column 'asin' \(original item id\) is empty"),
        ('x\t0\ny\t1\nx\t2\n', 4, r"original item id 'x' maps to MMRec id 2, but to 0 at .*line 2"),
        (
            'x\t0\ny\t1\nz\t0\n',
            4,
            r"MMRec item id 0 is given to original id 'z', but to 'x' at "
            r'.*line 2',
        ),
    ],
)
def test_read_id_map_malformed_lines(tmp_path, body, line, message):
    path = write(tmp_path / 'i_id_mapping.csv', 'asin\titemID\n' + body)
    with pytest.raises(DataFormatError, match=rf'i_id_mapping.csv, line {line}: {message}'):
        read_id_map(path)


def test_read_id_map_empty_and_missing_files(tmp_path):
    with pytest.raises(
        DataFormatError,
        match=r'empty.csv, line 1: expected a header line, '
        r'found an empty file',
    ):
        read_id_map(write(tmp_path / 'empty.csv', ''))
    with pytest.raises(DataFormatError, match=r'head.csv: the id map has no rows'):
        read_id_map(write(tmp_path / 'head.csv', 'asin\titemID\n'))
    with pytest.raises(FileNotFoundError, match='nope.csv: file not found'):
        read_id_map(tmp_path / 'nope.csv')
    (tmp_path / 'bad.csv').write_bytes(b'asin\titemID\nx\t0\n\xff\t1\n')
    with pytest.raises(DataFormatError, match=r'bad.csv, line 3: not valid UTF-8'):
        read_id_map(tmp_path / 'bad.csv')


OG = 'userID\titemID\trating\tx_label\nu7\t80\t1\t0\nu7\t66\t1\t0\nu9\t80\t1\t1\nu9\t12\t1\t2\n'
MM = 'userID\titemID\trating\tx_label\n0\t0\t1\t0\n0\t1\t1\t0\n1\t0\t1\t1\n1\t2\t1\t2\n'


def test_id_map_from_inter(tmp_path):
    og = write(tmp_path / 'og.inter', OG)
    with gzip.open(tmp_path / 'mm.inter.gz', 'wt') as f:
        f.write(MM)
    id_map = id_map_from_inter(og, tmp_path / 'mm.inter.gz')
    assert isinstance(id_map, IdMap)
    assert id_map.to_mmrec == {'80': 0, '66': 1, '12': 2}
    assert id_map.original_ids() == ['80', '66', '12']


@pytest.mark.parametrize(
    'mm, message',
    [
        # Item 80 (rows 1 and 3) gets MMRec ids 0 and 2.
        (
            MM.replace('1\t0\t1\t1', '1\t2\t1\t1'),
            r"og.inter, line 4 / .*mm.inter, line 4: original item id '80' maps to MMRec id 2, "
            r'but to 0 at .*og.inter, line 2 / .*mm.inter, line 2',
        ),
        # Users u7 and u9 both become user 0: the rows are not aligned.
        (
            MM.replace('1\t0\t1\t1', '0\t0\t1\t1').replace('1\t2\t1\t2', '0\t2\t1\t2'),
            r"MMRec item id 0 is given to original id 'u9'",
        ),
        (
            MM.replace('1\t2\t1\t2', '1\t2\t1\t0'),
            r"line 5: column 'x_label' differs \('2' vs '0'\): the files are not row-aligned",
        ),
        (MM + '1\t1\t1\t0\n', r'og.inter has 4 data rows but .*mm.inter has 5'),
        (MM.replace('itemID', 'item'), r"mm.inter, line 1: no column 'itemID'"),
        (
            MM.replace('0\t1\t1\t0', '0\tx\t1\t0'),
            r"mm.inter, line 3: column 'itemID' must be a non-negative integer MMRec id, got 'x'",
        ),
    ],
)
def test_id_map_from_inter_errors(tmp_path, mm, message):
    og = write(tmp_path / 'og.inter', OG)
    with pytest.raises(DataFormatError, match=message):
        id_map_from_inter(og, write(tmp_path / 'mm.inter', mm))

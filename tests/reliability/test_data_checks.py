r"""Issue 14, cases 5 and 6 (data): a stray huge id is refused before any
allocation; degenerate data sets and malformed files get one clear line."""

import numpy as np
import pytest

from pyg_mentor.cli import main
from pyg_mentor.datasets.mmrec import DataFormatError, load_mmrec, read_mmrec_inter
from pyg_mentor.datasets.synthetic import make_planted, write_mmrec


def write_inter(root, name, rows, header='userID\titemID\tx_label'):
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f'{name}.inter'
    path.write_text('\n'.join([header, *('\t'.join(map(str, r)) for r in rows)]) + '\n')
    return path


def base_rows(num_users=40, items_per_user=6):
    return [
        (u, (u + j) % 30, 0 if j < 4 else 1 + j % 2)
        for u in range(num_users)
        for j in range(items_per_user)
    ]


def test_sparse_id_is_refused_before_allocation(tmp_path, capsys):
    rows = base_rows()  # 240 lines
    rows.insert(100, (0, 50_000_000, 0))
    path = write_inter(tmp_path, 'sparse', rows)
    with pytest.raises(DataFormatError) as e:
        load_mmrec(tmp_path, 'sparse')
    message = str(e.value)
    for fragment in (
        f'{path}, line 102',
        "column 'itemID'",
        'the id 50000000',
        'only 31 distinct',
        '50,000,001 nodes',
        '--allow-sparse-ids',
    ):
        assert fragment in message, message
    assert (
        main(
            [
                'train',
                '--model',
                'mf_bpr',
                '--dataset',
                'sparse',
                '--root',
                str(tmp_path),
                '--out',
                str(tmp_path / 'run'),
                '--set',
                'epochs=1',
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert f'{path}, line 102' in err and 'Traceback' not in err
    assert not (tmp_path / 'run' / 'run.json').exists()


def test_sparse_ids_can_be_accepted(tmp_path):
    rows = base_rows()
    rows.append((7, 2_000_000, 0))
    write_inter(tmp_path, 'sparse', rows)
    with pytest.raises(DataFormatError, match='the id 2000000'):
        load_mmrec(tmp_path, 'sparse')
    data = load_mmrec(tmp_path, 'sparse', allow_sparse_ids=True)
    assert data['item'].num_nodes == 2_000_001
    # Dense enough (<= 10x the distinct ids) or small (<= 1M nodes): accepted.
    rows[-1] = (7, 999_999, 0)
    write_inter(tmp_path, 'small', rows)
    assert load_mmrec(tmp_path, 'small')['item'].num_nodes == 1_000_000


@pytest.mark.parametrize('shape', ['one user', 'one item'])
def test_degenerate_datasets_give_one_line(tmp_path, capsys, h, shape):
    if shape == 'one user':
        rows = [(0, i, 0) for i in range(8)] + [(0, 8, 1), (0, 9, 2)]
    else:
        rows = [(u, 0, 0) for u in range(8)]
    write_inter(tmp_path, 'tiny', rows)
    assert h.train(tmp_path, tmp_path / 'run', dataset='tiny') == 2
    h.one_line_error(capsys, 'No negative item can be sampled', 'they rated all')
    assert not (tmp_path / 'run' / 'run.json').exists()


def test_missing_header_is_called_missing(tmp_path):
    path = write_inter(tmp_path, 'nohead', base_rows()[1:], header='0\t0\t0')
    with pytest.raises(DataFormatError) as e:
        read_mmrec_inter(path)
    message = str(e.value)
    assert message.startswith(f'{path}, line 1: missing header')
    assert 'duplicate' not in message


def test_text_file_named_npy_is_not_called_pickled(tmp_path):
    data = make_planted(num_users=30, num_items=20, seed=0)
    write_mmrec(data, tmp_path, 'toy')
    path = tmp_path / 'toy' / 'image_feat.npy'
    np.savetxt(path, np.ones((20, 3)))
    with pytest.raises(DataFormatError) as e:
        load_mmrec(tmp_path, 'toy')
    message = str(e.value)
    assert message.startswith(f'{path}: is not a .npy file')
    assert 'text file' in message and 'pickle' not in message
    # A real pickle is called one, and refused:
    path.write_bytes(b'\x80\x04\x95' + b'\x00' * 20)
    with pytest.raises(DataFormatError, match='is a Python pickle, which is refused'):
        load_mmrec(tmp_path, 'toy')
    # And an object array is refused as such:
    np.save(path, np.array([[{}]] * 20, dtype=object), allow_pickle=True)
    with pytest.raises(DataFormatError, match='holds Python objects'):
        load_mmrec(tmp_path, 'toy')

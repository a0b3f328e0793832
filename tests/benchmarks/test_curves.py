import pytest

from benchmarks import curves


def _write(run, rows):
    run.mkdir()
    lines = ['epoch,valid/recall@20,test/recall@20']
    lines += [','.join('' if v is None else str(v) for v in row) for row in rows]
    (run / 'log.csv').write_text('\n'.join(lines) + '\n')


def test_curves_side_by_side_and_best_epoch(tmp_path):
    module = curves
    # Run a: 0.06122 and 0.06118 both round to 0.0612, so the first (epoch 1) is best.
    _write(tmp_path / 'a', [(0, 0.05, 0.051), (1, 0.06122, 0.062), (2, 0.06118, None)])
    _write(tmp_path / 'b', [(0, 0.07, 0.071)])
    text = module.main(
        [
            str(tmp_path / 'a'),
            str(tmp_path / 'b'),
            '--labels',
            'A',
            'B',
            '--out',
            str(tmp_path / 'out.md'),
        ]
    )
    lines = text.splitlines()
    assert lines[0] == (
        '| epoch | A valid/recall@20 | B valid/recall@20 | A test/recall@20 | B test/recall@20 |'
    )
    assert lines[2] == '| 0 | .0500 | .0700 | .0510 | .0710 |'
    assert lines[4] == '| 2 | .0612 | - | - | - |'  # B has no epoch 2; A no test there
    assert '| A | 3 | 1 | .0612 | .0620 |' in lines
    assert '| B | 1 | 0 | .0700 | .0710 |' in lines
    assert (tmp_path / 'out.md').read_text() == text
    text = module.main([str(tmp_path / 'a'), '--metrics', 'epoch', 'valid/recall@20'])
    assert '| 1 | 1.0000 | .0612 |' in text.splitlines()


def test_curves_clear_errors(tmp_path):
    module = curves
    _write(tmp_path / 'a', [(0, 0.05, 0.051)])
    with pytest.raises(KeyError, match='ndcg@20'):
        module.main([str(tmp_path / 'a'), '--metrics', 'valid/ndcg@20'])
    with pytest.raises(FileNotFoundError, match='no training log'):
        module.main([str(tmp_path / 'missing')])
    with pytest.raises(ValueError, match='2 labels for 1 runs'):
        module.main([str(tmp_path / 'a'), '--labels', 'x', 'y'])
    (tmp_path / 'a' / 'log.csv').write_text('epoch,valid/recall@20\n0,abc\n')
    with pytest.raises(ValueError, match='line 2'):
        module.main([str(tmp_path / 'a')])

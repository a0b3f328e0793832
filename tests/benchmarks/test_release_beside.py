import sys
import textwrap

import pytest

from benchmarks.release_beside import linked_root, parse_release_log, run_release, table

LOG = """\
03 Dec 19:13    INFO epoch 0 training [time: 21.08s, train loss: 83.6976]
03 Dec 19:13    INFO epoch 0 evaluating [time: 0.41s, valid_score: 0.051600]
03 Dec 19:13    INFO valid result:
recall@5: 0.0200    recall@10: 0.0516    recall@20: 0.1255
03 Dec 19:13    INFO test result:
recall@5: 0.0300    recall@10: 0.0545    recall@20: 0.1200
03 Dec 19:13    INFO epoch 1 training [time: 15.44s, train loss: 82.0589]
03 Dec 19:13    INFO epoch 1 evaluating [time: 0.27s, valid_score: 0.080300]
03 Dec 19:13    INFO valid result:
recall@5: 0.0375    recall@10: 0.0803    recall@20: 0.1509
03 Dec 19:13    INFO test result:
recall@5: 0.0422    recall@10: 0.0791    recall@20: 0.1469
03 Dec 19:13    INFO epoch 2 training [time: 16.41s, train loss: 80.3418]
"""


def fake_anchor(folder, main_py):
    # A stand-in for the harness's folder: venv/bin/python and MENTOR/src/main.py.
    src = folder / 'MENTOR' / 'src'
    src.mkdir(parents=True)
    (folder / 'venv' / 'bin').mkdir(parents=True)
    (folder / 'venv' / 'bin' / 'python').symlink_to(sys.executable)
    (src / 'main.py').write_text(main_py)


def test_parse_release_log():
    rows = parse_release_log(LOG)
    assert rows == [
        {'epoch': 0, 'train_seconds': 21.08, 'valid_recall@10': 0.0516},
        {'epoch': 1, 'train_seconds': 15.44, 'valid_recall@10': 0.0803},
        {'epoch': 2, 'train_seconds': 16.41},  # not evaluated yet: no valid metric
    ]


def test_table_medians_and_ratio():
    def run(seconds, recalls):
        return [
            {'epoch': e, 'train_seconds': s, 'valid_recall@10': r}
            for e, (s, r) in enumerate(zip(seconds, recalls))
        ]

    release = [run([30, 10, 14], [0.1, 0.2, 0.3]), run([20, 12, 16], [0.1, 0.2, 0.3])]
    ours = [run([9, 4, 6], [0.1, 0.25, 0.35]), run([8, 5, 5], [0.1, 0.25, 0.35])]
    lines = table(release, ours, warmup=1)
    # medians over epochs 1-2 of both reps: release (10, 14, 12, 16) -> 13,
    # ours (4, 6, 5, 5) -> 5; 13 / 5 = 2.6
    assert lines[-1].endswith('release 13.00, ours 5.00: ours is **2.60x** faster.')
    assert lines[2] == '| 0 | 30.00 | 20.00 | 9.00 | 8.00 | 0.1000 | 0.1000 |'


def test_run_release_stops_after_the_counted_epochs(tmp_path):
    # main.py logs like the release and would run forever; run_release must stop
    # it after 2 evaluated epochs.
    fake_anchor(
        tmp_path,
        textwrap.dedent(
            """
            import itertools, time
            for e in itertools.count():
                print(f'x INFO epoch {e} training [time: {e + 1}.5s, train loss: 1.0]')
                print(f'x INFO epoch {e} evaluating [time: 0.1s, valid_score: 0.1]')
                print('x INFO valid result:')
                print(f'recall@5: 0.0100    recall@10: 0.{e + 1}000', flush=True)
                time.sleep(0.3)
            """
        ),
    )
    rows = run_release(tmp_path, 'toy', epochs=2, log=tmp_path / 'release.log')
    assert rows == [
        {'epoch': 0, 'train_seconds': 1.5, 'valid_recall@10': 0.1},
        {'epoch': 1, 'train_seconds': 2.5, 'valid_recall@10': 0.2},
    ]


def test_run_release_without_harness(tmp_path):
    with pytest.raises(FileNotFoundError, match='setup.sh'):
        run_release(tmp_path, 'toy', epochs=1, log=tmp_path / 'log')


def test_linked_root(tmp_path):
    data = tmp_path / 'data'
    data.mkdir()
    for name, text in (('toy.inter', 'i'), ('audio_feat.npy', 'a'), ('text_feat.npy', 't')):
        (data / name).write_text(text)
    root = linked_root(data, 'toy', 'audio_feat.npy', 'text_feat.npy', tmp_path / 'root')
    folder = root / 'toy'
    assert (folder / 'image_feat.npy').read_text() == 'a'
    assert (folder / 'text_feat.npy').read_text() == 't'
    assert (folder / 'toy.inter').read_text() == 'i'
    with pytest.raises(FileNotFoundError, match='missing_feat.npy'):
        linked_root(data, 'toy', 'missing_feat.npy', 'text_feat.npy', tmp_path / 'other')


def test_run_release_that_dies_early(tmp_path):
    fake_anchor(tmp_path, "raise SystemExit('no such dataset: toy')\n")
    with pytest.raises(RuntimeError, match='0 of 1 epochs(.|\n)*no such dataset: toy'):
        run_release(tmp_path, 'toy', epochs=1, log=tmp_path / 'release.log')

r"""Issue 14, case 6 (options): every user-caused failure is one line
``error: ...`` with exit status 2; types are checked against the
:class:`~pyg_mentor.config.TrainConfig` fields and the model's signature;
degenerate values are refused; ``--set`` accumulates."""

import pytest
import torch

from pyg_mentor.cli import main


@pytest.mark.parametrize(
    'option, message',
    [
        ('lr=abc', "lr must be a float, got 'abc'"),
        ('epochs=1.5', 'epochs must be an integer, got 1.5'),
        ('num_layers=[]', 'num_layers=[] is an empty grid axis'),
        ('embedding_dim=0', 'embedding_dim must be >= 1, got 0'),
        ('num_layers=-1', 'num_layers must be >= 0, got -1'),
        ('embedding_dim=8.5', 'embedding_dim must be an integer, got 8.5'),
        ('reg_weight=true', 'reg_weight must be a float, got True'),
        ('progress=yes', "progress must be true or false, got 'yes'"),
        ('ks=[5,0]', 'ks must be a non-empty list of integers >= 1'),
        ('lr=0', 'lr must be > 0, got 0.0'),
    ],
)
def test_bad_option_values_give_one_line(toy, tmp_path, capsys, h, option, message):
    root, _ = toy
    out = tmp_path / 'run'
    assert h.train(root, out, model='lightgcn', sets=[*h.FAST, option]) == 2
    h.one_line_error(capsys, message)
    assert not out.exists()  # Nothing was written.


@pytest.mark.skipif(torch.cuda.is_available(), reason='needs a machine without CUDA')
def test_device_cuda_without_cuda(toy, tmp_path, capsys, h):
    root, _ = toy
    assert h.train(root, tmp_path / 'run', sets=[*h.FAST, 'device=cuda']) == 2
    h.one_line_error(capsys, "device 'cuda' is not available")
    assert h.train(root, tmp_path / 'run', sets=[*h.FAST, 'device=gpu0']) == 2
    h.one_line_error(capsys, "device must be a torch device such as 'cpu'")


def test_set_accumulates(toy, tmp_path, h):
    root, _ = toy
    out = tmp_path / 'run'
    assert (
        h.main(
            [
                'train',
                '--model',
                'mf_bpr',
                '--dataset',
                'toy',
                '--root',
                str(root),
                '--out',
                str(out),
                '--set',
                'epochs=2',
                'progress=false',
                '--set',
                'lr=0.01',
                '--set',
                'tensorboard=false',
            ]
        )
        == 0
    )
    metrics = h.read_json(out / 'metrics.json')
    assert metrics['epochs_run'] == 2 and metrics['train_config']['epochs'] == 2
    assert metrics['train_config']['lr'] == 0.01
    assert not metrics['train_config']['tensorboard']


def test_unknown_option_lists_only_settable_ones(toy, tmp_path, capsys, h):
    root, _ = toy
    assert h.train(root, tmp_path / 'run', model='lightgcn', sets=['edge_index=1']) == 2
    line = h.one_line_error(capsys, "Unknown option(s) ['edge_index']")
    assert "model options: ['embedding_dim', 'num_layers', 'reg_weight']" in line


def test_debug_shows_the_traceback(toy, tmp_path, capsys):
    root, _ = toy
    args = [
        'train',
        '--model',
        'mf_bpr',
        '--dataset',
        'toy',
        '--root',
        str(root),
        '--out',
        str(tmp_path / 'run'),
        '--set',
        'lr=abc',
    ]
    for argv in (['--debug', *args], [*args, '--debug']):
        with pytest.raises(ValueError, match='lr must be a float'):
            main(argv)

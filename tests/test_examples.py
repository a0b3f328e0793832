"""The examples run end to end (tiny settings), so they cannot rot."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / 'examples'
DATASETS = Path(__file__).resolve().parents[1] / 'datasets'


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(f'example_{name}', EXAMPLES / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('model', ['mentor', 'lightgcn'])
def test_train_baby_synthetic(tmp_path, capsys, model):
    out = tmp_path / 'run'
    result = load_example('train_baby').main(
        [
            '--model',
            model,
            '--synthetic',
            '--scale',
            '0.02',
            '--epochs',
            '2',
            '--device',
            'cpu',
            '--out',
            str(out),
        ]
    )
    assert result['epochs_run'] <= 2 and result['model'] == model
    saved = json.loads((out / 'metrics.json').read_text())
    assert saved['test'] == result['test'] and 0 <= saved['test']['recall@20'] <= 1
    assert (out / 'best.pt').exists()
    printed = capsys.readouterr().out
    assert f'{model} on synthetic-baby: best epoch' in printed and '| test |' in printed


@pytest.mark.slow  # the real Baby interactions (160,792), processed and trained
def test_train_baby_defaults_to_mentor_with_a_cpu_cap(tmp_path, caplog):
    # The real shipped Baby interactions (copied, so that the processed cache is not
    # written into the repository); LightGCN for 1 epoch to keep it short, then only
    # the argument defaults of the MENTOR run.
    module = load_example('train_baby')
    root = tmp_path / 'datasets'
    (root / 'baby').mkdir(parents=True)
    shutil.copy(DATASETS / 'baby' / 'baby.inter.gz', root / 'baby')
    result = module.main(
        [
            '--model',
            'lightgcn',
            '--root',
            str(root),
            '--epochs',
            '1',
            '--device',
            'cpu',
            '--out',
            str(tmp_path / 'run'),
        ]
    )
    assert result['epochs_run'] == 1 and result['dataset'] == 'baby'
    assert 0.0 < result['test']['recall@20'] < 0.2
    args = module.parse_args([])
    assert args.model == 'mentor' and args.epochs is None
    assert module.resolve_epochs(None, 'cpu', {}) == module.CPU_EPOCHS == 5
    assert module.resolve_epochs(None, 'cuda:0', {}) == 1000
    assert module.resolve_epochs(None, 'cpu', {'epochs': 7}) == 7  # config file
    assert module.resolve_epochs(3, 'cpu', {'epochs': 7}) == 3  # command line wins

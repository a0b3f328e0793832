"""What a new user meets first: start-up, help texts, error messages, the plan of a
training and quiet output (issue 16)."""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from pyg_mentor.cli import build_parser, main
from pyg_mentor.datasets.synthetic import make_planted, write_mmrec

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, cwd: Path | None = None, env: dict | None = None):
    return subprocess.run(
        [sys.executable, '-m', 'pyg_mentor.cli', *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, 'OMP_NUM_THREADS': '1', **(env or {})},
    )


@pytest.mark.parametrize(
    'args, status',
    [
        (['--help'], 0),
        (['train', '--help'], 0),
        (['evaluate', '--help'], 0),
        (['train', '--dataset', 'x'], 2),
        (['train', '--bogus'], 2),
        (['compare', '--help'], 0),
        (['benchmark', '--help'], 0),
    ],
)
def test_help_and_argument_errors_import_no_torch(args, status):
    # The start-up time a user waits for is the import of torch and PyG (seconds);
    # `python benchmarks/startup.py` measures it. Here: they are not imported at all.
    code = (
        'import atexit, sys\n'
        "atexit.register(lambda: print('IMPORTED', sorted(m for m in ('torch', "
        "'torch_geometric', 'faiss') if m in sys.modules), file=sys.stderr))\n"
        'from pyg_mentor.cli import main\nsys.exit(main())\n'
    )
    done = subprocess.run(
        [sys.executable, '-c', code, *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == status, done.stderr
    assert done.stderr.strip().splitlines()[-1] == 'IMPORTED []'


def test_help_texts():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == 'command').choices

    def options(command: str) -> str:  # the option list, whitespace normalised
        return ' '.join(sub[command].format_help().split('options:')[1].split())

    evaluate, recommend = options('evaluate'), options('recommend')
    for text in (evaluate, recommend):
        block = text.split('--checkpoint {best,last}')[1].split(' --')[0]
        assert 'best-valid epoch' in block and '(default: best)' in block
    assert '(default: both)' in evaluate.split('--split {valid,test,both}')[1].split(' --')[0]
    assert 'items per user (default: 10)' in recommend
    train = options('train')
    assert '--epochs N' in train and '= --set epochs=N' in train


def test_tool_help_names_the_command_and_where_it_writes(capsys):
    for tool in ('benchmark', 'compare'):
        with pytest.raises(SystemExit) as exit_:
            main([tool, '--help'])
        assert exit_.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f'usage: pyg-mentor {tool} ')
        assert 'runs/' in out and 'benchmarks/results' in out
    with pytest.raises(SystemExit):
        main(['compare', '--help'])
    text = ' '.join(capsys.readouterr().out.split())
    assert 'runs/compare-<dataset>/<label>/seed-<seed>/' in text
    assert '(default: the --runs folder' in text


def test_unknown_option_lists_no_data_argument(capsys):
    from pyg_mentor.nn.models.base import MODELS, get_model_spec

    get_model_spec('lightgcn')
    for name, spec in MODELS.items():
        data_args = {
            n
            for n, p in inspect.signature(spec.cls.__init__).parameters.items()
            if n != 'self' and p.default is inspect.Parameter.empty
        }
        hints = typing.get_type_hints(spec.cls.__init__)
        data_args |= {n for n, h in hints.items() if re.search(r'Tensor|HeteroData|Data\b', str(h))}
        data_args |= {'edge_index', 'edge_weight', 'num_users', 'num_items', 'x_dict'}
        assert (
            main(['train', '--model', name, '--dataset', 'synthetic', '--set', 'no_such_option=1'])
            == 2
        )
        err = capsys.readouterr().err
        assert err.count('\n') == 1 and "Unknown option(s) ['no_such_option']" in err
        listed = set(re.findall(r"'(\w+)'", err.split('training options:')[1]))
        assert not listed & data_args, (name, listed & data_args)


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp('data')
    write_mmrec(make_planted(num_users=120, num_items=50, seed=2), root, 'toy')
    return root


def test_train_epochs_plan_and_quiet_output(toy, tmp_path):
    out = tmp_path / 'run'
    done = cli(
        'train',
        '--model',
        'lightgcn',
        '--dataset',
        'toy',
        '--root',
        str(toy),
        '--out',
        str(out),
        '--epochs',
        '3',
        '--set',
        'batch_size=256',
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((out / 'metrics.json').read_text())['epochs_run'] == 3
    err = done.stderr.splitlines()
    plan = next(i for i, line in enumerate(err) if 'plan: up to 3 epochs' in line)
    assert 'patience 20' in err[plan] and 'batches of 256 per epoch' in err[plan]
    epochs = [i for i, line in enumerate(err) if re.search(r' epoch \d/3 ', line)]
    assert len(epochs) == 3 and plan < epochs[0]  # one line per epoch, after the plan
    assert any(re.search(r'epoch 0 took .*to the cap of 3 epochs', line) for line in err)
    # Quiet: no warnings of PyTorch, no PyG `Processing...`, no bars off a terminal,
    # and the results table once.
    for noise in ('UserWarning', 'Processing...', 'Done!', '\r', 'it/s', 'HeteroData('):
        assert noise not in done.stderr, noise
    assert (done.stdout + done.stderr).count('| valid |') == 1
    loud = cli(
        '-v',
        'train',
        '--model',
        'lightgcn',
        '--dataset',
        'toy',
        '--root',
        str(toy),
        '--out',
        str(tmp_path / 'loud'),
        '--epochs',
        '1',
    )
    assert loud.returncode == 0, loud.stderr
    assert 'HeteroData(' in loud.stderr and ' DEBUG ' in loud.stderr


def test_verbose_keeps_third_party_warnings():
    import warnings

    from pyg_mentor.cli import KNOWN_WARNINGS, setup_logging

    def filtered() -> set[str]:
        return {f[1].pattern for f in warnings.filters if f[0] == 'ignore' and f[1] is not None}

    with warnings.catch_warnings():
        warnings.resetwarnings()  # earlier commands of this process installed them
        setup_logging(verbose=True)
        assert not filtered() & set(KNOWN_WARNINGS)
        setup_logging(verbose=False)
        assert set(KNOWN_WARNINGS) <= filtered()


def test_epochs_flag_checks(tmp_path, capsys):
    assert (
        main(
            [
                'train',
                '--model',
                'mf_bpr',
                '--dataset',
                'synthetic',
                '--epochs',
                '0',
                '--out',
                str(tmp_path / 'a'),
            ]
        )
        == 2
    )
    assert '--epochs must be >= 1' in capsys.readouterr().err
    assert (
        main(
            [
                'train',
                '--model',
                'mf_bpr',
                '--dataset',
                'synthetic',
                '--epochs',
                '2',
                '--set',
                'epochs=3',
                '--out',
                str(tmp_path / 'b'),
            ]
        )
        == 2
    )
    assert 'disagree' in capsys.readouterr().err
    assert not (tmp_path / 'a').exists() and not (tmp_path / 'b').exists()


def test_printed_paths_point_to_files_in_the_repository(capsys):
    # What the CLI prints (models, every --help) names no file outside the repository
    # and no file that does not exist.
    parser = build_parser()
    texts = [parser.format_help()]
    texts += [
        p.format_help()
        for p in next(a for a in parser._actions if a.dest == 'command').choices.values()
    ]
    assert main(['models']) == 0
    texts.append(capsys.readouterr().out)
    text = '\n'.join(texts)
    assert 'shared/' not in text and '../' not in text
    paths = set(re.findall(r'[\w.-]+(?:/[\w.-]+)+\.(?:md|py|json|csv|toml)\b', text))
    assert 'docs/differences.md' in paths
    for path in paths:
        assert (REPO / path).resolve().is_relative_to(REPO) and (REPO / path).is_file(), path

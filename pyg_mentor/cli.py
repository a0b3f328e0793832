r"""The ``pyg-mentor`` command line.

.. code-block:: text

    pyg-mentor train --model lightgcn --dataset baby --root datasets --out runs/lgn
    pyg-mentor train --model lightgcn --dataset baby --grid        # MMRec's grid
    pyg-mentor train --model mf_bpr --dataset baby --set reg_weight=1e-4 epochs=50
    pyg-mentor train ... --resume                                  # continue a run
    pyg-mentor evaluate --run runs/lgn --split test
    pyg-mentor recommend --run runs/lgn --users 0,1,2 --k 10
    pyg-mentor benchmark --quick                                   # benchmarks/run.py
    pyg-mentor compare --dataset synthetic --models mf_bpr,lightgcn --seeds 3
    pyg-mentor models                                              # what is registered
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from pyg_mentor.config import TrainConfig, load_config_file, parse_assignments

log = logging.getLogger('pyg_mentor')

EXIT_NAN = 3


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format='%(asctime)s %(levelname)s %(name)s: %(message)s',
        datefmt='%H:%M:%S',
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='pyg-mentor',
        description='Multimodal recommendation with PyTorch Geometric.')
    parser.add_argument('-v', '--verbose', action='store_true')
    sub = parser.add_subparsers(dest='command', required=True)

    train = sub.add_parser('train', help='train a model (optionally over a grid)')
    train.add_argument('--model', required=True, help='registered model name')
    train.add_argument('--dataset', required=True,
                       help="MMRec dataset name under --root, or 'synthetic' / "
                            "'synthetic-baby' (planted structure)")
    train.add_argument('--root', default=None,
                       help='folder holding <dataset>/ (default: $PYG_MENTOR_DATA '
                            'or ./datasets)')
    train.add_argument('--out', default=None,
                       help='output folder (default: runs/<model>-<dataset>)')
    train.add_argument('--config', default=None,
                       help='a .json/.toml file of options (lists = grid axes)')
    train.add_argument('--set', nargs='*', default=[], metavar='KEY=VALUE',
                       help='override options, e.g. lr=1e-3 num_layers=[1,2]')
    train.add_argument('--grid', action='store_true',
                       help="search the model's registered hyper-parameter grid")
    train.add_argument('--resume', action='store_true',
                       help='continue from OUT/last.pt; skip finished trials')
    train.add_argument('--scale', type=float, default=1.0,
                       help='size factor of synthetic-<shape> datasets')
    train.add_argument('--data-seed', type=int, default=0,
                       help='seed of the synthetic generator')
    train.add_argument('--surrogate-features', choices=('interactions', 'random'),
                       default=None,
                       help='add SURROGATE image/text features where the dataset has '
                            'none (no real features of Baby/Sports/Clothing exist '
                            'offline); see pyg_mentor.datasets.surrogate')

    evaluate = sub.add_parser('evaluate', help='evaluate a trained run')
    evaluate.add_argument('--run', required=True, help='output folder of a run')
    evaluate.add_argument('--checkpoint', choices=('best', 'last'), default='best')
    evaluate.add_argument('--split', choices=('valid', 'test', 'both'),
                          default='both')
    evaluate.add_argument('--protocol', choices=('mmrec', 'mmssl'), default='mmrec',
                          help="metric definitions: MMRec's (default) or MMSSL's "
                               'release (in-list IDCG, HitRatio); see '
                               'pyg_mentor.evaluation')

    recommend = sub.add_parser('recommend', help='top-k items of users from a trained run')
    recommend.add_argument('--run', required=True, help='output folder of a run')
    recommend.add_argument('--users', required=True,
                           help='comma-separated user ids, e.g. 0,1,2')
    recommend.add_argument('--k', type=int, default=10)
    recommend.add_argument('--checkpoint', choices=('best', 'last'), default='best')
    recommend.add_argument('--include-train', action='store_true',
                           help="also recommend the users' training items")

    bench = sub.add_parser('benchmark', add_help=False,
                           help='run the benchmark suite (benchmarks/run.py; its '
                                'options: --quick, --full, --only NAME..., --out-dir)')
    bench.add_argument('bench_args', nargs='*')

    sub.add_parser('models', help='list the registered models and their defaults')

    comp = sub.add_parser(
        'compare', help='train models over seeds and write a comparison report '
                        '(markdown, JSON, PNG); see pyg_mentor.compare')
    comp.add_argument('--dataset', required=True, help='as for train')
    comp.add_argument('--models', default=None,
                      help='comma-separated registered models (default: all)')
    comp.add_argument('--seeds', type=int, default=3,
                      help='runs per model, seeds 999, 1000, ... (the seed option)')
    comp.add_argument('--root', default=None, help='as for train')
    comp.add_argument('--out', default='benchmarks/results',
                      help='folder of the report compare_<dataset>.md/.json/.png')
    comp.add_argument('--runs', default=None,
                      help='folder of the runs (default: runs/compare-<dataset>)')
    comp.add_argument('--name', default=None,
                      help='file stem of the report (default: compare_<dataset>)')
    comp.add_argument('--set', nargs='+', action='extend', default=[],
                      metavar='[MODEL:]KEY=VALUE',
                      help='options for every model (lr=1e-3) or one (mentor:epochs=10);'
                           ' list values are grid axes')
    comp.add_argument('--no-grid', action='store_true',
                      help="registered defaults only (default: search each model's "
                           'registered grid on the first seed, winner chosen on valid '
                           'and reused for the other seeds)')
    comp.add_argument('--max-epochs', type=int, default=None,
                      help='cap on the epochs of every run (reported as capped)')
    comp.add_argument('--import', dest='imports', action='append', default=[],
                      metavar='MODEL=RUN_FOLDER',
                      help='report an existing (finished or partial) run folder for '
                           'MODEL instead of training it; repeatable')
    comp.add_argument('--note', action='append', default=[], metavar='MODEL=TEXT',
                      help='a note for MODEL in the report (e.g. where its fixed '
                           'hyper-parameters come from); repeatable')
    comp.add_argument('--no-plot', action='store_true', help='no PNG bar chart')
    comp.add_argument('--scale', type=float, default=1.0, help='as for train')
    comp.add_argument('--data-seed', type=int, default=0, help='as for train')
    comp.add_argument('--surrogate-features', choices=('interactions', 'random'),
                      default=None, help='as for train; needed by multimodal models '
                                         'on datasets without features')
    return parser


def resolve_options(args: argparse.Namespace) -> dict[str, Any]:
    r"""Options from ``--grid``, ``--config`` and ``--set``, in that order."""
    from pyg_mentor.nn.models.base import get_model_spec

    spec = get_model_spec(args.model)
    options: dict[str, Any] = dict(spec.grid) if args.grid else {}
    if args.config:
        options.update(load_config_file(args.config))
    options.update(parse_assignments(args.set))
    return options


def cmd_train(args: argparse.Namespace) -> int:
    from pyg_mentor.datasets.load import load_dataset
    from pyg_mentor.train import train_model, write_json

    options = resolve_options(args)
    out = Path(args.out or f'runs/{args.model}-{args.dataset}')
    data = load_dataset(args.dataset, args.root, scale=args.scale,
                        seed=args.data_seed, surrogate=args.surrogate_features)
    log.info('Data: %s', data)
    write_json(out / 'run.json', {
        'model': args.model, 'dataset': args.dataset,
        'root': str(Path(args.root).resolve()) if args.root else None,
        'scale': args.scale, 'data_seed': args.data_seed,
        'surrogate_features': args.surrogate_features, 'options': options,
        'torch': torch.__version__, 'argv': sys.argv,
    })
    result = train_model(args.model, data, options, out, resume=args.resume,
                         dataset=args.dataset)
    _print_result(result)
    print(f'metrics: {out / "metrics.json"}')
    return EXIT_NAN if result.get('status') == 'nan_loss' else 0


def _print_result(result: dict[str, Any]) -> None:
    from pyg_mentor.evaluation import format_metrics_table

    if result.get('status') == 'nan_loss':
        print(f"Training stopped: {result.get('error')}", file=sys.stderr)
    if result.get('valid'):
        ks = result['train_config']['ks']
        print(f"\n{result['model']} on {result['dataset']}: best epoch "
              f"{result['best_epoch']} of {result['epochs_run']} "
              f"({result['status']}, {result['seconds_per_epoch']:.2f} s/epoch)")
        print(format_metrics_table({'valid': result['valid'],
                                    'test': result['test']}, ks))


def load_run(run: str | Path, checkpoint: str = 'best'):
    r"""Rebuilds the data and the trained model of a run folder (a grid: its
    winner). Returns ``(data, model, metrics, epoch)``."""
    from pyg_mentor.datasets.load import load_dataset
    from pyg_mentor.nn.models.base import get_model_spec

    run = Path(run)
    try:
        meta = json.loads((run / 'run.json').read_text())
        metrics = json.loads((run / 'metrics.json').read_text())
    except FileNotFoundError as e:
        raise SystemExit(f'{run}: not a finished run folder ({e.filename} missing)') from e
    if 'trials' in metrics:  # A grid: its winner.
        run = run / 'trials' / f"{metrics['winner']:03d}"
    ckpt = run / f'{checkpoint}.pt'
    if not ckpt.exists():
        raise SystemExit(f'{ckpt}: checkpoint not found')
    data = load_dataset(meta['dataset'], meta['root'], scale=meta['scale'],
                        seed=meta['data_seed'], surrogate=meta.get('surrogate_features'))
    model = get_model_spec(meta['model']).cls.from_data(data, **metrics['model_kwargs'])
    state = torch.load(ckpt, map_location='cpu', weights_only=False)
    model.load_state_dict(state['model'])
    model.eval()
    log.info('Loaded %s (epoch %d)', ckpt, state['epoch'])
    return data, model, metrics, state['epoch']


def cmd_evaluate(args: argparse.Namespace) -> int:
    from pyg_mentor.evaluation import Evaluator, format_metrics_table

    data, model, metrics, epoch = load_run(args.run, args.checkpoint)
    cfg = TrainConfig(**metrics['train_config'])
    splits = ('valid', 'test') if args.split == 'both' else (args.split,)
    scorer = model.scorer()
    results = {s: Evaluator(data, s, ks=cfg.ks, batch_size=cfg.eval_batch_size,
                            protocol=args.protocol)
               .evaluate(scorer) for s in splits}
    print(f"{metrics['model']} on {metrics['dataset']} ({args.checkpoint}.pt, "
          f"epoch {epoch}, {args.protocol} protocol)")
    print(format_metrics_table(results, cfg.ks))
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    from pyg_mentor.typing import RATES

    data, model, _, _ = load_run(args.run, args.checkpoint)
    try:
        users = torch.tensor([int(u) for u in args.users.split(',') if u.strip()])
    except ValueError as e:
        raise ValueError(f"--users expects comma-separated integers, got '{args.users}'") from e
    bad = users[(users < 0) | (users >= model.num_users)]
    if users.numel() == 0 or bad.numel():
        raise ValueError(f'--users must be ids in [0, {model.num_users}), got {bad.tolist()}')
    exclude = None if args.include_train else data[RATES].edge_index
    top = model.recommend(users, args.k, exclude_index=exclude)
    for user, items in zip(users.tolist(), top.tolist()):
        print(f"{user}\t{','.join(map(str, items))}")
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    import importlib.util

    script = Path(__file__).resolve().parents[1] / 'benchmarks' / 'run.py'
    if not script.exists():
        raise FileNotFoundError(f'{script}: the benchmarks ship with the source tree; '
                                'install with `pip install -e .` from a clone')
    spec = importlib.util.spec_from_file_location('benchmark_run', script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(args.bench_args)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from pyg_mentor.nn.models.base import MODELS, get_model_spec

    get_model_spec('lightgcn')  # Imports the registry.
    for name, spec in sorted(MODELS.items()):
        print(f'{name}: {spec.cls.__name__} — {spec.doc}')
        print(f'    defaults: {spec.defaults}')
        print(f'    grid:     {spec.grid}')
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    import shlex

    from pyg_mentor.compare import (
        compare,
        parse_imports,
        parse_model_assignments,
        parse_model_pairs,
    )
    from pyg_mentor.nn.models.base import MODELS, get_model_spec

    get_model_spec('lightgcn')  # Imports the registry.
    imports = parse_imports(args.imports)
    if args.models:
        models = [m.strip() for m in args.models.split(',') if m.strip()]
    else:
        models = sorted(m for m in MODELS if m not in {m for m, _ in imports})
    trained = [m for m in models if m not in {m for m, _ in imports}]
    common, per_model = parse_model_assignments(args.set, trained)
    command = 'pyg-mentor ' + shlex.join(args.argv)
    report = compare(
        args.dataset, models, args.seeds, root=args.root, runs_dir=args.runs,
        out_dir=args.out, options=common, model_options=per_model,
        grid=not args.no_grid, max_epochs=args.max_epochs, imports=imports,
        surrogate=args.surrogate_features, scale=args.scale, data_seed=args.data_seed,
        plot=not args.no_plot, name=args.name, command=command,
        notes=dict(parse_model_pairs(args.note, '--note', 'TEXT')))
    stem = Path(args.out) / (args.name or f'compare_{args.dataset}')
    print((stem.with_suffix('.md')).read_text())
    print(f"report: {stem.with_suffix('.md')} (+ .json{', .png' if 'plot' in report else ''})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ['benchmark']:  # Its options belong to benchmarks/run.py.
        return cmd_benchmark(argparse.Namespace(bench_args=argv[1:]))
    args = build_parser().parse_args(argv)
    args.argv = argv
    _setup_logging(args.verbose)
    commands = {'train': cmd_train, 'evaluate': cmd_evaluate,
                'recommend': cmd_recommend, 'benchmark': cmd_benchmark,
                'models': cmd_models, 'compare': cmd_compare}
    try:
        return commands[args.command](args)
    except (KeyError, ValueError, FileNotFoundError) as e:
        # Bad input: one clear line instead of a traceback.
        if args.verbose:
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f'pyg-mentor: error: {msg}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())

"""Train MENTOR (or any registered model) on the real Amazon Baby interactions shipped
in datasets/baby.

    python examples/train_baby.py                      # MENTOR, our defaults
    python examples/train_baby.py --epochs 1000        # the full protocol (a day or more on a CPU)
    python examples/train_baby.py --model lightgcn     # LightGCN, MMRec settings (minutes)
    python examples/train_baby.py --synthetic          # Baby-shaped planted synthetic data
    python examples/train_baby.py --synthetic --scale 0.05 --epochs 2   # a smoke run

The interactions and their train/valid/test split are MMRec's own (see
datasets/README.md). No real image/text features of Baby are available offline:
multimodal models (MENTOR) get SURROGATE features derived from the train interactions
(`--features interactions`, the documented fallback of pyg_mentor.datasets.surrogate) or
random ones (`--features random`), announced with a warning. Their numbers are not
comparable with the paper's. On 2 CPU cores a MENTOR epoch on Baby takes ~2 minutes;
the full protocol (up to 1000 epochs with early stopping) is a job for a GPU, so without
`--epochs` the script trains 1000 epochs on a GPU and CPU_EPOCHS (5, ~10 minutes, test
R@20 about .070) on a CPU, and says so.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from pyg_mentor.cli import setup_logging
from pyg_mentor.config import load_config_file
from pyg_mentor.datasets.load import load_dataset
from pyg_mentor.evaluation import format_metrics_table
from pyg_mentor.nn.models import get_model_spec
from pyg_mentor.train import train_model

ROOT = Path(__file__).resolve().parents[1] / 'datasets'
#: Epochs trained on a CPU when --epochs is not given (the protocol's 1000 on a GPU).
CPU_EPOCHS = 5


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--model', default='mentor', help='registered model (see `pyg-mentor models`)'
    )
    parser.add_argument(
        '--epochs',
        type=int,
        default=None,
        help='maximum epochs; early stopping may end sooner (default: 1000 '
        f'on a GPU, {CPU_EPOCHS} on a CPU)',
    )
    parser.add_argument('--root', default=str(ROOT), help='folder holding baby/baby.inter[.gz]')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--config', default=None, help='a .json/.toml file of options')
    parser.add_argument('--out', default='runs/train_baby')
    parser.add_argument(
        '--synthetic', action='store_true', help='use Baby-shaped planted synthetic data instead'
    )
    parser.add_argument(
        '--scale',
        type=float,
        default=1.0,
        help='size factor of the synthetic data (with --synthetic)',
    )
    parser.add_argument(
        '--features',
        choices=('interactions', 'random'),
        default='interactions',
        help='surrogate features for multimodal models on Baby',
    )
    return parser.parse_args(argv)


def resolve_epochs(epochs: int | None, device: str, options: dict) -> int:
    """--epochs, else the config file's, else 1000 on a GPU and CPU_EPOCHS on a CPU."""
    epochs = epochs if epochs is not None else options.get('epochs')
    if epochs is None:
        epochs = 1000 if device.startswith('cuda') else CPU_EPOCHS
        if epochs < 1000:
            logging.warning(
                'Training %d epochs on %s (the protocol allows up to 1000 with early '
                'stopping; pass --epochs 1000 for it: a day or more on a CPU)',
                epochs,
                device,
            )
    return epochs


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    setup_logging(verbose=False)  # the CLI's: quiet, known third-party warnings filtered

    name = 'synthetic-baby' if args.synthetic else 'baby'
    multimodal = get_model_spec(args.model).cls.multimodal
    surrogate = args.features if multimodal and not args.synthetic else None
    data = load_dataset(name, args.root, scale=args.scale, surrogate=surrogate)
    logging.getLogger(__name__).debug('Data: %s', data)

    options = load_config_file(args.config) if args.config else {}
    epochs = resolve_epochs(args.epochs, args.device, options)
    options.update(epochs=epochs, device=args.device)
    # `source` tells `pyg-mentor evaluate/recommend --run OUT` how to reload the data.
    result = train_model(
        args.model,
        data,
        options,
        args.out,
        dataset=name,
        source={
            'root': str(Path(args.root).resolve()),
            'scale': args.scale,
            'surrogate_features': surrogate,
        },
    )

    print(
        f'\n{args.model} on {name}: best epoch {result["best_epoch"]} of '
        f'{result["epochs_run"]} ({result["status"]}, '
        f'{result["seconds_per_epoch"]:.1f} s/epoch)'
    )
    print(
        format_metrics_table(
            {'valid': result['valid'], 'test': result['test']},
            ks=(10, 20),
            metrics=('recall', 'ndcg'),
        )
    )
    print(f'metrics and checkpoints: {args.out}/')
    return result


if __name__ == '__main__':
    main()

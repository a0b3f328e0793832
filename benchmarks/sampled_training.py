"""Benchmark: seconds per training epoch, full-graph vs sampled mini-batch training.

For every model, three trainers on the same data, seed and batches: full-graph
training (``sampler='interactions'``), sampled training with ``--num-neighbors``
(``sampler='neighbor'``, :class:`pyg_mentor.loader.BPRNeighborLoader`) and sampled
training with all neighbours (``-1``: the full-graph computation on the batch's
subgraph). Their epochs (``Trainer._train_epoch``: batches, subgraph sampling,
loss, backward, Adam) run round-robin, one epoch of every method per round, so that
load from other processes hits all alike; the table gives the median seconds per
epoch, its ratio to full-graph training, and the mean share of the graph's users,
items and user-item edges in a batch's subgraph (first 5 batches). Evaluation is
full-graph either way and is not timed.

    python benchmarks/sampled_training.py --dataset lfm2k --root datasets
    python benchmarks/sampled_training.py --quick     # small planted data (smoke test)

Writes JSON to ``runs/benchmarks/sampled_training.json`` and markdown beside it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

if not __package__:  # `python benchmarks/sampled_training.py`: the checkout's package
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import torch

from benchmarks._common import (
    check_out,
    default_out,
    machine_line,
    out_help,
    save_result,
    time_interleaved,
)
from pyg_mentor.config import TrainConfig
from pyg_mentor.datasets.load import item_graph_cache_dir, load_dataset, prepare_data
from pyg_mentor.datasets.synthetic import make_planted
from pyg_mentor.loader import BPRNeighborLoader
from pyg_mentor.nn.models import get_model_spec
from pyg_mentor.train import Trainer
from pyg_mentor.typing import ITEM, RATES, USER
from pyg_mentor.utils.sampling import NegativeSampler, train_batches

#: Model options of the benchmark (MENTOR: the scope sampled training needs).
MODEL_OPTIONS = {'mentor': {'cl_scope': 'batch'}}


def subgraph_shares(trainer: Trainer, batches: int = 5) -> dict[str, float]:
    r"""Mean share of the users, items and user-item edges of the training graph
    in the subgraphs of the first :obj:`batches` batches of an epoch."""
    data = trainer.data
    loader = BPRNeighborLoader(
        trainer.subgraphs.num_neighbors, torch.Generator().manual_seed(0), features=False
    )
    negatives = NegativeSampler(data[RATES].edge_index, data[ITEM].num_nodes)
    shares: dict[str, list[float]] = {'users': [], 'items': [], 'edges': []}
    stream = train_batches(
        data[RATES].edge_index,
        negatives,
        trainer.config.batch_size,
        torch.Generator().manual_seed(0),
    )
    for _, batch in zip(range(batches), stream):
        subgraph, _ = loader(data, batch)
        shares['users'].append(subgraph[USER].num_nodes / data[USER].num_nodes)
        shares['items'].append(subgraph[ITEM].num_nodes / data[ITEM].num_nodes)
        shares['edges'].append(subgraph[RATES].num_edges / data[RATES].num_edges)
    return {k: statistics.mean(v) for k, v in shares.items()}


def run(
    data, model: str, num_neighbors: list[int], epochs: int, batch_size: int, cache_dir
) -> list[dict[str, Any]]:
    spec = get_model_spec(model)
    prepared = prepare_data(data, item_graph=spec.cls.needs_item_graph, cache_dir=cache_dir)
    options = MODEL_OPTIONS.get(model, {})
    methods = {
        'full graph': {},
        f'sampled {num_neighbors}': {'sampler': 'neighbor', 'num_neighbors': num_neighbors},
        'sampled all (-1)': {'sampler': 'neighbor', 'num_neighbors': [-1] * len(num_neighbors)},
    }
    trainers = {}
    for name, sampling in methods.items():
        config = TrainConfig(
            batch_size=batch_size,
            progress=False,
            tensorboard=False,
            checkpoint=False,
            **{**spec.defaults, **sampling},
        )
        torch.manual_seed(config.seed)
        trainers[name] = Trainer(spec.cls.from_data(prepared, **options), prepared, config)
    epoch = {name: iter(range(epochs)) for name in trainers}
    times = time_interleaved(
        {
            name: (lambda t=t, e=epoch[name]: t._train_epoch(next(e)))
            for name, t in trainers.items()
        },
        repeat=epochs,
    )
    full = statistics.median(times['full graph'])
    rows = []
    for name, trainer in trainers.items():
        seconds = statistics.median(times[name])
        rows.append(
            {
                'model': model,
                'method': name,
                'seconds_per_epoch': seconds,
                'epoch_seconds': times[name],
                'ratio': seconds / full,
                'subgraph': (subgraph_shares(trainer) if trainer.subgraphs is not None else None),
            }
        )
    return rows


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f'# Sampled vs full-graph training: seconds per epoch ({result["dataset"]})',
        '',
        machine_line(result),
        '',
        f'{result["num_users"]} users, {result["num_items"]} items, '
        f'{result["num_train"]} training pairs; batch {result["batch_size"]}, '
        f'{result["epochs"]} epochs per method, round-robin; median.',
        '',
        '| model | method | s/epoch | vs full | users | items | user-item edges |',
        '|---|---|---|---|---|---|---|',
    ]
    for row in result['rows']:
        share = row['subgraph']
        cells = (
            ['-'] * 3
            if share is None
            else [f'{100 * share[k]:.0f}%' for k in ('users', 'items', 'edges')]
        )
        lines.append(
            f'| {row["model"]} | {row["method"]} | {row["seconds_per_epoch"]:.2f} '
            f'| {row["ratio"]:.2f}x | ' + ' | '.join(cells) + ' |'
        )
    lines += [
        '',
        'users / items / user-item edges: mean share of the graph in a '
        "batch's subgraph (first 5 batches).",
        '',
        f'Command: `{result["command"]}`',
    ]
    return '\n'.join(lines) + '\n'


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--dataset', default='lfm2k')
    parser.add_argument('--root', default='datasets')
    parser.add_argument('--models', default='lightgcn,mentor')
    parser.add_argument(
        '--num-neighbors', default='10,10', help='neighbours per user-item layer (default: 10,10)'
    )
    parser.add_argument('--epochs', type=int, default=3, help='timed epochs per method')
    parser.add_argument('--batch-size', type=int, default=2048)
    parser.add_argument('--quick', action='store_true', help='small planted data, 1 epoch')
    parser.add_argument(
        '--out', default=str(default_out('sampled_training')), help=out_help('sampled_training')
    )
    args = parser.parse_args(argv)
    out = check_out(args.out, args.quick)
    num_neighbors = [int(n) for n in args.num_neighbors.split(',')]
    if args.quick:
        data, dataset, cache_dir = make_planted(num_users=200, num_items=80), 'planted', None
        args.epochs, args.batch_size = 1, 256
    else:
        data = load_dataset(args.dataset, args.root)
        dataset, cache_dir = args.dataset, item_graph_cache_dir(args.dataset, args.root)
    rows = []
    for model in args.models.split(','):
        rows += run(data, model, num_neighbors, args.epochs, args.batch_size, cache_dir)
    result = save_result(
        out,
        'sampled_training',
        dataset=dataset,
        num_users=data[USER].num_nodes,
        num_items=data[ITEM].num_nodes,
        num_train=data[RATES].num_edges,
        batch_size=args.batch_size,
        epochs=args.epochs,
        quick=args.quick,
        command=' '.join(
            ['python benchmarks/sampled_training.py', *(sys.argv[1:] if argv is None else argv)]
        ),
        rows=rows,
    )
    text = markdown(result)
    out.with_suffix('.md').write_text(text)
    print(text)
    return result


if __name__ == '__main__':
    main()

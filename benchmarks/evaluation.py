"""Benchmark: full-ranking evaluation of every user of a Baby-shaped split.

Times :class:`pyg_mentor.evaluation.Evaluator` (dot-product scores, train-item
masking, top-50, Recall/NDCG/Precision/MAP @ 5/10/20/50) against a naive
MMRec-style loop measured in the same run: dense scores per batch, the mask
built from per-user Python lists, ``torch.topk`` and metrics computed user by
user in NumPy. Both must give the same numbers (random float scores have no
ties, so the tie rule does not matter here).

    python benchmarks/evaluation.py            # Baby shape, median of 5 runs
    python benchmarks/evaluation.py --quick    # small smoke run

Prints a markdown table and writes JSON to ``runs/benchmarks/evaluation.json``
(``--out benchmarks/results/evaluation.json`` updates the committed one). The quick
shape is too small for the speed-up to mean anything (the naive loop's fixed costs
dominate), so a quick table says so instead of a ratio.
On a CPU shared with other busy processes, ``OMP_WAIT_POLICY=PASSIVE`` (set
before Python starts) stops idle OpenMP threads from spinning and makes the
many short kernels much faster; the JSON records it and the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

if not __package__:  # `python benchmarks/evaluation.py`: import the checkout's package
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from benchmarks._common import (
    QUICK_TARGETS,
    check_out,
    default_out,
    out_help,
    save_result,
    time_interleaved,
)
from pyg_mentor.evaluation import DEFAULT_KS, METRICS, Evaluator

# Baby after MMRec's preprocessing: 19,445 users, 7,050 items,
# 118,551 train pairs, 21,682 test pairs.
BABY = dict(users=19445, items=7050, train=118551, test=21682)
QUICK = dict(users=2000, items=1000, train=12000, test=2300)


def make_problem(
    num_users: int, num_items: int, num_train: int, num_test: int, dim: int, seed: int
) -> tuple[HeteroData, Tensor, Tensor]:
    """Random pairs (every user has >= 1 train and >= 1 test item, test pairs
    disjoint from train pairs) and random embeddings."""
    gen = torch.Generator().manual_seed(seed)

    def random_pairs(num: int, forbidden: Tensor) -> Tensor:
        users = torch.cat(
            [
                torch.arange(num_users),
                torch.randint(0, num_users, (num - num_users,), generator=gen),
            ]
        )
        items = torch.randint(0, num_items, (num,), generator=gen)
        while True:  # redraw duplicated and forbidden pairs
            key = users * num_items + items
            sorted_key, perm = key.sort(stable=True)
            bad = torch.isin(key, forbidden)
            bad[perm[1:]] |= sorted_key[1:] == sorted_key[:-1]
            if not bad.any():
                break
            items[bad] = torch.randint(0, num_items, (int(bad.sum()),), generator=gen)
        order = key.argsort()
        return torch.stack([users, items])[:, order], key

    train, train_key = random_pairs(num_train, torch.empty(0, dtype=torch.long))
    test, _ = random_pairs(num_test, train_key)

    data = HeteroData()
    data['user'].num_nodes = num_users
    data['item'].num_nodes = num_items
    data['user', 'rates', 'item'].edge_index = train
    data['user', 'rates', 'item'].test_label_index = test
    data['user', 'rates', 'item'].valid_label_index = test[:, :0]
    user_emb = torch.randn(num_users, dim, generator=gen)
    item_emb = torch.randn(num_items, dim, generator=gen)
    return data, user_emb, item_emb


def naive_mmrec_style(
    users: Tensor,
    train_items: dict[int, list[int]],
    test_items: dict[int, list[int]],
    user_emb: Tensor,
    item_emb: Tensor,
    ks: Sequence[int],
    batch_size: int,
) -> dict[str, float]:
    """The baseline: per-user Python lists for the mask and the metrics."""
    max_k = max(ks)
    sums = {f'{name}@{k}': 0.0 for name in METRICS for k in ks}
    user_list = users.tolist()
    with torch.no_grad():
        for start in range(0, len(user_list), batch_size):
            batch = user_list[start : start + batch_size]
            scores = user_emb[batch] @ item_emb.t()
            rows, cols = [], []
            for row, user in enumerate(batch):
                history = train_items.get(user, [])
                rows.extend([row] * len(history))
                cols.extend(history)
            scores[rows, cols] = -1e10
            topk = scores.topk(max_k, dim=1)[1].numpy()
            for row, user in enumerate(batch):
                positives = test_items[user]
                hit = np.isin(topk[row], positives).astype(np.float64)
                ranks = np.arange(1, max_k + 1)
                discount = 1.0 / np.log2(ranks + 1)
                cum_precision = np.cumsum(hit) / ranks
                for k in ks:
                    n_hit = hit[:k].sum()
                    idcg = discount[: min(len(positives), k)].sum()
                    sums[f'recall@{k}'] += n_hit / len(positives)
                    sums[f'precision@{k}'] += n_hit / k
                    sums[f'ndcg@{k}'] += (hit[:k] * discount[:k]).sum() / idcg
                    sums[f'map@{k}'] += (cum_precision[:k] * hit[:k]).sum() / min(len(positives), k)
    return {key: value / len(user_list) for key, value in sums.items()}


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--users', type=int, default=BABY['users'])
    parser.add_argument('--items', type=int, default=BABY['items'])
    parser.add_argument('--train-pairs', type=int, default=BABY['train'])
    parser.add_argument('--test-pairs', type=int, default=BABY['test'])
    parser.add_argument('--dim', type=int, default=64)
    parser.add_argument('--batch-size', type=int, default=4096)
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--threads', type=int, default=None, help='torch threads (default: leave as is)'
    )
    parser.add_argument('--no-baseline', action='store_true')
    parser.add_argument(
        '--quick', action='store_true', help='small shape, 1 repetition (smoke test)'
    )
    parser.add_argument(
        '--out', type=Path, default=default_out('evaluation'), help=out_help('evaluation')
    )
    args = parser.parse_args(argv)
    check_out(args.out, args.quick)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.users, args.items = QUICK['users'], QUICK['items']
        args.train_pairs, args.test_pairs = QUICK['train'], QUICK['test']
        args.repeat = 1

    data, user_emb, item_emb = make_problem(
        args.users, args.items, args.train_pairs, args.test_pairs, args.dim, args.seed
    )
    store = data['user', 'rates', 'item']
    start = time.perf_counter()
    evaluator = Evaluator(data, 'test', ks=DEFAULT_KS, batch_size=args.batch_size)
    setup_s = time.perf_counter() - start
    evaluator.evaluate_embeddings(user_emb, item_emb)  # warm-up

    ours, naive = 'pyg_mentor Evaluator', 'naive MMRec-style loop'
    fns = {ours: lambda: evaluator.evaluate_embeddings(user_emb, item_emb)}
    if not args.no_baseline:
        train_items: dict[int, list[int]] = {}
        for u, i in store.edge_index.t().tolist():
            train_items.setdefault(u, []).append(i)
        test_items: dict[int, list[int]] = {}
        for u, i in store.test_label_index.t().tolist():
            test_items.setdefault(u, []).append(i)
        fns = {
            naive: lambda: naive_mmrec_style(
                evaluator.users, train_items, test_items, user_emb, item_emb,
                DEFAULT_KS, args.batch_size,
            ),
            **fns,
        }  # fmt: skip
    outs: dict[str, dict[str, float]] = {}

    def keep(name: str):
        def fn() -> None:
            outs[name] = fns[name]()

        return fn

    times = time_interleaved({name: keep(name) for name in fns}, args.repeat)
    rows = [dict(method=name, times=times[name]) for name in fns]
    max_abs_diff = None
    if not args.no_baseline:
        max_abs_diff = max(abs(outs[ours][k] - outs[naive][k]) for k in outs[ours])

    num_users = evaluator.num_eval_users
    base = statistics.median(rows[0]['times'])
    lines = [
        f'Full-ranking evaluation, {num_users:,} users x {args.items:,} items, '
        f'{store.edge_index.size(1):,} train pairs masked, '
        f'{store.test_label_index.size(1):,} test pairs, d={args.dim}, '
        f'batch {args.batch_size}, median of {args.repeat}, '
        f'{torch.get_num_threads()} threads, '
        f'OMP_WAIT_POLICY={os.environ.get("OMP_WAIT_POLICY", "unset")}',
        '',
        '| method | seconds (all users) | users/s | speed-up |',
        '|---|---:|---:|---:|',
    ]
    for row in rows:
        row['median_s'] = statistics.median(row['times'])
        row['users_per_s'] = num_users / row['median_s']
        row['speedup'] = base / row['median_s']
        speedup = QUICK_TARGETS if args.quick else f'{row["speedup"]:.1f}x'
        lines.append(
            f'| {row["method"]} | {row["median_s"]:.3f} | {row["users_per_s"]:,.0f} | {speedup} |'
        )
    if max_abs_diff is not None:
        lines += ['', f'max |difference| of the 16 metrics: {max_abs_diff:.2e}']
        if not max_abs_diff < 1e-5:
            raise RuntimeError('the evaluator and the baseline disagree')
    print('\n'.join(lines))

    result = save_result(
        args.out, 'evaluation',
        shape=dict(users=num_users, items=args.items,
                   train_pairs=store.edge_index.size(1),
                   test_pairs=store.test_label_index.size(1), dim=args.dim),
        batch_size=args.batch_size,
        repeat=args.repeat,
        quick=args.quick,
        evaluator_setup_s=setup_s,
        rows=rows,
        max_abs_diff=max_abs_diff,
        metrics=outs[ours],
    )  # fmt: skip
    return result


if __name__ == '__main__':
    main()

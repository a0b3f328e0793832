"""Benchmark: full-ranking top-k over large catalogues, the evaluator's torch path vs FAISS.

For every catalogue size (100 k and 1 M items by default, d = 64, random normal user
and item embeddings, 20 training items per user masked, 5 held-out items per user),
three ways to turn the users' scores over all items into their top-50 items without
their training items, and from them MMRec's metrics:

* **torch (evaluator)**: :class:`pyg_mentor.evaluation.Evaluator` as the trainer runs
  it (``batch_size='auto'`` with ``--memory-budget`` bytes per chunk): users in
  chunks, one matmul per chunk, training items masked in place, ``topk`` with the tie
  rule (lower item id first), metrics; the ``U x I`` matrix never exists.
* **MIPSKNNIndex (FAISS)**: PyG's :class:`torch_geometric.nn.pool.MIPSKNNIndex`
  (FAISS ``IndexFlatIP``, exact inner product) searching ``50 + max training
  items`` per user and dropping the training items (``exclude_links``), then the same
  metrics; its tie order is FAISS's, not the evaluator's rule.
* **FAISS search only**: the bare ``IndexFlatIP.search`` of 50 items, no exclusion
  and no metrics: a lower bound of any FAISS path.

Seconds per 1 000 users (median of ``--repeat`` rounds, the methods interleaved so that
load from other processes hits them alike) with the ratio to the torch path in the same
run, the peak memory each adds (Linux ``VmHWM``, reset before the call, minus the
resident set then), FAISS's index build time, and the agreement of the ranked lists and
metrics with the evaluator's.

    python benchmarks/ranking.py                    # 100 k and 1 M items
    python benchmarks/ranking.py --items 100000     # one size
    python benchmarks/ranking.py --quick            # small catalogue (smoke test)

Writes JSON to ``runs/benchmarks/ranking.json`` and markdown beside it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if not __package__:  # `python benchmarks/ranking.py`: the checkout's package
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from benchmarks._common import (
    check_out,
    default_out,
    fmt_bytes,
    machine_line,
    out_help,
    save_result,
    status_bytes,
    time_interleaved,
)
from pyg_mentor.evaluation import (
    DEFAULT_KS,
    SCORE_COPIES,
    Evaluator,
    _collect,
    _make_collection,
    auto_batch_size,
    topk_items,
)
from pyg_mentor.typing import ITEM, RATES, USER

METHODS = ('torch (evaluator)', 'MIPSKNNIndex (FAISS)', 'FAISS search only')


def make_problem(
    num_users: int, num_items: int, dim: int, train: int, held_out: int, seed: int
) -> tuple[HeteroData, Tensor, Tensor]:
    r"""Random embeddings and, per user, :obj:`train` training items and
    :obj:`held_out` test items (distinct)."""
    gen = torch.Generator().manual_seed(seed)
    user_emb = torch.randn(num_users, dim, generator=gen)
    item_emb = torch.randn(num_items, dim, generator=gen)
    items = torch.stack(
        [torch.randperm(num_items, generator=gen)[: train + held_out] for _ in range(num_users)]
    )
    users = torch.arange(num_users).view(-1, 1)
    data = HeteroData()
    data[USER].num_nodes = num_users
    data[ITEM].num_nodes = num_items
    data[RATES].edge_index = torch.stack(
        [users.expand(-1, train).reshape(-1), items[:, :train].reshape(-1)]
    )
    data[RATES].test_label_index = torch.stack(
        [users.expand(-1, held_out).reshape(-1), items[:, train:].reshape(-1)]
    )
    return data, user_emb, item_emb


def _reset_peak() -> int:
    r"""Resets ``VmHWM`` to the resident set and returns it."""
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
    return status_bytes('VmRSS:')


def peak_extra(fn: Callable[[], Any]) -> tuple[Any, int | None]:
    r"""The output of :obj:`fn` and the peak memory it added (None off Linux)."""
    try:
        base = _reset_peak()
    except (OSError, KeyError):
        return fn(), None
    out = fn()
    return out, status_bytes('VmHWM:') - base


def mips_metrics(
    index: Any, data: HeteroData, user_emb: Tensor, k: int
) -> tuple[dict[str, float], Tensor]:
    r"""MMRec's metrics from :class:`MIPSKNNIndex`'s top-:obj:`k` lists with
    the training items excluded; the lists too."""
    store = data[RATES]
    top = index.search(user_emb, k, exclude_links=store.edge_index).index
    top = top.masked_fill(top < 0, data[ITEM].num_nodes)  # empty slots
    collection = _make_collection(DEFAULT_KS)
    collection.update(top, store.test_label_index)
    return _collect(collection, DEFAULT_KS), top


def run_size(args: argparse.Namespace, num_items: int) -> list[dict[str, Any]]:
    import faiss
    from torch_geometric.nn.pool import MIPSKNNIndex

    k = max(DEFAULT_KS)
    data, user_emb, item_emb = make_problem(
        args.users, num_items, args.dim, args.train, args.held_out, args.seed
    )
    evaluator = Evaluator(data, 'test', memory_budget=args.memory_budget)
    rows = min(args.users, auto_batch_size(num_items, 4, args.memory_budget))
    start = time.perf_counter()
    index = MIPSKNNIndex(item_emb)
    build_seconds = time.perf_counter() - start
    flat = faiss.IndexFlatIP(args.dim)
    flat.add(item_emb.numpy())
    queries = user_emb.numpy()

    outputs: dict[str, Any] = {}
    fns: dict[str, Callable[[], Any]] = {
        METHODS[0]: lambda: outputs.__setitem__(
            METHODS[0], evaluator.evaluate_embeddings(user_emb, item_emb)
        ),
        METHODS[1]: lambda: outputs.__setitem__(METHODS[1], mips_metrics(index, data, user_emb, k)),
        METHODS[2]: lambda: outputs.__setitem__(METHODS[2], flat.search(queries, k)),
    }
    # The peak of every call (the untimed first one included), the largest kept.
    peaks: dict[str, int | None] = dict.fromkeys(fns)

    def measured(name: str, fn: Callable[[], Any]) -> Callable[[], None]:
        def call() -> None:
            peak = peak_extra(fn)[1]
            if peak is not None:
                peaks[name] = max(peaks[name] or 0, peak)

        return call

    timed = {name: measured(name, fn) for name, fn in fns.items()}
    times = time_interleaved(timed, repeat=args.repeat, warmup=1)

    # Agreement with the evaluator: its lists (in chunks, as it ranks) and metrics.
    same = 0
    mips_top = outputs[METHODS[1]][1]
    edge_index = data[RATES].edge_index
    for s in range(0, args.users, rows):
        users = torch.arange(s, min(s + rows, args.users))
        keep = (edge_index[0] >= s) & (edge_index[0] < s + rows)
        exclude = torch.stack([edge_index[0, keep] - s, edge_index[1, keep]])
        ours = topk_items(user_emb[users] @ item_emb.t(), k, exclude)
        same += int((ours == mips_top[users]).all(dim=1).sum())
    torch_metrics = outputs[METHODS[0]]
    mips_values = outputs[METHODS[1]][0]
    max_diff = max(abs(torch_metrics[key] - mips_values[key]) for key in torch_metrics)

    torch_seconds = statistics.median(times[METHODS[0]])
    result = []
    for name in METHODS:
        seconds = statistics.median(times[name])
        result.append(
            {
                'items': num_items,
                'users': args.users,
                'method': name,
                'seconds': seconds,
                'seconds_per_1k_users': seconds * 1000 / args.users,
                'all_seconds': times[name],
                'ratio': seconds / torch_seconds,
                'peak_extra_bytes': peaks[name],
                'chunk_rows': rows if name == METHODS[0] else None,
                'memory_bound_bytes': (
                    rows * num_items * SCORE_COPIES * 4 if name == METHODS[0] else None
                ),
                'index_build_seconds': None if name == METHODS[0] else build_seconds,
                'same_lists': same / args.users if name == METHODS[1] else None,
                'max_metric_diff': max_diff if name == METHODS[1] else None,
            }
        )
        print(
            f'{num_items} items, {name}: {seconds * 1000 / args.users:.2f} s per 1k users, '
            f'peak +{fmt_bytes(peaks[name])}',
            flush=True,
        )
    return result


def markdown(result: dict[str, Any]) -> str:
    budget = result['memory_budget']
    lines = [
        '# Full ranking over large catalogues: the evaluator vs FAISS',
        '',
        machine_line(result),
        '',
        f'{result["users"]} users, d = {result["dim"]}, {result["train"]} training items '
        f'masked and {result["held_out"]} held-out items per user, top-'
        f'{max(DEFAULT_KS)}; median of {result["repeat"]} interleaved rounds; the '
        f'evaluator with batch_size=auto and a budget of {fmt_bytes(budget)} per chunk '
        f'({SCORE_COPIES} float32 scores per user and item); FAISS {result["faiss"]}, '
        f'{result["threads"]} thread(s).',
        '',
        '| items | method | s per 1k users | vs torch | peak extra memory | chunk (bound) | '
        'index build | same top-50 lists | max metric diff |',
        '|---:|---|---:|---:|---:|---:|---:|---:|---:|',
    ]
    for row in result['rows']:
        build, same, diff = row['index_build_seconds'], row['same_lists'], row['max_metric_diff']
        cells = [
            f'{row["items"]:,}',
            row['method'],
            f'{row["seconds_per_1k_users"]:.2f}',
            f'{row["ratio"]:.2f}x',
            fmt_bytes(row['peak_extra_bytes']),
            (
                '-'
                if row['chunk_rows'] is None
                else f'{row["chunk_rows"]} users ({fmt_bytes(row["memory_bound_bytes"])})'
            ),
            '-' if build is None else f'{build:.2f} s',
            '-' if same is None else f'{100 * same:.1f}%',
            '-' if diff is None else f'{diff:.1e}',
        ]
        lines.append('| ' + ' | '.join(cells) + ' |')
    lines += [
        '',
        'peak extra memory: VmHWM during a call minus the resident set before it, the '
        "largest over the calls (the item embeddings and FAISS's copy of them are inputs, "
        "not counted); bound: the evaluator's accounting for a chunk (users x items x "
        f'{SCORE_COPIES} float32 scores: the scores and, at most as large, the '
        're-selection of the rows whose top-k ends in a tie). same top-50 '
        "lists: users whose MIPSKNNIndex list equals the evaluator's (order included); "
        'FAISS orders ties and near-ties by its own arithmetic. FAISS search only: no '
        'training items excluded, no metrics.',
        '',
        f'Command: `{result["command"]}`',
    ]
    return '\n'.join(lines) + '\n'


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--items', default='100000,1000000', help='catalogue sizes')
    parser.add_argument('--users', type=int, default=1000, help='evaluated users')
    parser.add_argument('--dim', type=int, default=64)
    parser.add_argument('--train', type=int, default=20, help='training items per user')
    parser.add_argument('--held-out', type=int, default=5, help='test items per user')
    parser.add_argument('--repeat', type=int, default=3, help='timed rounds')
    parser.add_argument(
        '--memory-budget',
        type=int,
        default=2**30,
        help="bytes per evaluator chunk (the evaluator's budget; default 1 GiB)",
    )
    parser.add_argument('--threads', type=int, default=1, help='torch and FAISS threads')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--quick', action='store_true', help='5 000 items, 200 users')
    parser.add_argument('--out', default=str(default_out('ranking')), help=out_help('ranking'))
    args = parser.parse_args(argv)
    out = check_out(args.out, args.quick)
    import faiss

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    sizes = [int(n) for n in args.items.split(',')]
    if args.quick:
        sizes, args.users, args.repeat = [5000], 200, 1
    rows = []
    for num_items in sizes:
        rows += run_size(args, num_items)
    result = save_result(
        out,
        'ranking',
        users=args.users,
        dim=args.dim,
        train=args.train,
        held_out=args.held_out,
        repeat=args.repeat,
        memory_budget=args.memory_budget,
        faiss=faiss.__version__,
        quick=args.quick,
        command=' '.join(
            ['python benchmarks/ranking.py', *(sys.argv[1:] if argv is None else argv)]
        ),
        rows=rows,
    )
    text = markdown(result)
    Path(out).with_suffix('.md').write_text(text)
    print(text)
    return result


if __name__ == '__main__':
    main()

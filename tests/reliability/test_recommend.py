r"""Issue 14, case 4: ``recommend`` on edge cases, against a brute-force
reference written here; and issue 16's output (header, scores, original ids,
``--format json|tsv``)."""

import json
import math

import pytest
import torch

from pyg_mentor.cli import main
from pyg_mentor.nn.models.base import Recommender


class Fixed(Recommender):
    r"""Given user and item embeddings (the scores are their dot products)."""

    def __init__(self, user_emb, item_emb):
        super().__init__(user_emb.size(0), item_emb.size(0))
        self.register_buffer('user_emb', user_emb)
        self.register_buffer('item_emb', item_emb)

    def forward(self, data=None):
        return self.user_emb, self.item_emb


def reference(user_emb, item_emb, users, k, exclude):
    r"""Brute force: every user's items outside its excluded ones, by
    (-score, item id), the first k, padded with (-1, nan)."""
    banned = {}
    for u, i in exclude.t().tolist():
        banned.setdefault(u, set()).add(i)
    items, scores = [], []
    for u in users:
        row = [
            (float(user_emb[u] @ item_emb[i]), i)
            for i in range(item_emb.size(0))
            if i not in banned.get(u, set())
        ]
        row.sort(key=lambda t: (-t[0], t[1]))
        row = row[:k] + [(math.nan, -1)] * (k - len(row[:k]))
        items.append([i for _, i in row])
        scores.append([s for s, _ in row])
    return items, scores


@pytest.mark.parametrize('chunked', [False, True])
@pytest.mark.parametrize('seed', range(5))
def test_masking_matches_brute_force(seed, chunked, monkeypatch):
    if chunked:  # Memory for 2 users per chunk: 2 copies of 12 float32 scores each.
        import pyg_mentor.evaluation as evaluation

        budget = 2 * 12 * evaluation.SCORE_COPIES * 4
        monkeypatch.setattr(
            evaluation,
            'available_memory',
            lambda device: int(budget / evaluation.EVAL_MEMORY_FRACTION),
        )
        assert evaluation.auto_batch_size(12, 4) == 2
    gen = torch.Generator().manual_seed(seed)
    num_users, num_items = 9, 12
    # Small integer embeddings: many tied scores.
    user_emb = torch.randint(-2, 3, (num_users, 3), generator=gen).float()
    item_emb = torch.randint(-2, 3, (num_items, 3), generator=gen).float()
    exclude = torch.stack(
        [
            torch.randint(num_users, (40,), generator=gen),
            torch.randint(num_items, (40,), generator=gen),
        ]
    )
    exclude[:, :num_items] = torch.stack(
        [torch.zeros(num_items, dtype=torch.long), torch.arange(num_items)]
    )  # user 0: all
    users = torch.randint(num_users, (15,), generator=gen).tolist() + [0, 3, 3]
    model = Fixed(user_emb, item_emb)
    for k in (1, 4, num_items - 2, num_items, num_items + 3):
        top, scores = model.recommend(
            None, torch.tensor(users), k, exclude_index=exclude, return_scores=True
        )
        items, values = reference(user_emb, item_emb, users, k, exclude)
        assert top.tolist() == items
        assert torch.allclose(scores, torch.tensor(values), equal_nan=True)
        assert model.recommend(None, torch.tensor(users), k, exclude).tolist() == items
    assert model.recommend(None, torch.tensor([], dtype=torch.long), 3).shape == (0, 3)


def test_repeated_users_get_the_same_list_without_training_items(toy, tmp_path, h, capsys):
    root, data = toy
    out = tmp_path / 'run'
    assert h.train(root, out) == 0
    capsys.readouterr()
    assert main(['recommend', '--run', str(out), '--users', '0,5,0', '--k', '8']) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split('\t') for line in lines[1:]]
    train = data['user', 'rates', 'item'].edge_index
    assert len(rows) == 3 * 8
    first, second = [r for r in rows if r[0] == '0'][:8], [r for r in rows if r[0] == '0'][8:]
    assert first == second
    for user in (0, 5):
        seen = set(train[1, train[0] == user].tolist())
        assert not seen & {int(r[2]) for r in rows if r[0] == str(user)}


def test_k_beyond_the_unmasked_items(toy, tmp_path, h, capsys):
    root, data = toy
    out = tmp_path / 'run'
    assert h.train(root, out) == 0
    train = data['user', 'rates', 'item'].edge_index
    user = int(train[0, 0])
    seen = set(train[1, train[0] == user].tolist())
    capsys.readouterr()
    assert main(['recommend', '--run', str(out), '--users', str(user), '--k', '100']) == 0
    captured = capsys.readouterr()
    items = [int(line.split('\t')[2]) for line in captured.out.splitlines()[1:]]
    assert sorted(items) == sorted(set(range(60)) - seen)  # Every other item, once.
    assert f'user {user} has only {60 - len(seen)} item(s) left' in captured.err
    for k in ('-3', '0'):
        assert main(['recommend', '--run', str(out), '--users', '1', '--k', k]) == 2
        h.one_line_error(capsys, f'--k must be >= 1, got {k}')
    assert main(['recommend', '--run', str(out), '--users', '1,x']) == 2
    h.one_line_error(capsys, '--users expects comma-separated integer ids')
    assert main(['recommend', '--run', str(out), '--users', '1,120']) == 2
    h.one_line_error(capsys, '--users must be ids in [0, 120), got [120]')


def test_output_has_a_header_scores_and_original_ids(toy, tmp_path, h, capsys):
    root, data = toy
    folder = root / 'toy'
    (folder / 'u_id_mapping.csv').write_text(
        'user_id\tuserID\n' + ''.join(f'U{u:03d}\t{u}\n' for u in range(120))
    )
    (folder / 'i_id_mapping.csv').write_text(
        'asin\titemID\n' + ''.join(f'B{i:04d}\t{i}\n' for i in range(60))
    )
    out = tmp_path / 'run'
    assert h.train(root, out) == 0
    state = torch.load(out / 'best.pt', weights_only=True)['model']
    scores = state['user_emb.weight'] @ state['item_emb.weight'].t()
    capsys.readouterr()

    assert main(['recommend', '--run', str(out), '--users', '4,2', '--k', '3']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split('\t') == [
        'user',
        'rank',
        'item',
        'score',
        'original_user',
        'original_item',
    ]
    assert [line.split('\t')[:2] for line in lines[1:]] == [
        ['4', '1'],
        ['4', '2'],
        ['4', '3'],
        ['2', '1'],
        ['2', '2'],
        ['2', '3'],
    ]
    for line in lines[1:]:
        user, _, item, score, original_user, original_item = line.split('\t')
        assert float(score) == pytest.approx(float(scores[int(user), int(item)]), rel=1e-5)
        assert original_user == f'U{int(user):03d}' and original_item == f'B{int(item):04d}'

    assert (
        main(['recommend', '--run', str(out), '--users', '4', '--k', '3', '--format', 'json']) == 0
    )
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry['user'] == 4 and entry['original_user'] == 'U004'
    assert [x['rank'] for x in entry['items']] == [1, 2, 3]
    assert [x['item'] for x in entry['items']] == [int(line.split('\t')[2]) for line in lines[1:4]]
    assert all(x['original_item'] == f'B{x["item"]:04d}' for x in entry['items'])


def test_synthetic_run_has_no_original_ids(tmp_path, h, capsys):
    out = tmp_path / 'run'
    assert (
        main(
            [
                'train',
                '--model',
                'mf_bpr',
                '--dataset',
                'synthetic',
                '--out',
                str(out),
                '--set',
                *h.FAST,
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(['recommend', '--run', str(out), '--users', '1', '--k', '2']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == 'user\trank\titem\tscore' and len(lines) == 3

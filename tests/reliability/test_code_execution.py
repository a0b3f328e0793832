r"""Issue 14, case 1: no code runs from a data set folder or a run folder. Each
test plants a payload that creates a marker file when unpickled, runs what a
user would run, and checks that the marker never appears and that the user
gets a clear message."""

import pickle

import torch

from pyg_mentor.cli import main
from pyg_mentor.datasets.mmrec import MMRecDataset


def test_pre_transform_pt_payload_never_runs(toy, tmp_path, h):
    # PyG's Dataset loads processed/pre_transform.pt with weights_only=False.
    root, _ = toy
    marker = tmp_path / 'pwned'
    processed = root / 'toy' / 'processed'
    processed.mkdir(parents=True)
    for name in ('pre_transform.pt', 'pre_filter.pt'):
        torch.save(h.Payload(marker), processed / name)
    dataset = MMRecDataset(root, 'toy')
    assert dataset[0]['user'].num_nodes == 120
    assert h.train(root, tmp_path / 'run') == 0
    assert not marker.exists()
    # And the planted files are gone (never read, removed as stale).
    assert not (processed / 'pre_transform.pt').exists()


def test_processed_cache_payload_is_refused_and_rebuilt(toy, tmp_path, caplog, h):
    # PyG's loader falls back to weights_only=False when weights_only fails.
    root, data = toy
    dataset = MMRecDataset(root, 'toy')
    cache = next((root / 'toy' / 'processed').glob('data_*.pt'))
    marker = tmp_path / 'pwned'
    torch.save({'format': 'pyg_mentor.mmrec', 'data': h.Payload(marker)}, cache)
    again = MMRecDataset(root, 'toy')[0]
    assert not marker.exists()
    assert torch.equal(
        again['user', 'rates', 'item'].edge_index, data['user', 'rates', 'item'].edge_index
    )
    assert str(cache) in caplog.text and 'refused to load' in caplog.text
    assert 'rebuilding' in caplog.text
    # The rebuilt cache is a good one again:
    assert torch.equal(
        MMRecDataset(root, 'toy')[0]['user', 'rates', 'item'].edge_index,
        dataset[0]['user', 'rates', 'item'].edge_index,
    )


def test_checkpoint_payload_never_runs(toy, tmp_path, capsys, h):
    # evaluate / recommend / --resume loaded best.pt / last.pt with weights_only=False.
    root, _ = toy
    out = tmp_path / 'run'
    assert h.train(root, out) == 0
    marker = tmp_path / 'pwned'
    good_best = torch.load(out / 'best.pt', weights_only=True)
    for name in ('best.pt', 'last.pt'):
        state = torch.load(out / name, weights_only=False)
        state['extra'] = h.Payload(marker)
        torch.save(state, out / name)
    capsys.readouterr()
    assert main(['evaluate', '--run', str(out)]) == 2
    h.one_line_error(capsys, str(out / 'best.pt'), 'refused to load', 'could run code')
    assert main(['recommend', '--run', str(out), '--users', '0']) == 2
    h.one_line_error(capsys, 'refused to load')
    assert h.train(root, out, '--resume', sets=[*FAST_RESUME]) == 2
    h.one_line_error(capsys, str(out / 'last.pt'), 'refused to load')
    assert not marker.exists()
    # A raw pickle (not torch.save's zip format) is refused before unpickling.
    with open(out / 'best.pt', 'wb') as f:
        pickle.dump({'model': h.Payload(marker), 'epoch': good_best['epoch']}, f)
    assert main(['evaluate', '--run', str(out)]) == 2
    h.one_line_error(capsys, 'not a file written by torch.save', 'can run code')
    assert not marker.exists()


FAST_RESUME = ['epochs=3', 'progress=false', 'tensorboard=false', 'batch_size=256']

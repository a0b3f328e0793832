from __future__ import annotations

import hashlib
import os
import pickle
import random
import subprocess

import numpy as np
import pytest
import torch

from pyg_mentor.datasets.synthetic import make_planted
from pyg_mentor.utils.io import (
    CorruptFileError,
    UnsafeFileError,
    atomic_torch_save,
    atomic_write_text,
    file_digest,
    fingerprint_changes,
    hetero_digest,
    hetero_fingerprint,
    safe_torch_load,
    tensor_digest,
)


def test_atomic_torch_save_round_trip(tmp_path):
    path = tmp_path / 'a' / 'b' / 'obj.pt'  # Parents do not exist yet.
    obj = {'w': torch.arange(6.0).view(2, 3), 'step': 3, 'name': 'x'}
    assert atomic_torch_save(obj, str(path)) == path

    loaded = torch.load(path, weights_only=True)
    assert torch.equal(loaded['w'], obj['w'])
    assert loaded['step'] == 3 and loaded['name'] == 'x'
    assert os.listdir(path.parent) == ['obj.pt']  # No temporary file left.


def test_atomic_torch_save_overwrites(tmp_path):
    path = tmp_path / 'obj.pt'
    atomic_torch_save(torch.zeros(2), path)
    atomic_torch_save(torch.ones(3), path)
    assert torch.equal(torch.load(path, weights_only=True), torch.ones(3))
    assert os.listdir(tmp_path) == ['obj.pt']


def test_atomic_torch_save_failure_keeps_old_file(tmp_path):
    path = tmp_path / 'obj.pt'
    atomic_torch_save(torch.ones(2), path)

    with pytest.raises(Exception):  # noqa: B017 (pickling error type varies)
        atomic_torch_save({'f': lambda: None}, path)  # Cannot be pickled.

    assert torch.equal(torch.load(path, weights_only=True), torch.ones(2))
    assert os.listdir(tmp_path) == ['obj.pt']


def test_tensor_digest_is_content_based():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, generator=gen)
    digest = tensor_digest(x)
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert tensor_digest(x.clone()) == digest
    assert tensor_digest(x.t().contiguous().t()) == digest  # Strides.
    assert tensor_digest(x.requires_grad_()) == digest

    y = x.detach().clone()
    y[2, 1] += 1e-6
    assert tensor_digest(y) != digest  # Values.
    assert tensor_digest(x.view(3, 4)) != digest  # Shape.
    assert tensor_digest(x.double()) != digest  # Dtype.


def test_tensor_digest_of_several_tensors():
    a, b = torch.arange(3), torch.arange(3, 5)
    assert tensor_digest(a, b) == tensor_digest(a.clone(), b.clone())
    assert tensor_digest(a, b) != tensor_digest(b, a)
    assert tensor_digest(a, b) != tensor_digest(torch.cat([a, b]))
    assert tensor_digest(a, b) != tensor_digest(a)
    assert tensor_digest() != tensor_digest(torch.empty(0))


def test_tensor_digest_dtypes_and_edge_cases():
    x = torch.randn(5, generator=torch.Generator().manual_seed(1))
    # Dtypes numpy lacks, conjugate/negative views, 0-d and empty tensors.
    assert tensor_digest(x.bfloat16()) == tensor_digest(x.bfloat16().clone())
    z = torch.complex(x, x)
    assert tensor_digest(z.conj()) == tensor_digest(z.conj().resolve_conj())
    assert tensor_digest(torch.tensor(2.0)) != tensor_digest(torch.tensor([2.0]))
    assert tensor_digest(torch.empty(0, 3)) != tensor_digest(torch.empty(3, 0))
    assert tensor_digest(x > 0) == tensor_digest((x > 0).clone())

    with pytest.raises(TypeError, match='torch.Tensor'):
        tensor_digest(x.numpy())
    with pytest.raises(TypeError, match='dense'):
        tensor_digest(x.to_sparse())


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (subprocess.check_call, (['touch', self.marker],))


def test_safe_torch_load_reads_checkpoints_with_numpy_random_state(tmp_path):
    state = {
        'w': torch.ones(2),
        'numpy_rng': np.random.get_state(),
        'python_rng': random.getstate(),
        'meta': {'k': [1, 2.5, 'x', None, (3,)]},
    }
    torch.save(state, tmp_path / 'a.pt')
    got = safe_torch_load(tmp_path / 'a.pt')
    assert torch.equal(got['w'], state['w']) and got['meta'] == state['meta']
    assert got['numpy_rng'][0] == 'MT19937'
    assert np.array_equal(got['numpy_rng'][1], state['numpy_rng'][1])
    assert got['python_rng'] == state['python_rng']


def test_safe_torch_load_never_runs_code(tmp_path):
    marker = tmp_path / 'pwned'
    torch.save({'x': _Payload(marker)}, tmp_path / 'zip.pt')
    with pytest.raises(
        UnsafeFileError, match='refused to load this checkpoint: it references .*check_call'
    ):
        safe_torch_load(tmp_path / 'zip.pt', what='checkpoint')
    (tmp_path / 'raw.pt').write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(CorruptFileError, match='not a file written by torch.save'):
        safe_torch_load(tmp_path / 'raw.pt')
    assert not marker.exists()


@pytest.mark.parametrize(
    'content, message',
    [
        (b'', 'the file is empty'),
        (b'hello', 'not a file written by torch.save'),
        (None, 'truncated or damaged'),
    ],
)
def test_safe_torch_load_damaged(tmp_path, content, message):
    path = tmp_path / 'x.pt'
    torch.save({'w': torch.ones(100)}, path)
    path.write_bytes(path.read_bytes()[:60] if content is None else content)
    with pytest.raises(CorruptFileError, match=message):
        safe_torch_load(path)
    with pytest.raises(FileNotFoundError):
        safe_torch_load(tmp_path / 'missing.pt')


def test_atomic_write_text(tmp_path):
    path = tmp_path / 'a' / 'x.json'
    atomic_write_text(path, 'one')
    atomic_write_text(path, 'two')
    assert path.read_text() == 'two' and os.listdir(path.parent) == ['x.json']


def test_file_digest(tmp_path):
    a, b = tmp_path / 'a.inter', tmp_path / 'b.npy'
    a.write_bytes(b'abc')
    b.write_bytes(b'1234')
    expected = hashlib.sha256(
        b'file_digest:v1;' + b'a.inter|3;' + b'abc' + b'b.npy|4;' + b'1234'
    ).hexdigest()
    assert file_digest([a, b]) == expected
    stat = a.stat()
    a.write_bytes(b'abd')  # Same size, same mtime: another digest.
    os.utime(a, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert file_digest([a, b]) != expected


def test_hetero_digest():
    a, b = (
        make_planted(num_users=50, num_items=30, seed=0),
        make_planted(num_users=50, num_items=30, seed=0),
    )
    assert hetero_digest(a) == hetero_digest(b)
    b['user', 'rates', 'item'].test_label_index[1, 0] += 1
    assert hetero_digest(a) != hetero_digest(b)
    c = make_planted(num_users=50, num_items=30, seed=0)
    c['item'].num_nodes = 31
    assert hetero_digest(a) != hetero_digest(c)


def test_hetero_fingerprint_sees_changes_not_rounding_noise():
    data = make_planted(num_users=50, num_items=300, seed=0)  # x_image, x_text
    assert hetero_digest(data) == hetero_digest(data.clone())
    base = hetero_fingerprint(data)
    gen = torch.Generator().manual_seed(0)
    noisy = data.clone()
    x = noisy['item'].x_image
    noisy['item'].x_image = x * (1 + 1e-7 * torch.randn(x.shape, generator=gen))
    assert fingerprint_changes(base, hetero_fingerprint(noisy)) == []
    # Values are not in the digest (computed features differ in their last
    # bits with the number of threads), only in the fingerprint:
    assert hetero_digest(noisy) == hetero_digest(data)
    for change in ('one entry', 'rows permuted', 'columns permuted', 'scaled'):
        other = data.clone()
        x = other['item'].x_text.clone()
        if change == 'one entry':
            x[7, 3] += 1.0
        elif change == 'rows permuted':
            x = x[torch.randperm(x.size(0), generator=gen)]
        elif change == 'columns permuted':
            x = x[:, torch.randperm(x.size(1), generator=gen)]
        else:
            x = 1.01 * x
        other['item'].x_text = x
        assert fingerprint_changes(base, hetero_fingerprint(other)) == ['item.x_text'], change
    del noisy['item'].x_image
    assert fingerprint_changes(base, hetero_fingerprint(noisy)) == ['item.x_image']

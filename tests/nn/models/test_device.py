r"""Every registered model moves across dtypes and devices with ``.to()`` and
computes the same thing there (PyG convention: a model is a ``Module`` whose
whole state follows it)."""

import pytest
import torch

from pyg_mentor.config import DataConfig
from pyg_mentor.datasets.load import prepare_data
from pyg_mentor.datasets.synthetic import make_planted
from pyg_mentor.nn.models import MODELS, get_model_spec

DEVICES = [
    'cpu',
    pytest.param(
        'cuda', marks=pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device')
    ),
]
get_model_spec('mf_bpr')  # fills the registry


@pytest.fixture(scope='module')
def data():
    raw = make_planted(num_users=40, num_items=24, seed=0)
    return prepare_data(raw, DataConfig(knn_k=3), item_graph=True)


def cast(data, device, dtype):
    data = data.to(device)
    for key in ('x_image', 'x_text'):
        data['item'][key] = data['item'][key].to(dtype)
    data['item', 'similar', 'item'].edge_weight = data['item', 'similar', 'item'].edge_weight.to(
        dtype
    )
    return data


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('name', sorted(MODELS))
def test_model_moves_to_float64_and_device(name, device, data):
    spec = get_model_spec(name)
    torch.manual_seed(0)
    model = spec.cls.from_data(data, embedding_dim=8)
    model.eval()  # no dropout / noise: the two precisions compute the same thing
    users = torch.arange(data['user'].num_nodes)
    reference = model.scorer(data)(users).double()

    moved = model.to(device=device, dtype=torch.float64)
    for tensor in [*moved.parameters(), *moved.buffers()]:
        if tensor.is_floating_point():
            assert tensor.dtype == torch.float64, name
        assert tensor.device.type == device, name
    data64 = cast(data, device, torch.float64)
    scores = moved.scorer(data64)(users.to(device))
    assert scores.dtype == torch.float64
    assert torch.allclose(scores.cpu(), reference, rtol=1e-4, atol=1e-4), name

    # A training step runs there too, with the trainer's optimisers.
    moved.train()
    optimizers = moved.configure_optimizers(1e-3)
    edges = data64['user', 'rates', 'item'].edge_index
    batch = torch.stack(
        [edges[0, :16], edges[1, :16], torch.arange(16, device=device) % data['item'].num_nodes]
    )
    view = moved.on_epoch_start(data64, 0, torch.Generator().manual_seed(0))
    terms = moved.train_step(view, batch, optimizers)
    assert torch.isfinite(terms['loss']) and terms['loss'].dtype == torch.float64

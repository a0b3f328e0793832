from __future__ import annotations

import pytest
import torch
from torch_geometric.data import HeteroData

from pyg_mentor.transforms.mask_features import MaskFeatures


def make_data() -> HeteroData:
    g = torch.Generator().manual_seed(0)
    data = HeteroData()
    data['item'].num_nodes = 100
    data['item'].x_image = torch.rand(100, 64, generator=g) + 1.0
    data['item'].x_text = torch.rand(100, 32, generator=g) + 1.0
    data['user'].num_nodes = 10
    data['user', 'rates', 'item'].edge_index = torch.tensor([[0, 1], [2, 3]])
    return data


def test_mask_features_all_modalities():
    data = make_data()
    torch.manual_seed(0)
    out = MaskFeatures(0.4)(data)
    for key in ('x_image', 'x_text'):
        x, masked = data['item'][key], out['item'][key]
        zeros = masked == 0
        # 3200 / 6400 entries: std of the fraction <= 0.009; allow 5 sigma.
        assert abs(zeros.float().mean().item() - 0.4) < 0.045
        torch.testing.assert_close(masked[~zeros], x[~zeros] / 0.6)
        assert (x >= 1.0).all()  # The input is not modified.
    # The two modalities get independent masks.
    assert not torch.equal(out['item'].x_image[:, :32] == 0, out['item'].x_text == 0)
    assert out['user', 'rates', 'item'].edge_index is data['user', 'rates', 'item'].edge_index


def test_mask_features_subset_and_direct_forward():
    data = make_data()
    torch.manual_seed(0)
    out = MaskFeatures(0.5, modalities='text').forward(data)
    assert out is not data
    assert out['item'].x_image is data['item'].x_image
    assert (out['item'].x_text == 0).any()
    assert (data['item'].x_text != 0).all()


def test_mask_features_p_zero_and_seed():
    data = make_data()
    out = MaskFeatures(0.0)(data)
    assert torch.equal(out['item'].x_image, data['item'].x_image)

    torch.manual_seed(1)
    a = MaskFeatures(0.5)(data)['item'].x_text
    torch.manual_seed(1)
    b = MaskFeatures(0.5)(data)['item'].x_text
    assert torch.equal(a, b)


def test_mask_features_errors_and_repr():
    for p in (-0.2, 1.0):
        with pytest.raises(ValueError, match="'p'"):
            MaskFeatures(p)
    with pytest.raises(ValueError, match="modality 'audio'"):
        MaskFeatures(0.5, ['audio'])(make_data())
    empty = HeteroData()
    empty['item'].num_nodes = 3
    with pytest.raises(ValueError, match='no item features'):
        MaskFeatures(0.5)(empty)
    with pytest.raises(TypeError, match='HeteroData'):
        MaskFeatures(0.5)(torch.ones(3))
    assert repr(MaskFeatures(0.5)) == 'MaskFeatures(p=0.5, modalities=None)'
    assert repr(MaskFeatures(0.5, ['text'])) == ("MaskFeatures(p=0.5, modalities=['text'])")

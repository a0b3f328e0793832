import re

import pytest

from pyg_mentor.config import (
    TrainConfig,
    check_model_option,
    check_value,
    expand_grid,
    load_config_file,
    parse_assignments,
    parse_value,
)
from pyg_mentor.nn.models import LightGCN


def test_parse_values():
    assert parse_value('1e-3') == 0.001
    assert parse_value('4') == 4
    assert parse_value('[1, 2]') == [1, 2]
    assert parse_value('true') is True
    assert parse_value('recall@10') == 'recall@10'
    # Bare words in lists are strings; numbers, booleans and quoted strings as before.
    assert parse_value('[text]') == ['text']
    assert parse_value('[[text],[audio, text]]') == [['text'], ['audio', 'text']]
    assert parse_value('[recall@10, ndcg@20]') == ['recall@10', 'ndcg@20']
    assert parse_value('[1e-3, 2, true, none, "a b"]') == [0.001, 2, True, None, 'a b']
    assert parse_value("[x_1, 'y']") == ['x_1', 'y']
    assert parse_value('[text') == '[text'  # not a list: kept as written
    assert parse_assignments(['lr=0.1', 'valid_metric=ndcg@20']) == {
        'lr': 0.1,
        'valid_metric': 'ndcg@20',
    }
    with pytest.raises(ValueError, match='key=value'):
        parse_assignments(['lr'])


def test_train_config_validation():
    with pytest.raises(ValueError, match='valid_metric'):
        TrainConfig(valid_metric='auc')
    with pytest.raises(ValueError, match='ks'):
        TrainConfig(valid_metric='recall@30')
    with pytest.raises(ValueError, match='select_on'):
        TrainConfig(select_on='test')
    assert TrainConfig(ks=[10, 20], valid_metric='recall@10').ks == (10, 20)


def test_expand_grid_splits_and_multiplies():
    trials = expand_grid(
        LightGCN,
        {
            'num_layers': [1, 2],
            'reg_weight': [1e-3, 1e-4],
            'lr': 0.01,
            'ks': [10, 20],
            'valid_metric': 'recall@10',
        },
    )
    assert len(trials) == 4
    # Every hyper-parameter is recorded, the signature's defaults included.
    assert trials[0].model_kwargs == {'embedding_dim': 64, 'num_layers': 1, 'reg_weight': 1e-3}
    assert trials[0].train.lr == 0.01 and trials[0].train.ks == (10, 20)
    assert trials[3].varied == {'num_layers': 2, 'reg_weight': 1e-4}
    assert trials[3].name == 'num_layers=2,reg_weight=0.0001'
    with pytest.raises(KeyError, match="Unknown option.*'layers'"):
        expand_grid(LightGCN, {'layers': 2})


def test_config_files(tmp_path):
    (tmp_path / 'a.json').write_text('{"lr": 0.01, "num_layers": [1, 2]}')
    (tmp_path / 'b.toml').write_text('lr = 0.01\nnum_layers = [1, 2]\n')
    assert load_config_file(tmp_path / 'a.json') == load_config_file(tmp_path / 'b.toml')
    (tmp_path / 'c.json').write_text('{"lr": ')
    with pytest.raises(ValueError, match='c.json'):
        load_config_file(tmp_path / 'c.json')
    with pytest.raises(FileNotFoundError, match='missing.json'):
        load_config_file(tmp_path / 'missing.json')


def test_check_value_against_annotations():
    from typing import Literal

    assert check_value('lr', 1, float) == 1.0 and isinstance(check_value('lr', 1, float), float)
    assert check_value('ks', [5, 10], tuple[int, ...]) == [5, 10]
    hint = int | Literal['auto'] | None  # MENTOR's cl_chunk_size
    assert check_value('c', 'auto', hint) == 'auto' and check_value('c', None, hint) is None
    assert check_value('c', 512, hint) == 512
    for name, value, hint, message in [
        ('lr', 'abc', float, "lr must be a float, got 'abc'"),
        ('epochs', 1.5, int, 'epochs must be an integer, got 1.5'),
        ('epochs', True, int, 'epochs must be an integer, got True'),
        ('progress', 1, bool, 'progress must be true or false, got 1'),
        ('ks', [5, 'x'], tuple[int, ...], "ks entries must be an integer, got 'x'"),
        (
            'c',
            'fast',
            int | Literal['auto'] | None,
            "c must be an integer or one of 'auto' or none, got 'fast'",
        ),
    ]:
        with pytest.raises(ValueError) as e:
            check_value(name, value, hint)
        assert str(e.value) == message


def test_check_model_option_ranges():
    for name, value in [
        ('embedding_dim', 1),
        ('num_layers', 0),
        ('num_mm_layers', 0),
        ('dropout', 0.0),
        ('d_dropout1', 0.5),
        ('temperature', 0.1),
        ('reg_weight', 0.0),
        ('cl_chunk_size', 'auto'),
        ('noise_eps', -1),
    ]:
        check_model_option(name, value)
    for name, value, message in [
        ('embedding_dim', 0, '>= 1'),
        ('num_heads', 0, '>= 1'),
        ('num_layers', -1, '>= 0'),
        ('dropout', 1.0, 'in [0, 1)'),
        ('tau', 0.0, '> 0'),
        ('reg_weight', -1e-4, '>= 0'),
    ]:
        with pytest.raises(ValueError, match=rf'{name} must be {re.escape(message)}'):
            check_model_option(name, value)


def test_grid_axes_of_list_valued_options():
    from pyg_mentor.config import is_grid_axis

    # Options whose values are lists are axes only as lists of lists.
    assert not is_grid_axis('num_neighbors', [10, 10])
    assert is_grid_axis('num_neighbors', [[10, 10], [5, 5]])
    assert not is_grid_axis('modalities', ['text'])
    assert not is_grid_axis('ks', [10, 20])
    assert is_grid_axis('lr', [1e-3, 1e-4])
    assert not is_grid_axis('lr', 1e-3)
    trials = expand_grid(LightGCN, {'sampler': 'neighbor', 'num_neighbors': [10, 10]})
    assert len(trials) == 1 and trials[0].train.num_neighbors == [10, 10]

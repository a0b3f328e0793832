from benchmarks import summarize_runs
from benchmarks.compare import paper_results
from pyg_mentor.datasets.synthetic import make_planted
from pyg_mentor.train import train_model


def test_summarize_a_grid_beside_the_paper(tmp_path):
    data = make_planted(num_users=120, num_items=60, seed=3)
    run = tmp_path / 'run'
    result = train_model(
        'lightgcn',
        data,
        {'epochs': 2, 'progress': False, 'reg_weight': [1e-4, 1e-3]},
        run,
        dataset='baby',
    )
    text = summarize_runs.main([str(run), '--out', str(tmp_path / 'out.md')])
    row = next(line for line in text.splitlines() if line.startswith('| lightgcn'))
    paper = paper_results('lightgcn', 'baby')[1]
    assert f'| {result["test"]["recall@20"]:.4f} |' in row
    assert f'| {result["test"]["recall@20"] / paper:.3f} |' in row  # ours / paper R@20
    assert '| lightgcn | baby | 2 |' in row
    trials = text.split('every trial')[1]
    assert trials.count('| reg_weight=') == 2
    assert (tmp_path / 'out.md').read_text() == text

"""Seconds per training epoch of the RELEASED MENTOR and of ours, back to back on one machine.

Runs the released MENTOR (set up by the project's official-anchor harness, which builds a
scratch folder with the released code at a fixed commit and its own virtual environment;
nothing of the release is imported here) and ``pyg-mentor train --model
mentor`` on the same real multimodal data with the same settings, alternately: release,
ours, release, ours, ... (``--reps`` pairs), each for ``--epochs`` training epochs. The
release is stopped once it has logged the valid metrics of its last counted epoch. Prints
(and writes beside ``--out``) a markdown table: each run's per-epoch training seconds, the
medians and their ratio, and both per-epoch valid Recall@10 curves (they should start alike:
the settings are the release's). Background jobs must be paused by the caller for the
numbers to mean anything; the table records the load average and threading environment::

    MENTOR_GIT=... MMREC_GIT=... DATA_DIR=<data>/lfm2k VISION=audio_feat.npy \\
        TEXT=text_feat.npy bash <harness>/setup.sh
    python benchmarks/release_beside.py --anchor /tmp/official_anchor \\
        --data <data>/lfm2k --out benchmarks/results/release_beside_lfm2k.json

The release needs exactly two modalities, called image and text; as in the harness, the
audio features take the image slot on both sides (``--image-file``), so both fuse the two
item graphs with the release's image weight 0.1.

Settings on our side (the release's first grid combination and its faithful behaviour):
``lr=1e-4 cl_weight=1e-4 temperature=0.2 feature_mask_grad=false
eval_cached_embeddings=true``.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

if not __package__:  # `python benchmarks/release_beside.py`: import the checkout's package
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from benchmarks._common import check_out, default_out, machine_line, out_help, save_result
from pyg_mentor.run_folder import read_log

#: Our options equal to the release's first grid combination and its behaviour.
RELEASE_SETTINGS = (
    'lr=1e-4',
    'cl_weight=1e-4',
    'temperature=0.2',
    'feature_mask_grad=false',
    'eval_cached_embeddings=true',
)

_TRAIN = re.compile(r'epoch (\d+) training \[time: ([\d.]+)s')
_EVAL = re.compile(r'epoch (\d+) evaluating \[time: ([\d.]+)s')
_RECALL10 = re.compile(r'recall@10: ([\d.]+)')


def _tail(path: Path, lines: int = 20) -> str:
    return '\n'.join(path.read_text(errors='replace').splitlines()[-lines:])


def parse_release_log(text: str) -> list[dict[str, float]]:
    r"""Per epoch of a released MENTOR/MMRec log: ``epoch``, ``train_seconds`` and, once
    the epoch was evaluated, ``valid_recall@10`` (the metric line after ``valid result``).
    """
    epochs: dict[int, dict[str, float]] = {}
    current, expect_valid = None, False
    for line in text.splitlines():
        if m := _TRAIN.search(line):
            current = int(m.group(1))
            epochs[current] = {'epoch': current, 'train_seconds': float(m.group(2))}
        elif m := _EVAL.search(line):
            current = int(m.group(1))
        elif 'valid result' in line:
            expect_valid = True
        elif expect_valid:
            expect_valid = False
            if (m := _RECALL10.search(line)) and current in epochs:
                epochs[current]['valid_recall@10'] = float(m.group(1))
    return [epochs[k] for k in sorted(epochs)]


def run_release(anchor: Path, dataset: str, epochs: int, log: Path) -> list[dict[str, float]]:
    r"""Runs the release's ``main.py -m MENTOR -d dataset`` until :obj:`epochs` epochs
    carry a valid metric, then stops it."""
    src = anchor / 'MENTOR' / 'src'
    python = anchor / 'venv' / 'bin' / 'python'
    if not (src / 'main.py').is_file() or not python.is_file():
        raise FileNotFoundError(
            f'{anchor}: no set-up official-anchor harness (MENTOR/src/main.py and '
            "venv/bin/python); run the official-anchor harness's setup.sh first"
        )
    with open(log, 'w') as f:
        proc = subprocess.Popen(
            [str(python), '-u', 'main.py', '-m', 'MENTOR', '-d', dataset],
            cwd=src,
            stdout=f,
            stderr=subprocess.STDOUT,
        )
    try:
        while proc.poll() is None:
            rows = parse_release_log(log.read_text(errors='replace'))
            if sum('valid_recall@10' in r for r in rows) >= epochs:
                break
            time.sleep(1.0)
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait()
    rows = [r for r in parse_release_log(log.read_text(errors='replace')) if r['epoch'] < epochs]
    if len(rows) < epochs:
        raise RuntimeError(
            f'the release stopped after {len(rows)} of {epochs} epochs; the end of its '
            f'log:\n{_tail(log)}'
        )
    return rows


def run_ours(root: Path, dataset: str, epochs: int, out: Path) -> list[dict[str, float]]:
    r"""``pyg-mentor train --model mentor`` with :data:`RELEASE_SETTINGS` for
    :obj:`epochs` epochs; its per-epoch train seconds and valid Recall@10."""
    cmd = [
        sys.executable, '-m', 'pyg_mentor.cli', 'train', '--model', 'mentor',
        '--dataset', dataset, '--root', str(root), '--out', str(out), '--epochs', str(epochs),
        '--set', *RELEASE_SETTINGS, 'tensorboard=false', 'progress=false',
    ]  # fmt: skip
    repo = Path(__file__).resolve().parents[1]
    path = os.pathsep.join(filter(None, [str(repo), os.environ.get('PYTHONPATH')]))
    log = out.with_suffix('.out')
    with open(log, 'w') as f:
        done = subprocess.run(
            cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, 'PYTHONPATH': path}
        )
    if done.returncode != 0:
        raise RuntimeError(
            f'our training exited with {done.returncode}; the end of its output:\n{_tail(log)}'
        )
    return [
        {
            'epoch': int(r['epoch']),
            'train_seconds': float(r['train_seconds']),
            'valid_recall@10': float(r['valid/recall@10']),
        }
        for r in read_log(out)
    ]


def linked_root(data: Path, dataset: str, image_file: str, text_file: str, where: Path) -> Path:
    r"""A dataset root ``where/<dataset>/`` whose ``image_feat.npy`` / ``text_feat.npy``
    are links to :obj:`data`'s :obj:`image_file` / :obj:`text_file` (the release's slots)."""
    folder = where / dataset
    folder.mkdir(parents=True)
    inter = data / f'{dataset}.inter'
    for source, name in ((inter, inter.name), (data / image_file, 'image_feat.npy'),
                         (data / text_file, 'text_feat.npy')):  # fmt: skip
        if not source.is_file():
            raise FileNotFoundError(f'{source}: not found (expected in --data)')
        (folder / name).symlink_to(source.resolve())
    return where


def table(release: list[list[dict]], ours: list[list[dict]], warmup: int) -> list[str]:
    r"""Markdown: per epoch the seconds and valid R@10 of every run, then the medians
    over epochs >= :obj:`warmup` of all reps and their ratio."""
    reps = len(release)
    head = (
        ['epoch']
        + [f'release s (rep {i + 1})' for i in range(reps)]
        + [f'ours s (rep {i + 1})' for i in range(reps)]
        + ['release valid R@10', 'ours valid R@10']
    )
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---:|' * len(head)]
    for e in range(len(release[0])):
        cells = [str(e)]
        cells += [f'{run[e]["train_seconds"]:.2f}' for run in release]
        cells += [f'{run[e]["train_seconds"]:.2f}' for run in ours]
        cells += [f'{release[0][e]["valid_recall@10"]:.4f}', f'{ours[0][e]["valid_recall@10"]:.4f}']
        lines.append('| ' + ' | '.join(cells) + ' |')
    rel = statistics.median(r['train_seconds'] for run in release for r in run[warmup:])
    our = statistics.median(r['train_seconds'] for run in ours for r in run[warmup:])
    lines += [
        '',
        f'Median seconds per training epoch (epochs >= {warmup}, all reps): release '
        f'{rel:.2f}, ours {our:.2f}: ours is **{rel / our:.2f}x** faster.',
    ]
    return lines


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--anchor', type=Path, required=True, help='ANCHOR_DIR of setup.sh')
    parser.add_argument('--data', type=Path, required=True, help='folder with <dataset>.inter')
    parser.add_argument('--dataset', default='lfm2k', help='the NAME given to setup.sh')
    parser.add_argument('--image-file', default='audio_feat.npy', help="the release's image slot")
    parser.add_argument('--text-file', default='text_feat.npy')
    parser.add_argument('--epochs', type=int, default=4)
    parser.add_argument('--reps', type=int, default=2)
    parser.add_argument('--warmup', type=int, default=1, help='first epochs left out of medians')
    parser.add_argument(
        '--out', type=Path, default=default_out('release_beside'), help=out_help('release_beside')
    )
    args = parser.parse_args(argv)
    out = check_out(args.out, quick=False)
    if not 0 <= args.warmup < args.epochs:
        parser.error(f'--warmup must be in [0, --epochs), got {args.warmup}')
    started = machine_line()
    release, ours = [], []
    with tempfile.TemporaryDirectory() as tmp:
        root = linked_root(args.data, args.dataset, args.image_file, args.text_file, Path(tmp))
        for rep in range(args.reps):
            print(f'rep {rep + 1}/{args.reps}: release', flush=True)
            release.append(run_release(args.anchor, args.dataset, args.epochs,
                                       Path(tmp) / f'release-{rep}.log'))  # fmt: skip
            print(f'rep {rep + 1}/{args.reps}: ours', flush=True)
            ours.append(run_ours(root, args.dataset, args.epochs, Path(tmp) / f'ours-{rep}'))
    lines = [
        f'# Released MENTOR beside ours on {args.dataset}: seconds per training epoch',
        '',
        f'- Started: {started}',
        f'- Finished: {machine_line()}',
        f'- Alternating release / ours, {args.reps} reps x {args.epochs} epochs; '
        f'{args.image_file} in the image slot, {args.text_file} as text; ours with '
        f'`{" ".join(RELEASE_SETTINGS)}`',
        '- The load average includes the runs themselves (2 threads each, one at a time); '
        'other jobs on the machine should be paused by the caller',
        '',
        *table(release, ours, args.warmup),
    ]
    text = '\n'.join(lines) + '\n'
    print(text)
    result = save_result(
        out, 'release_beside', dataset=args.dataset, epochs=args.epochs, reps=args.reps,
        warmup=args.warmup, settings=list(RELEASE_SETTINGS), release=release, ours=ours,
    )  # fmt: skip
    out.with_suffix('.md').write_text(text)
    return result


if __name__ == '__main__':
    main()

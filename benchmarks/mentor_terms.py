"""How much each of MENTOR's loss terms pulls on the parameters, over training.

Trains MENTOR with the normal trainer and, on the first batch of every epoch, takes the
gradient of each loss term separately (``torch.autograd.grad`` of the term w.r.t. every
parameter the terms share, i.e. all but the feature-mask map) and records, per term (and
their sum, ``total``): its value, the L2 norm of its gradient, and the cosine
between its gradient and the BPR gradient (negative = the term pulls against the ranking
objective). One CSV row per epoch and term is written beside the run's ``log.csv``::

    python benchmarks/mentor_terms.py --dataset lfm2k --root <folder holding lfm2k/> \\
        --out runs/terms-default --set epochs=40
    python benchmarks/mentor_terms.py ... --set feature_mask_grad=false

The extra backward passes cost ~5 steps per epoch; the training itself is the trainer's.
"""

from __future__ import annotations

import argparse
import csv
import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from pyg_mentor.config import parse_assignments
from pyg_mentor.datasets.load import load_dataset
from pyg_mentor.nn.models.mentor import MENTOR
from pyg_mentor.train import train_model

TERMS = ('bpr', 'reg', 'align', 'mask', 'cl')


class DiagnosedMENTOR(MENTOR):
    """MENTOR that records per-term gradients on the first batch of every epoch."""

    diagnostics: list[dict[str, float]]
    #: Where the rows are written after every epoch's diagnosis (if set).
    terms_path: Path | None = None
    _epoch: int | None = None

    def on_epoch_start(self, epoch: int, generator: torch.Generator) -> None:
        super().on_epoch_start(epoch, generator)
        if not hasattr(self, 'diagnostics'):
            self.diagnostics = []
        self._epoch = epoch

    def train_step(self, batch, optimizer):
        if self._epoch is not None:
            self._diagnose(batch, self._epoch)
            self._epoch = None
        return super().train_step(batch, optimizer)

    def _diagnose(self, batch, epoch: int) -> None:
        # The parameters the terms share: the feature-mask map is the mask term's own.
        own = {id(p) for p in self.mask_map.parameters()}
        params = [p for p in self.parameters() if p.requires_grad and id(p) not in own]
        state = torch.get_rng_state()  # The step itself must see the same draws.
        terms = self.loss(batch)
        torch.set_rng_state(state)
        grads = {}
        for name in TERMS:
            value = terms[name]
            if not value.requires_grad:
                grads[name] = None
                continue
            g = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
            grads[name] = torch.cat(
                [(x if x is not None else torch.zeros_like(p)).flatten() for x, p in zip(g, params)]
            )
        grads['total'] = sum(g for g in grads.values() if g is not None)
        terms['total'] = terms['loss']
        bpr = grads['bpr']
        for name in (*TERMS, 'total'):
            g = grads[name]
            norm = float(g.norm()) if g is not None else 0.0
            cos = (
                float(torch.nn.functional.cosine_similarity(g, bpr, dim=0))
                if g is not None and name != 'bpr' and norm > 0
                else float('nan')
            )
            self.diagnostics.append(
                {
                    'epoch': epoch,
                    'term': name,
                    'value': float(terms[name]),
                    'grad_norm': norm,
                    'cos_with_bpr': cos,
                }
            )
        if self.terms_path is not None:
            write_rows(self.terms_path, self.diagnostics)


def write_rows(path: Path, rows: list[dict[str, float]]) -> None:
    tmp = path.with_suffix('.tmp')
    with tmp.open('w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--dataset', default='lfm2k')
    parser.add_argument(
        '--root',
        default=None,
        help='folder holding <dataset>/ (default: $PYG_MENTOR_DATA or ./datasets)',
    )
    parser.add_argument('--out', required=True, help='run folder (log.csv, terms.csv)')
    parser.add_argument('--set', nargs='*', default=[], metavar='KEY=VALUE')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(message)s', datefmt='%H:%M:%S')

    data = load_dataset(args.dataset, args.root)
    options = {'tensorboard': False, 'progress': False, **parse_assignments(args.set)}
    models: list[DiagnosedMENTOR] = []
    Path(args.out).mkdir(parents=True, exist_ok=True)

    # Route the registered 'mentor' entry through the diagnosed subclass.
    from pyg_mentor.nn.models.base import get_model_spec

    spec = get_model_spec('mentor')
    original = spec.cls

    out = Path(args.out) / 'terms.csv'

    class Recorder(DiagnosedMENTOR):
        terms_path = out

        @classmethod
        def from_data(cls, data, **kwargs):
            model = super().from_data(data, **kwargs)
            models.append(model)
            return model

    spec.cls = Recorder
    try:
        train_model('mentor', data, options, args.out, dataset=args.dataset)
    finally:
        spec.cls = original
    print(f'wrote {out}')


if __name__ == '__main__':
    main()

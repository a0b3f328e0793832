r"""Multi-process training on :mod:`torch.distributed`, exact with respect to one
process on the same global batches.

The processes ("ranks") are started by ``pyg-mentor train --nproc N`` (:func:`launch`)
or by ``torchrun`` (``torchrun --nproc-per-node N -m pyg_mentor.cli train ...``): both
give every process torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``), and :func:`process_group` joins the group it
describes, with gloo on the CPU and NCCL on CUDA devices (``cuda`` is
``cuda:<LOCAL_RANK>``), as PyG's multi-GPU examples do.

What makes :math:`N` processes train exactly as one process does on the same global
batch :math:`\mathcal{B}` (up to the order of float additions):

* every rank draws the same global batches and negatives from the same seeded
  generator and keeps a contiguous slice of each (:func:`shard`); replicated
  state (parameters, the trainer's generators, the global random state the models
  draw dropout and noise from) stays equal on every rank;
* a loss term that reduces over the rows of the batch (a mean, a norm) is
  computed over the *global* batch: inside :func:`global_batch`,
  :func:`batch_sum` is a differentiable all-reduce, and the batch reductions of
  :mod:`pyg_mentor.nn.functional` (:func:`~pyg_mentor.nn.functional.bpr_loss`,
  :func:`~pyg_mentor.nn.functional.embedding_norm_loss`,
  :func:`~pyg_mentor.nn.functional.batch_mean`, the batch tensors of
  :func:`~pyg_mentor.nn.functional.reg_loss`) use it. Every rank then holds the
  same loss value :math:`L(\mathcal{B})`, and its gradient with respect to the
  parameters is :math:`N` times its own rows' contribution (the all-reduce's
  backward sums the :math:`N` ranks' equal upstream gradients) plus the
  gradient of the terms every rank computes alike (e.g. MENTOR's InfoNCE over all
  users);
* :func:`sync_gradients` averages the gradients over the ranks before every
  optimiser step, so the step uses :math:`\nabla L(\mathcal{B})` exactly: the
  averaged :math:`N`-fold shares add up to the gradient of the sums, and the
  replicated terms keep their own.

This is PyTorch's :class:`~torch.nn.parallel.DistributedDataParallel` in
function, with the gradient all-reduce done once per optimiser step (one flat
buffer, in the same order on every rank, like Horovod's ``DistributedOptimizer``)
instead of in buckets overlapped with the backward pass: the loss's own
all-reduces run inside the backward pass, and models may step several
optimisers per batch (:meth:`~pyg_mentor.nn.models.Recommender.train_step`).

Models whose loss has terms that couple the rows of a batch in another way
(e.g. an InfoNCE over the batch's distinct users) refuse to train on several
processes (:meth:`~pyg_mentor.nn.models.Recommender.check_distributed`).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from typing import Any

import torch
from torch import Tensor

log = logging.getLogger(__name__)

__all__ = [
    'LAUNCH_ENV',
    'env_rank',
    'launched',
    'process_group',
    'get_rank',
    'get_world_size',
    'shard',
    'global_batch',
    'batch_sum',
    'sync_gradients',
    'broadcast_module',
    'broadcast_flag',
    'collective_device',
    'launch',
]

#: The environment torchrun gives every process (and :func:`launch` too).
LAUNCH_ENV = ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT')

#: Seconds a collective waits for the other ranks before failing (torch's
#: default for gloo); a rank that dies is noticed sooner by the launcher.
TIMEOUT = datetime.timedelta(minutes=30)


def env_rank() -> tuple[int, int, int] | None:
    r"""``(rank, world_size, local_rank)`` from torchrun's environment, or
    :obj:`None` in a process that was not launched so."""
    if 'RANK' not in os.environ or 'WORLD_SIZE' not in os.environ:
        return None
    rank, world = int(os.environ['RANK']), int(os.environ['WORLD_SIZE'])
    return rank, world, int(os.environ.get('LOCAL_RANK', rank))


def launched() -> bool:
    r"""Whether this process is one of several launched by ``--nproc`` or
    ``torchrun`` (a world size above 1)."""
    env = env_rank()
    return env is not None and env[1] > 1


@contextlib.contextmanager
def process_group(device: str | torch.device = 'cpu') -> Iterator[Any]:
    r"""Joins the process group of torchrun's environment (``env://``) for the
    duration of the block and yields it (:obj:`torch.distributed.group.WORLD`);
    yields :obj:`None` in a process that was not launched with a world size
    above 1 (one process: nothing to join).

    The backend is NCCL for a CUDA :obj:`device` (then ``cuda`` without an
    index becomes ``cuda:<LOCAL_RANK>``: :func:`torch.cuda.set_device`) and
    gloo otherwise.

    Raises:
        ValueError: If several processes would share one CUDA device
            (``cuda:1`` given with a world size above 1).
    """
    import torch.distributed as dist

    env = env_rank()
    if env is None or env[1] <= 1:
        yield None
        return
    rank, world, local_rank = env
    device = torch.device(device)
    if device.type == 'cuda':
        if device.index is not None:
            raise ValueError(
                f"device '{device}' names one GPU for {world} processes: give "
                'device=cuda, and every process takes the GPU of its LOCAL_RANK'
            )
        torch.cuda.set_device(local_rank)
    backend = 'nccl' if device.type == 'cuda' else 'gloo'
    dist.init_process_group(backend, rank=rank, world_size=world, timeout=TIMEOUT)
    try:
        yield dist.group.WORLD
    except BaseException:
        dist.destroy_process_group()
        raise
    # Every rank leaves together: a rank that tore down its gloo connections
    # while rank 0 still wrote its last files was seen to abort at exit
    # ("terminate called without an active exception", status -6).
    dist.barrier()
    dist.destroy_process_group()


def get_rank(group: Any = None) -> int:
    r"""This process's rank in :obj:`group`; 0 without one."""
    if group is None:
        return 0
    import torch.distributed as dist

    return dist.get_rank(group)


def get_world_size(group: Any = None) -> int:
    r"""The number of processes of :obj:`group`; 1 without one."""
    if group is None:
        return 1
    import torch.distributed as dist

    return dist.get_world_size(group)


def collective_device(group: Any = None) -> torch.device:
    r"""Where the tensors of :obj:`group`'s collectives live: the current CUDA
    device for NCCL, the CPU otherwise."""
    import torch.distributed as dist

    if group is not None and dist.get_backend(group) == 'nccl':
        return torch.device('cuda', torch.cuda.current_device())
    return torch.device('cpu')


def shard(batch: Tensor, rank: int, world_size: int) -> Tensor:
    r"""The columns of a global batch :obj:`[3, B]` that rank :obj:`rank` of
    :obj:`world_size` trains on: contiguous slices, in rank order, whose
    sizes differ by at most one (:func:`torch.tensor_split`); a rank gets an
    empty slice when :math:`B` is below the world size."""
    return batch.tensor_split(world_size, dim=1)[rank]


# The global batch ############################################################

_BATCH_GROUP: ContextVar[Any] = ContextVar('pyg_mentor_batch_group', default=None)


@contextlib.contextmanager
def global_batch(group: Any = None) -> Iterator[None]:
    r"""Within the block, :func:`batch_sum` (and the batch reductions of
    :mod:`pyg_mentor.nn.functional` built on it) sums over the shards of every
    rank of :obj:`group`, so that a loss computed on this rank's shard is
    the loss of the global batch. With :obj:`group=None` (one process) it
    changes nothing. The trainer enters it around every
    :meth:`~pyg_mentor.nn.models.Recommender.train_step`; every rank must
    then compute the same sequence of batch reductions."""
    token = _BATCH_GROUP.set(group if get_world_size(group) > 1 else None)
    try:
        yield
    finally:
        _BATCH_GROUP.reset(token)


def batch_group() -> Any:
    r"""The group of the enclosing :func:`global_batch`, or :obj:`None`."""
    return _BATCH_GROUP.get()


def batch_sum(x: Tensor) -> Tensor:
    r""":obj:`x` summed over the ranks of the enclosing :func:`global_batch`
    (a differentiable all-reduce: its backward pass sums the ranks' upstream
    gradients); :obj:`x` itself outside one.

    Args:
        x (torch.Tensor): A partial sum over this rank's shard, of any shape.
    """
    group = _BATCH_GROUP.get()
    if group is None:
        return x
    return _AllReduceSum.apply(x, group)


class _AllReduceSum(torch.autograd.Function):
    r"""A sum over the ranks whose gradient is the sum of the ranks' upstream
    gradients (every rank's output feeds its own loss)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, group: Any) -> Tensor:
        import torch.distributed as dist

        ctx.group = group
        out = x.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        import torch.distributed as dist

        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


# Replicated state #############################################################


def broadcast_module(module: torch.nn.Module, group: Any = None, src: int = 0) -> None:
    r"""Copies the parameters and buffers of rank :obj:`src` to every rank of
    :obj:`group` (as :class:`~torch.nn.parallel.DistributedDataParallel` does
    when it wraps a model)."""
    import torch.distributed as dist

    if get_world_size(group) <= 1:
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            if tensor.is_sparse or tensor.numel() == 0:
                continue
            dist.broadcast(tensor.data, src=src, group=group)


def broadcast_flag(flag: bool, group: Any = None, src: int = 0) -> bool:
    r"""Rank :obj:`src`'s :obj:`flag` on every rank of :obj:`group` (e.g. the
    early-stopping decision)."""
    import torch.distributed as dist

    if get_world_size(group) <= 1:
        return flag
    value = torch.tensor([int(flag)], device=collective_device(group))
    dist.broadcast(value, src=src, group=group)
    return bool(value.item())


def sync_gradients(optimizer: torch.optim.Optimizer, group: Any = None) -> Any:
    r"""Averages the gradients of :obj:`optimizer`'s parameters over the ranks
    of :obj:`group` before each of its steps (a step pre-hook), so that every
    rank takes the same step.

    A parameter without a gradient on every rank keeps none (the optimiser
    skips it, as in one process); one with a gradient on some rank only gets
    zeros on the others before the average. The gradients travel in one flat
    buffer per dtype and device.

    Returns:
        The hook's handle (:meth:`remove` detaches it).
    """
    import torch.distributed as dist

    world = get_world_size(group)

    def hook(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        params = [p for g in opt.param_groups for p in g['params']]
        device = collective_device(group)
        has = torch.tensor([p.grad is not None for p in params], dtype=torch.int32)
        has = has.to(device)
        dist.all_reduce(has, group=group)
        buckets: dict[tuple, list[Tensor]] = {}
        for p, count in zip(params, has.tolist()):
            if count == 0:
                continue
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            elif p.grad.is_sparse:
                p.grad = p.grad.to_dense()
            grad = p.grad
            buckets.setdefault((grad.dtype, grad.device), []).append(grad)
        for grads in buckets.values():
            flat = torch.cat([grad.reshape(-1) for grad in grads])
            dist.all_reduce(flat, group=group)
            flat.div_(world)
            offset = 0
            for grad in grads:
                grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
                offset += grad.numel()

    return optimizer.register_step_pre_hook(hook)


# Launching ####################################################################


def launch(
    argv: Sequence[str],
    nproc: int,
    *,
    module: str | None = 'pyg_mentor.cli',
    timeout: float | None = None,
    poll_seconds: float = 0.1,
) -> int:
    r"""Runs :obj:`nproc` processes of ``python -m <module> <argv>`` on this
    machine with torchrun's environment (ranks 0..N-1 and a rendezvous on a
    free local port) and waits for them: ``pyg-mentor train --nproc N``.

    The rendezvous store is held by this process (torchrun's agent store), so
    no port is chosen by one process and bound by another. When a process
    fails, the others are stopped and its exit status is returned (an
    interruption stops them all); 0 when every process succeeded.

    Args:
        argv (Sequence[str]): The command line of every process.
        nproc (int): The number of processes (>= 1).
        module (str, optional): The module run with ``python -m``;
            :obj:`None` runs ``python <argv>`` (a script and its arguments).
        timeout (float, optional): Seconds after which the processes are
            stopped and :class:`TimeoutError` is raised. (default: none)
        poll_seconds (float): How often the processes are checked.
    """
    if nproc < 1:
        raise ValueError(f'nproc must be >= 1, got {nproc}')
    from torch.distributed import TCPStore

    store = TCPStore('127.0.0.1', 0, nproc, is_master=True, wait_for_workers=False)
    env = dict(os.environ)
    env.update(
        MASTER_ADDR='127.0.0.1',
        MASTER_PORT=str(store.port),
        WORLD_SIZE=str(nproc),
        LOCAL_WORLD_SIZE=str(nproc),
        TORCHELASTIC_USE_AGENT_STORE='True',
    )
    command = [sys.executable, *(['-m', module] if module else []), *argv]
    deadline = None if timeout is None else time.monotonic() + timeout
    procs: list[subprocess.Popen] = []
    try:
        for rank in range(nproc):
            procs.append(
                subprocess.Popen(command, env={**env, 'RANK': str(rank), 'LOCAL_RANK': str(rank)})
            )
        while True:
            codes = [p.poll() for p in procs]
            failed = [(rank, c) for rank, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                rank, code = failed[0]
                # Status 2: a user error, which the process has printed.
                if code != 2 and any(c is None for c in codes):
                    log.error('process %d exited with status %d: stopping the others', rank, code)
                return code
            if all(c == 0 for c in codes):
                return 0
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f'{nproc} processes still running after {timeout} s: stopped')
            time.sleep(poll_seconds)
    finally:
        _stop(procs)
        del store


def _stop(procs: Sequence[subprocess.Popen], grace: float = 10.0) -> None:
    r"""Terminates the processes still running, then kills those that did not
    exit within :obj:`grace` seconds."""
    running = [p for p in procs if p.poll() is None]
    for p in running:
        p.terminate()
    deadline = time.monotonic() + grace
    for p in running:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

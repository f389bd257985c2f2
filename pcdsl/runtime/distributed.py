# ---------------------------------------------------------------------------------------------
# Training on several processes (GPUs, nodes) with torch.distributed: the trainer's one view of it.
#
# The run is the same run whatever the number of processes: the config's `batch` is the GLOBAL
# batch. Every process draws the same batch order (a function of seed and epoch) and takes its
# shard of each batch (`Ranks.shard`), so P processes with batch B/P each compute what one
# process computes with batch B:
#   - after every step one all-reduce (the DistributedDataParallel pattern, made explicit because
#     EP's gradient is not autograd's) sums each process's gradient weighted by its share of the
#     batch, together with the loss, the hits, the health flag and a stop request, so every
#     process sees the same mean gradient, the same numbers and takes the same decisions;
#   - evaluation is sharded the same way and its sums are reduced;
#   - rank 0 alone touches the run folder (lock, checks, checkpoints, metrics) and logs; what it
#     decides before training (an error, or the state to resume from) reaches every process
#     (`Ranks.from_leader`), and the weights and momentum are broadcast from it.
# Processes are started and watched by torch's own launcher (torchrun, or `pcdsl train --nproc`),
# which also ends the others when one fails.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import datetime
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, TypeVar

import torch
import torch.distributed as dist

from pcdsl.data.split import shard_rows
from pcdsl.runtime.step import StepResult

T = TypeVar("T")

# How long a collective waits for a process that stopped answering before the run fails (a
# checkpoint save on rank 0 keeps the others waiting at the next step: minutes for VGG10 on a
# slow disk).
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=30)


class CollectiveFailed(Exception):
    """A collective operation failed: another process of the run stopped (its own message says
    why) or the network between them failed."""


@contextmanager
def _collective() -> Iterator[None]:
    try:
        yield
    except RuntimeError as error:     # gloo, NCCL and the store raise RuntimeError (DistBackendError)
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CollectiveFailed(f"lost contact with the other processes of the run (one stopped, and its own "
                               f"message says why, or the network failed): {first}") from None


@dataclass
class StepOutcome:
    """What every process knows after a step (Ranks.reduce_step)."""
    result: StepResult
    examples: int              # in the whole batch
    stop: str | None           # the signal some process received, if any
    save: bool                 # a checkpoint is due (rank 0's decision)


class LaunchError(Exception):
    """This process cannot take its place in the run (the message says why)."""


class LeaderFailed(Exception):
    """Rank 0 stopped the run before training (its message is rank 0's, which it has reported):
    the other processes leave with it, quietly."""


@dataclass(frozen=True)
class Ranks:
    """This process's place among the run's processes (rank 0 of 1 when not distributed)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    joined_here: bool = False       # this module started the process group (and ends it)

    @property
    def active(self) -> bool:
        return self.size > 1

    @property
    def leader(self) -> bool:
        return self.rank == 0

    @property
    def shard(self) -> tuple[int, int] | None:
        """(rank, size) for Split.batches, None when alone."""
        return (self.rank, self.size) if self.active else None

    def local_size(self, global_size: int) -> int:
        """This process's share of a batch of `global_size` examples."""
        return len(range(global_size)[shard_rows(self.shard)]) if self.active else global_size

    # ---- collectives --------------------------------------------------------------------

    def from_leader(self, work: Callable[[], T]) -> T:
        """`work()` done by rank 0 and its result given to every process; an exception on rank
        0 is raised there and ends the others with LeaderFailed."""
        if not self.active:
            return work()
        outcome: list = [None]
        failure = None
        if self.leader:
            try:
                outcome = [("done", work())]
            except BaseException as error:       # the others must not wait for an answer
                failure = error
                outcome = [("failed", f"{type(error).__name__}: {error}")]
        with _collective():
            dist.broadcast_object_list(outcome, src=0)
        if failure is not None:
            raise failure
        kind, value = outcome[0]
        if kind == "failed":
            raise LeaderFailed(value)
        return value

    def agree(self, facts: dict) -> list[str]:
        """The facts (name -> value) in which some process differs from rank 0, each with the
        ranks that differ: every process must run the same model, config and data."""
        if not self.active:
            return []
        gathered: list = [None] * self.size
        with _collective():
            dist.all_gather_object(gathered, facts)
        return [f"{name}: rank 0 has {value!r}, rank(s) {', '.join(str(r) for r, other in enumerate(gathered) if other[name] != value)} "
                "differ" for name, value in facts.items() if any(other[name] != value for other in gathered)]

    def broadcast_(self, tensors: list[torch.Tensor]) -> None:
        """Every process's `tensors` set, in place, to rank 0's. Through a contiguous copy: a
        broadcast moves bytes, and two processes may hold one tensor in different layouts
        (a momentum buffer saved channels_last, or in the strides of its first gradient)."""
        if self.active:
            for tensor in tensors:
                staged = tensor.detach().contiguous()
                with _collective():
                    dist.broadcast(staged, src=0)
                if staged.data_ptr() != tensor.data_ptr():
                    tensor.detach().copy_(staged)

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """`tensor` summed over the processes, in place."""
        if self.active:
            with _collective():
                dist.all_reduce(tensor)
        return tensor

    def agreed_stop(self, signal: str | None, device: torch.device) -> str | None:
        """The stop request of any process: the signal it received (SIGTERM over SIGINT)."""
        if not self.active:
            return signal
        return _stop_signal(*self.sum_(torch.tensor(_stop_flags(signal), device=device)).tolist())

    def reduce_step(self, parameters: list[torch.Tensor], result: StepResult, examples: int,
                    stop: str | None, save: bool) -> "StepOutcome":
        """After a step on this process's `examples` (its shard of a batch), what every process
        agrees on: each parameter's .grad holds the gradient of the whole batch's mean cost and
        the result is the whole batch's (loss, hits, health), with its number of examples,
        whether some process was asked to stop (and by which signal) and whether rank 0 asked
        for a checkpoint (`save`: its clock decides). One all-reduce, one host read."""
        if not self.active:
            return StepOutcome(result, examples, stop, save)
        grads = [p.grad for p in parameters]
        reference = grads[0]
        numbers = [result.loss * examples, result.correct, ~result.ok, *map(torch.tensor, _stop_flags(stop)),
                   torch.tensor(save and self.leader), torch.tensor(examples)]
        tail = torch.stack([number.to(device=reference.device, dtype=reference.dtype) for number in numbers])
        # each process's mean times its count: the sum over processes, over the total count, is
        # the mean over the whole batch, however unequal the shards
        flat = torch.cat([g.reshape(-1) * examples for g in grads] + [tail])
        with _collective():
            dist.all_reduce(flat)
        failed, terms, stops, saves, total = flat[-5:].tolist()
        summed, tail = flat[:-len(numbers)].div_(max(total, 1.0)), flat[-len(numbers):]
        offset = 0
        for parameter, grad in zip(parameters, grads):
            # a new tensor in the gradient's layout (channels_last stays): the step's own may be
            # the output of a CUDA graph, which its next replay overwrites
            parameter.grad = torch.empty_like(grad).copy_(summed[offset:offset + grad.numel()].view(grad.shape))
            offset += grad.numel()
        reduced = StepResult(tail[0] / max(total, 1.0), result.logits,
                             torch.tensor(not failed, device=reference.device), tail[1].round().long())
        return StepOutcome(reduced, int(total), _stop_signal(terms, stops), bool(saves))

    def end(self) -> None:
        """Leave the process group if this module joined it."""
        global _LEFT
        if self.joined_here and dist.is_initialized():
            dist.barrier()          # no process leaves while another still talks to it
            dist.destroy_process_group()
            _LEFT = True


_LEFT = False


def left_process_group() -> bool:
    """Whether this process joined a process group and has left it (Ranks.end): the command
    line then ends the process without the interpreter's teardown (cli.main)."""
    return _LEFT


def _stop_flags(signal: str | None) -> list[float]:
    """A stop request as numbers that add up over processes (_stop_signal reads the sums)."""
    return [float(signal == "SIGTERM"), float(signal is not None)]


def _stop_signal(terms: float, stops: float) -> str | None:
    return ("SIGTERM" if terms else "SIGINT") if stops else None


def launched() -> bool:
    """Whether this process was started as one of several by torchrun (or `--nproc`)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 or dist.is_initialized()


def join(device: torch.device | None) -> tuple[Ranks, torch.device | None]:
    """This process's Ranks, joining the process group torchrun describes in the environment
    (MASTER_ADDR, RANK, WORLD_SIZE, LOCAL_RANK) when it has not been joined yet; and the device
    it trains on: on CUDA, its own GPU, cuda:LOCAL_RANK (cuda:0 where a launcher leaves each
    process one visible GPU), whatever index `device` names. NCCL for CUDA, gloo for the CPU."""
    if not launched():
        return Ranks(), device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = (device.type == "cuda") if device is not None else torch.cuda.is_available()
    if cuda:
        visible = torch.cuda.device_count()
        # one GPU per process: the machine's LOCAL_RANK-th, or the one a launcher left visible
        if visible == 1:
            index = 0
        elif local_rank < visible:
            index = local_rank
        else:
            raise LaunchError(f"process {local_rank} of this machine has no GPU of its own: the machine has "
                              f"{visible}; start at most that many processes per machine "
                              "(or hide the GPUs, CUDA_VISIBLE_DEVICES=, to train on the CPU)")
        device = torch.device("cuda", index)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    joined_here = not dist.is_initialized()
    if joined_here:
        with _collective():
            dist.init_process_group("nccl" if cuda else "gloo", timeout=COLLECTIVE_TIMEOUT)
    return Ranks(dist.get_rank(), dist.get_world_size(), local_rank, joined_here), device

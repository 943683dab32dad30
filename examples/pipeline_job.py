"""A real pipeline + data-parallel training job, profiled per rank: graphwia's Kineto fixtures.

pp 2 x dp 2 = 4 processes on CPU (gloo). Each stage holds half of a tiny MLP; every step runs
4 microbatches in a 1F1B schedule with blocking ``dist.send``/``dist.recv`` between the two
stages of a DP rank, all-reduces the stage's gradients over its DP group, clips the gradient norm
(one all-reduce over all ranks) and takes an SGD step. Ranks follow Megatron's default order with
tp = 1: ``rank = stage * DP + dp_rank``.

A CPU job has no accelerator kernels to wait for, so every compute op also sleeps
``--compute-ms`` (its stand-in for kernel time); the worker ``--slow`` sleeps ``--slow-ms`` more
in each forward and backward compute: the straggler the analysis should find.

Each rank writes ``OUT/rank{R}.json.gz``, the Chrome trace of torch.profiler (Kineto) for steps
2 .. steps-1 (the profiler's schedule waits one step and warms up one). With ``--annotate`` (the
default) every op is a ``graphwia.record.record_op`` range; with ``--no-annotate`` there are no
annotations and the profiler records Python stacks instead (``with_stack=True``).

Run (needs ``pip install graphwia[record]``; ``make fixtures`` does this in a venv of its own):
    python examples/pipeline_job.py --out tests/data/kineto/annotated
    python examples/pipeline_job.py --out tests/data/kineto/stack --no-annotate --steps 4
"""

from __future__ import annotations

import argparse
import socket
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.profiler import ProfilerActivity, profile, schedule

from graphwia.record import record_op

PP, DP = 2, 2
MICROBATCHES = 4
MB_ROWS, IN_FEATURES, HIDDEN = 8, 16, 32


def one_f_one_b(stage: int, microbatches: int) -> list[tuple[str, int]]:
    """The ops of one step of ``stage`` (of two) in execution order, as ``(optype, mb)``.

    Stage 0 runs one warm-up forward, then pairs forward j with backward j-1; stage 1 runs
    forward j then backward j. Both stages issue their sends and receives in the same order
    (activation j, then gradient j), so blocking point-to-point calls cannot deadlock.
    """
    if stage == 0:
        ops = [("forward-compute", 0), ("forward-send", 0)]
        for j in range(1, microbatches):
            ops += [("forward-compute", j), ("backward-recv", j - 1), ("forward-send", j), ("backward-compute", j - 1)]
        return ops + [("backward-recv", microbatches - 1), ("backward-compute", microbatches - 1)]
    ops = []
    for j in range(microbatches):
        ops += [("forward-recv", j), ("forward-compute", j), ("backward-compute", j), ("backward-send", j)]
    return ops


class Stage:
    """One worker: its half of the model, its peers and groups, and one method per optype."""

    def __init__(
        self, rank: int, args: argparse.Namespace, dp_group: dist.ProcessGroup, pp_group: dist.ProcessGroup
    ) -> None:
        self.stage, dp_rank = divmod(rank, DP)
        self.dp_group, self.pp_group = dp_group, pp_group
        self.prev_rank, self.next_rank = rank - DP, rank + DP
        self.compute_s = (args.compute_ms + (args.slow_ms if rank == args.slow else 0)) / 1000
        torch.manual_seed(args.seed + self.stage)  # the same initial weights on every DP rank
        if self.stage == 0:
            self.model = nn.Sequential(nn.Linear(IN_FEATURES, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU())
        else:
            self.model = nn.Sequential(nn.Linear(HIDDEN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 1))
        self.sgd = torch.optim.SGD(self.model.parameters(), lr=0.01)
        self.data = torch.Generator().manual_seed(args.seed * 1000 + dp_rank)  # shared by the DP rank's stages
        self.inputs: dict[int, torch.Tensor] = {}
        self.outputs: dict[int, torch.Tensor] = {}
        self.grads: dict[int, torch.Tensor] = {}

    def draw_batch(self) -> None:
        """This step's microbatches: inputs on stage 0, targets on stage 1 (both draw the same x)."""
        x = torch.randn(MICROBATCHES, MB_ROWS, IN_FEATURES, generator=self.data)
        self.batch = x if self.stage == 0 else x.sum(dim=2, keepdim=True).sin()

    def forward_recv(self, mb: int) -> None:
        x = torch.empty(MB_ROWS, HIDDEN)
        dist.recv(x, src=self.prev_rank, group=self.pp_group)
        self.inputs[mb] = x.requires_grad_()

    def forward_compute(self, mb: int) -> None:
        y = self.model(self.batch[mb] if self.stage == 0 else self.inputs[mb])
        if self.stage == PP - 1:
            y = nn.functional.mse_loss(y, self.batch[mb]) / MICROBATCHES
        self.outputs[mb] = y
        time.sleep(self.compute_s)  # the accelerator's kernel time, and the straggler's slowdown

    def forward_send(self, mb: int) -> None:
        dist.send(self.outputs[mb].detach(), dst=self.next_rank, group=self.pp_group)

    def backward_recv(self, mb: int) -> None:
        g = torch.empty(MB_ROWS, HIDDEN)
        dist.recv(g, src=self.next_rank, group=self.pp_group)
        self.grads[mb] = g

    def backward_compute(self, mb: int) -> None:
        self.outputs.pop(mb).backward(self.grads.pop(mb, None))  # the last stage's output is its loss
        time.sleep(self.compute_s)

    def backward_send(self, mb: int) -> None:
        dist.send(self.inputs.pop(mb).grad, dst=self.prev_rank, group=self.pp_group)

    def grads_reduce_scatter(self) -> None:
        """Average the stage's gradients over its DP group: one all-reduce of one flat buffer."""
        grads = [p.grad for p in self.model.parameters()]
        flat = torch.cat([g.flatten() for g in grads])
        dist.all_reduce(flat, group=self.dp_group)
        flat /= DP
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def optimizer_clip_main_grad(self, max_norm: float = 1.0) -> None:
        """Clip to the global gradient norm: an all-reduce over all ranks (DP replicas counted once)."""
        grads = [p.grad for p in self.model.parameters()]
        norm_sq = torch.stack([g.pow(2).sum() for g in grads]).sum()
        dist.all_reduce(norm_sq)
        scale = max_norm / (norm_sq / DP).sqrt().clamp(min=max_norm)
        for g in grads:
            g.mul_(scale)

    def optimizer(self) -> None:
        self.sgd.step()
        self.sgd.zero_grad()


def train_step(worker: Stage, annotate: bool) -> None:
    """One step: the 1F1B microbatches, then the DP all-reduce, the clip and the optimizer.

    With ``annotate`` every op runs inside its ``record_op`` range; without, nothing is added.
    """
    tail = [("grads-reduce-scatter", None), ("optimizer-clip-main-grad", None), ("optimizer", None)]
    worker.draw_batch()
    for optype, mb in one_f_one_b(worker.stage, MICROBATCHES) + tail:
        run = getattr(worker, optype.replace("-", "_"))
        args = () if mb is None else (mb,)
        if annotate:
            with record_op(optype, mb=mb):
                run(*args)
        else:
            run(*args)


def run_rank(rank: int, args: argparse.Namespace, port: int) -> None:
    """Process ``rank``: join the job, build the groups, train ``args.steps`` steps under the profiler."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=PP * DP)
    # new_group is collective: every rank creates every group, in the same order.
    dp_groups = [dist.new_group([s * DP + d for d in range(DP)], group_desc="DATA_PARALLEL_GROUP") for s in range(PP)]
    pp_groups = [
        dist.new_group([s * DP + d for s in range(PP)], group_desc="PIPELINE_MODEL_PARALLEL_GROUP") for d in range(DP)
    ]
    stage, dp_rank = divmod(rank, DP)
    worker = Stage(rank, args, dp_groups[stage], pp_groups[dp_rank])
    trace = Path(args.out) / f"rank{rank}.json.gz"
    dist.barrier()
    with profile(
        activities=[ProfilerActivity.CPU],
        with_stack=not args.annotate,
        schedule=schedule(wait=1, warmup=1, active=args.steps - 2, repeat=1),
        on_trace_ready=lambda prof: prof.export_chrome_trace(str(trace)),
    ) as prof:
        for _ in range(args.steps):
            train_step(worker, args.annotate)
            prof.step()
    dist.destroy_process_group()


def free_port() -> int:
    """A loopback TCP port that is free now, for the processes' rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="directory for rank{R}.json.gz")
    parser.add_argument(
        "--annotate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="record_op ranges (default), or none and Python stacks instead",
    )
    parser.add_argument("--slow", type=int, default=3, help="global rank of the slowed worker (default 3)")
    parser.add_argument("--slow-ms", type=float, default=40.0, help="extra sleep per compute op of --slow")
    parser.add_argument("--compute-ms", type=float, default=5.0, help="sleep per compute op of every worker")
    parser.add_argument("--steps", type=int, default=6, help="steps run; the first two are not recorded")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.steps < 3:
        parser.error("--steps must be at least 3 (one waited, one warm-up, one or more recorded)")
    if not 0 <= args.slow < PP * DP:
        parser.error(f"--slow must be a rank in 0..{PP * DP - 1}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    mp.spawn(run_rank, args=(args, free_port()), nprocs=PP * DP)


if __name__ == "__main__":
    main()

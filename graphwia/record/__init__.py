"""Annotate a PyTorch training loop so that its profiler traces name graphwia's ops.

Install with ``pip install graphwia[record]`` (adds torch). Importing this module does not import
torch; :func:`record_op` imports it when called.

The convention
--------------
Every op of SPEC §1 is one ``torch.profiler.record_function`` range on the worker's training
thread, named by its optype, optionally followed by space-separated fields ``mb=<n>`` (the
microbatch, for compute and p2p ops) and ``chunk=<c>`` (the model chunk, with virtual pipeline
stages)::

    forward-compute mb=3
    backward-recv mb=2 chunk=1
    grads-reduce-scatter
    optimizer

A data-parallel gradient all-reduce that is not split into reduce-scatter + all-gather is
recorded as ``grads-reduce-scatter``. :func:`op_name` builds such a name, :func:`parse_op_name`
reads one back, :func:`record_op` opens the range.

Recipe: a 1F1B pipeline + data-parallel loop
--------------------------------------------
One profiler per rank; ``torch.distributed`` (and every ``new_group``) must be initialised before
the profiler starts recording, so that the trace's ``distributedInfo`` holds the rank, the world
size and the process groups with their ranks::

    from torch.profiler import ProfilerActivity, profile, schedule
    from graphwia.record import record_op

    dist.init_process_group("gloo")             # or nccl; then the model's new_group calls
    trace = f"{out_dir}/rank{dist.get_rank()}.json.gz"
    with profile(activities=[ProfilerActivity.CPU],  # add CUDA on GPUs
                 schedule=schedule(wait=1, warmup=1, active=4, repeat=1),
                 on_trace_ready=lambda p: p.export_chrome_trace(trace)) as prof:
        for batch in batches:                    # one training step per iteration
            for kind, mb in one_f_one_b_order:   # warm-up forwards, 1F1B, cool-down backwards
                if kind == "forward":
                    with record_op("forward-recv", mb=mb):      # not on the first stage
                        x = recv_activation()
                    with record_op("forward-compute", mb=mb):
                        y = stage_forward(x)
                    with record_op("forward-send", mb=mb):      # not on the last stage
                        send_activation(y)
                else:
                    with record_op("backward-recv", mb=mb):     # not on the last stage
                        g = recv_gradient()
                    with record_op("backward-compute", mb=mb):
                        y.backward(g)
                    with record_op("backward-send", mb=mb):     # not on the first stage
                        send_gradient(x.grad)
            with record_op("grads-reduce-scatter"):             # DP gradient all-reduce
                all_reduce_grads(dp_group)
            with record_op("optimizer-clip-main-grad"):         # optional tail ops, SPEC §2.1.8
                clip_grad_norm()
            with record_op("optimizer"):
                optimizer.step()
            prof.step()                          # closes the range ProfilerStep#N, N = 0, 1, ...

The step number of an op is the ``N`` of the ``ProfilerStep#N`` range around it; steps skipped by
the schedule's ``wait`` and ``warmup`` count too. Each rank writes its own file (``.json.gz``
is gzipped by torch). Ranges must enclose the whole op, waiting included: a blocking
``send``/``recv``, or the ``wait()`` of an asynchronous one, goes inside its range. With virtual
pipeline stages pass ``chunk=`` to every compute and p2p op, and to the per-chunk
``params-all-gather`` / ``grads-reduce-scatter`` ops.

Megatron-LM: the same ranges go around the calls of its pipeline schedule
(``forward_step``/``backward_step`` for compute, the ``send_forward``/``recv_forward``/
``send_backward``/``recv_backward`` helpers of ``p2p_communication`` for p2p; the combined
helpers such as ``send_forward_recv_backward`` launch both transfers together, so each of their
two ranges encloses the whole call), around the gradient reduction launched by the
DDP wrapper's ``finish_grad_sync`` (``grads-reduce-scatter``) and the distributed optimizer's
parameter all-gather (``params-all-gather``), and around the optimizer's ``clip_grad_norm`` and
``step``; the profiler is stepped once per ``train_step``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ..optypes import ALL_OPTYPES, COMPUTE_STREAM, P2P_OPTYPES

#: Optypes that name a microbatch: the forward/backward compute and the four p2p ops.
MICROBATCH_OPTYPES = COMPUTE_STREAM + P2P_OPTYPES

__all__ = ["MICROBATCH_OPTYPES", "op_name", "parse_op_name", "record_op"]


def op_name(optype: str, *, mb: int | None = None, chunk: int | None = None) -> str:
    """The range name of an op: ``optype`` then ``mb=<mb>`` and ``chunk=<chunk>`` when given.

    ``optype`` must be one of SPEC §1; ``mb`` and ``chunk`` are non-negative integers, and ``mb``
    is allowed only for :data:`MICROBATCH_OPTYPES`. Raises ``ValueError`` otherwise.

    >>> op_name("backward-recv", mb=2, chunk=1)
    'backward-recv mb=2 chunk=1'
    """
    if optype not in ALL_OPTYPES:
        raise ValueError(f"unknown optype {optype!r}; expected one of: {', '.join(ALL_OPTYPES)}")
    if mb is not None and optype not in MICROBATCH_OPTYPES:
        raise ValueError(f"{optype} does not belong to a microbatch, so it takes no mb (got mb={mb!r})")
    fields = [optype]
    for key, value in (("mb", mb), ("chunk", chunk)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{key} must be a non-negative integer, got {value!r}")
        fields.append(f"{key}={value}")
    return " ".join(fields)


def parse_op_name(name: str) -> tuple[str, int | None, int | None] | None:
    """``(optype, mb, chunk)`` of a range named by :func:`op_name`, or ``None`` for any other name.

    Exactly the names :func:`op_name` can return are recognised, so that a user range which only
    starts with an optype (``"optimizer state offload"``) is not taken for an op.

    >>> parse_op_name("forward-compute mb=3")
    ('forward-compute', 3, None)
    """
    optype, *fields = name.split(" ")
    values: dict[str, int] = {}
    for field in fields:
        key, _, value = field.partition("=")
        if key not in ("mb", "chunk") or key in values or not (value.isascii() and value.isdigit()):
            return None
        values[key] = int(value)
    mb, chunk = values.get("mb"), values.get("chunk")
    try:
        canonical = op_name(optype, mb=mb, chunk=chunk)
    except ValueError:
        return None
    return (optype, mb, chunk) if canonical == name else None


@contextlib.contextmanager
def record_op(optype: str, *, mb: int | None = None, chunk: int | None = None) -> Iterator[None]:
    """Record the enclosed code as one op: ``torch.profiler.record_function(op_name(...))``.

    The name is validated (see :func:`op_name`) before torch is imported; without torch,
    raises ``ModuleNotFoundError`` saying what to install. Outside an active profiler the range
    costs next to nothing and records nothing.
    """
    name = op_name(optype, mb=mb, chunk=chunk)
    try:
        from torch.profiler import record_function
    except ModuleNotFoundError as error:
        if error.name != "torch":
            raise
        raise ModuleNotFoundError("graphwia.record needs torch: pip install 'graphwia[record]'") from error

    with record_function(name):
        yield

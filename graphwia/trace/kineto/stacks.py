"""Ops of an unannotated trace, inferred from its Python stacks (``with_stack=True``): best effort.

Work on the thread that holds the ``ProfilerStep#N`` ranges, inside those ranges. *Seeds* are
the Python frames (``python_function`` events) that mark an op:

* forward compute: the outermost ``nn.Module: …`` calls (not inside a backward);
* backward compute: the outermost ``torch/_tensor.py(…): backward`` /
  ``torch/autograd/__init__.py(…): backward`` calls;
* p2p: ``torch/distributed/distributed_c10d.py(…): send | recv | isend | irecv``; a send is a
  forward-send when the compute before it was a forward (else backward-send), a recv a
  forward-recv when the compute after it is a forward (else backward-recv);
* collectives: ``distributed_c10d.py(…): all_gather* | reduce_scatter* | all_reduce``: an
  all-gather is ``params-all-gather``, a reduce-scatter ``grads-reduce-scatter``; an all-reduce
  is named by its ``record_param_comms`` process group when the trace has one
  (``DATA_PARALLEL_GROUP`` …), else by the frames around it (``clip`` → optimizer-clip-main-grad,
  ``embedding``, ``layernorm``), else it is the DP gradient all-reduce (``grads-reduce-scatter``)
  — two such unnamed all-reduces in one step cannot be told apart: an error says what to annotate;
* optimizer: the ``Optimizer.step#…`` range ``torch.optim`` writes.

An op then grows from its seed to the largest enclosing frame that holds no other seed (the
user's ``forward_step``, its loss and its waits included), and its span follows the rules of
:mod:`~graphwia.trace.kineto.spans` (the kernels it launched on a GPU trace, else its CPU range).
Microbatches: forwards by order in the step; a backward takes the microbatch of the forward
whose autograd ``Sequence number`` values its backward nodes carry (by order when they carry
none); a p2p op the microbatch of its neighbouring compute.
"""

from __future__ import annotations

import re

import numpy as np

from graphwia import optypes as T
from graphwia.errors import TraceError
from graphwia.trace.kineto.events import CAT, Events
from graphwia.trace.kineto.spans import FoundOps, op_spans, step_of

__all__ = ["infer_from_stacks"]

_FORWARD = re.compile(r"nn\.Module: .*")
_BACKWARD = re.compile(r"torch/(?:_tensor\.py|autograd/__init__\.py)\(\d+\): backward")
_P2P = re.compile(r"torch/distributed/distributed_c10d\.py\(\d+\): (i?send|i?recv)")
_COLLECTIVE = re.compile(
    r"torch/distributed/distributed_c10d\.py\(\d+\): "
    r"(all_reduce|_?all_gather(?:_into_tensor|_base)?|_?reduce_scatter(?:_tensor|_base)?)"
)
_OPTIMIZER = re.compile(r"Optimizer\.step#.*")
#: Words in enclosing frames that name an all-reduce, and process-group descriptions that do.
_FRAME_ROLES = (
    (re.compile(r"clip", re.I), T.CLIP),
    (re.compile(r"embedding", re.I), T.EMBEDDING),
    (re.compile(r"layer_?norm", re.I), T.LAYERNORM),
)
_GROUP_ROLES = {
    "DATA_PARALLEL_GROUP": T.GRADS_REDUCE_SCATTER,
    "DATA_PARALLEL_GROUP_WITH_CP": T.GRADS_REDUCE_SCATTER,
    "EMBEDDING_GROUP": T.EMBEDDING,
    "TENSOR_MODEL_PARALLEL_GROUP": T.LAYERNORM,
    "MODEL_PARALLEL_GROUP": T.CLIP,
    "default_pg": T.CLIP,
}
_MAX_DEPTH = 256
_KINDS = ("forward", "backward", "send", "recv", "collective", "optimizer")


def _word(pattern: re.Pattern[str], name: str) -> str:
    """Group 1 of ``pattern`` in ``name``, an event name it was selected by."""
    found = pattern.fullmatch(name)
    assert found is not None  # the event was picked by this pattern
    return found.group(1)


def infer_from_stacks(events: Events, steps) -> FoundOps:
    """The ops of an unannotated trace (see module docstring); a TraceError when roles cannot be told."""

    frames = _Frames(events, steps)
    seeds, kinds, roles = frames.seeds()
    if not len(seeds):
        raise TraceError(
            f"{events.path}: annotation missing: no op annotations, and the Python stacks show no "
            f"module forward, backward or torch.distributed call inside a ProfilerStep"
        )
    rows = frames.grow(seeds)
    order = np.argsort(events.start[rows], kind="stable")
    rows, kinds, roles, seeds = rows[order], kinds[order], roles[order], seeds[order]
    step = step_of(steps, events.start[seeds])
    optype, mb = _roles_and_microbatches(events, frames, rows, kinds, roles, step)
    start, end, source = op_spans(events, rows, optype)
    return FoundOps(
        optype=optype,
        mb=mb,
        chunk=np.full(len(rows), -1, dtype=np.int32),
        start=start,
        end=end,
        cpu_start=events.start[seeds],
        source=source,
        method="python stacks (best effort)",
    )


class _Frames:
    """Python frames and user_annotation ranges of the step thread, inside the steps."""

    def __init__(self, events: Events, steps):
        number, s_start, s_end = steps
        step_rows = np.flatnonzero(np.isin(events.start, s_start) & (events.cat == CAT["user_annotation"]))
        self.thread = int(np.bincount(events.thread[step_rows]).argmax()) if len(step_rows) else -1
        on_thread = events.thread == self.thread
        in_step = step_of(steps, events.start) >= 0
        self.events = events
        self.python = np.flatnonzero(on_thread & in_step & (events.cat == CAT["python_function"]))
        self.python = self.python[np.argsort(events.start[self.python], kind="stable")]
        self.annotations = np.flatnonzero(on_thread & in_step & (events.cat == CAT["user_annotation"]))
        ids = events.python_id[self.python]
        by_id = {int(i): k for k, i in enumerate(ids.tolist()) if i >= 0}
        self.position = np.full(len(events), -1, dtype=np.int64)  # event row → index into self.python
        self.position[self.python] = np.arange(len(self.python))
        self.parent = np.array(
            [by_id.get(int(p), -1) for p in events.python_parent[self.python].tolist()], dtype=np.int64
        )

    def _matching(self, pattern: re.Pattern, rows: np.ndarray) -> np.ndarray:
        names = self.events.names
        codes = np.unique(self.events.name[rows])
        hit = [c for c in codes.tolist() if pattern.fullmatch(names[c])]
        return rows[np.isin(self.events.name[rows], hit)]

    def _outermost(self, rows: np.ndarray, within: np.ndarray | None = None) -> np.ndarray:
        """Those of ``rows`` not inside another of ``rows`` (nor inside any of ``within``)."""
        outer = rows if within is None else np.concatenate([rows, within])
        start, end = self.events.start, self.events.end
        o_start, o_end = start[outer], end[outer]
        order = np.argsort(o_start, kind="stable")
        reach = np.maximum.accumulate(o_end[order])  # latest end among ranges starting no later
        at = np.searchsorted(o_start[order], start[rows], side="left") - 1  # ranges starting strictly before
        inside = (at >= 0) & (reach[np.maximum(at, 0)] >= end[rows])
        return rows[~inside]

    def seeds(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Seed events, their kind (index into _KINDS) and role hint (an optype name or "")."""
        backward = self._outermost(self._matching(_BACKWARD, self.python))
        forward = self._outermost(self._matching(_FORWARD, self.python), within=backward)
        p2p = self._outermost(self._matching(_P2P, self.python))
        collective = self._outermost(self._matching(_COLLECTIVE, self.python))
        optimizer = self._matching(_OPTIMIZER, self.annotations)
        names = self.events.names
        send = np.array(["send" in _word(_P2P, names[c]) for c in self.events.name[p2p]], dtype=bool)
        groups = [forward, backward, p2p[send], p2p[~send], collective, optimizer]
        seeds = np.concatenate(groups)
        kinds = np.repeat(np.arange(len(_KINDS)), [len(g) for g in groups])
        roles = np.array([""] * len(seeds), dtype=object)
        at = len(seeds) - len(optimizer) - len(collective)
        roles[at : at + len(collective)] = [self._collective_role(row) for row in collective]
        return seeds, kinds, roles

    def _collective_role(self, row: int) -> str:
        events = self.events
        name = _word(_COLLECTIVE, events.names[events.name[row]])
        if "gather" in name:
            return T.PARAMS_ALL_GATHER
        if "scatter" in name:
            return T.GRADS_REDUCE_SCATTER
        for index, args in events.comms.items():  # an NCCL trace names the group
            inside = events.start[row] <= events.start[index] <= events.end[row]
            if inside and events.thread[index] == events.thread[row]:
                role = _GROUP_ROLES.get(str(args.get("group_desc")))
                if role:
                    return role
        k = int(self.position[row])  # its frame, then its ancestors
        while k >= 0:
            text = events.names[events.name[self.python[k]]]
            for pattern, role in _FRAME_ROLES:
                if pattern.search(text):
                    return role
            k = int(self.parent[k])
        return ""

    def grow(self, seeds: np.ndarray) -> np.ndarray:
        """Each seed's largest enclosing Python frame holding no other seed (the seed when none)."""
        start, end = self.events.start, self.events.end
        f_start, f_end = start[self.python], end[self.python]
        seed_start = np.sort(start[seeds])
        holds = np.searchsorted(seed_start, f_end, side="right") - np.searchsorted(seed_start, f_start, side="left")
        # the seed's own frame; for an annotation, the innermost frame around it
        frame = np.where(
            self.position[seeds] >= 0, self.position[seeds], np.searchsorted(f_start, start[seeds], side="right") - 1
        )
        for _ in range(_MAX_DEPTH):
            outside = (frame >= 0) & (f_end[np.maximum(frame, 0)] < end[seeds])
            if not outside.any():
                break
            frame = np.where(outside, self.parent[np.maximum(frame, 0)], frame)
        for _ in range(_MAX_DEPTH):  # climb while the parent holds this seed only
            parent = np.where(frame >= 0, self.parent[np.maximum(frame, 0)], -1)
            up = (parent >= 0) & (holds[np.maximum(parent, 0)] == 1)
            if not up.any():
                break
            frame = np.where(up, parent, frame)
        own = (frame >= 0) & (holds[np.maximum(frame, 0)] == 1)
        return np.where(own, self.python[np.maximum(frame, 0)], seeds)


def _roles_and_microbatches(events: Events, frames: _Frames, rows, kinds, roles, step) -> tuple[np.ndarray, np.ndarray]:
    """Optype and microbatch of every op (ops in start order)."""
    n = len(rows)
    optype = np.full(n, -1, dtype=np.int8)
    mb = np.full(n, -1, dtype=np.int32)
    code = T.OPTYPE_CODE
    forward, backward = kinds == 0, kinds == 1
    optype[forward], optype[backward] = code[T.FORWARD_COMPUTE], code[T.BACKWARD_COMPUTE]
    optype[kinds == 5] = code[T.OPTIMIZER]
    for s in np.unique(step[step >= 0]):
        mine = np.flatnonzero(step == s)
        fwd = mine[forward[mine]]
        mb[fwd] = np.arange(len(fwd))
        bwd = mine[backward[mine]]
        mb[bwd] = _backward_microbatches(events, rows, fwd, bwd, mb)
        compute = mine[forward[mine] | backward[mine]]
        for i in mine[(kinds[mine] == 2) | (kinds[mine] == 3)]:
            is_send = kinds[i] == 2
            neighbour = compute[compute < i][-1:] if is_send else compute[compute > i][:1]
            if not len(neighbour):
                raise TraceError(
                    f"{events.path}: annotation missing: a {'send' if is_send else 'recv'} in step {s} "
                    f"has no compute {'before' if is_send else 'after'} it to tell its direction; "
                    f"annotate p2p ops (forward-send, backward-recv, ...)"
                )
            direction = "forward" if forward[neighbour[0]] else "backward"
            optype[i] = code[f"{direction}-{'send' if is_send else 'recv'}"]
            mb[i] = mb[neighbour[0]]
        coll = mine[kinds[mine] == 4]
        unnamed = coll[roles[coll] == ""]
        if len(unnamed) > 1:
            raise TraceError(
                f"{events.path}: annotation missing: step {s} has {len(unnamed)} all_reduce calls that "
                f"no process group, frame name or annotation tells apart (DP gradients, clip, ...); "
                f"annotate them (grads-reduce-scatter, optimizer-clip-main-grad, see graphwia.record)"
            )
        for i in coll:
            optype[i] = code[roles[i] or T.GRADS_REDUCE_SCATTER]
    return optype, mb


def _backward_microbatches(events: Events, rows, fwd: np.ndarray, bwd: np.ndarray, mb: np.ndarray) -> np.ndarray:
    """Microbatch of each backward: the forward whose autograd sequence numbers its nodes carry."""
    seq = events.sequence
    carrying = np.flatnonzero((seq >= 0) & (events.cat == CAT["cpu_op"]))
    order = np.argsort(events.start[carrying], kind="stable")
    carrying = carrying[order]
    c_start = events.start[carrying]

    def sequences(row: int) -> np.ndarray:
        lo, hi = np.searchsorted(c_start, [events.start[row], events.end[row]], side="left")
        return seq[carrying[lo:hi]]

    owner: dict[int, int] = {}
    for k in fwd.tolist():
        for value in sequences(rows[k]).tolist():
            owner.setdefault(value, int(mb[k]))
    out = np.arange(len(bwd), dtype=np.int32)  # by order when sequence numbers say nothing
    for j, k in enumerate(bwd.tolist()):
        hits = [owner[v] for v in sequences(rows[k]).tolist() if v in owner]
        if hits:
            out[j] = np.bincount(hits).argmax()
    return out

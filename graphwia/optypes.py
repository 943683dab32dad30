"""The vocabulary of op types (SPEC §1) and how the analyses group them."""

from __future__ import annotations

__all__ = [
    "ALL_OPTYPES",
    "ATTRIBUTION_GROUP",
    "BACKWARD_COMPUTE",
    "BACKWARD_RECV",
    "BACKWARD_SEND",
    "CLIP",
    "COMMUNICATION_OPTYPES",
    "COMPUTE_OPTYPES",
    "COMPUTE_STREAM",
    "DP_COLLECTIVES",
    "EMBEDDING",
    "FIRST_OP",
    "FORWARD_COMPUTE",
    "FORWARD_RECV",
    "FORWARD_SEND",
    "GC",
    "GRADS_REDUCE_SCATTER",
    "LAYERNORM",
    "OPTIMIZER",
    "OPTYPE_CODE",
    "P2P_OPTYPES",
    "PARAMS_ALL_GATHER",
    "SEPARATE_GRADS_ALL_REDUCE",
    "TAIL_COLLECTIVES",
    "TIMELINE_CATEGORY",
]

FORWARD_COMPUTE = "forward-compute"
BACKWARD_COMPUTE = "backward-compute"
GC = "gc"
OPTIMIZER = "optimizer"
FORWARD_SEND = "forward-send"
FORWARD_RECV = "forward-recv"
BACKWARD_SEND = "backward-send"
BACKWARD_RECV = "backward-recv"
PARAMS_ALL_GATHER = "params-all-gather"
GRADS_REDUCE_SCATTER = "grads-reduce-scatter"
SEPARATE_GRADS_ALL_REDUCE = "separate-grads-all-reduce"
LAYERNORM = "layernorm-grads-all-reduce"
EMBEDDING = "embedding-grads-all-reduce"
CLIP = "optimizer-clip-main-grad"

COMPUTE_STREAM = (FORWARD_COMPUTE, BACKWARD_COMPUTE)
#: Optypes whose typical value is the mean (SPEC §5.3); all others use the median.
COMPUTE_OPTYPES = (FORWARD_COMPUTE, BACKWARD_COMPUTE, GC, OPTIMIZER)
P2P_OPTYPES = (FORWARD_SEND, FORWARD_RECV, BACKWARD_SEND, BACKWARD_RECV)
DP_COLLECTIVES = (PARAMS_ALL_GATHER, GRADS_REDUCE_SCATTER, SEPARATE_GRADS_ALL_REDUCE)
TAIL_COLLECTIVES = (LAYERNORM, EMBEDDING, CLIP)
COMMUNICATION_OPTYPES = P2P_OPTYPES + DP_COLLECTIVES + TAIL_COLLECTIVES
ALL_OPTYPES = COMPUTE_OPTYPES + COMMUNICATION_OPTYPES
#: Code of each optype in op tables (the ``optype`` column holds these codes).
OPTYPE_CODE = {name: code for code, name in enumerate(ALL_OPTYPES)}

#: Category of each optype in timelines (SPEC §6).
TIMELINE_CATEGORY = {
    **{t: "compute" for t in COMPUTE_OPTYPES},
    **{t: "pp-comm" for t in P2P_OPTYPES},
    **{t: "dp-comm" for t in DP_COLLECTIVES + TAIL_COLLECTIVES},
}

#: Attribution by optype counts each direction's p2p ops as one group (SPEC §5.4).
ATTRIBUTION_GROUP = {
    **{t: t for t in ALL_OPTYPES},
    FORWARD_SEND: "forward-pp-comm",
    FORWARD_RECV: "forward-pp-comm",
    BACKWARD_SEND: "backward-pp-comm",
    BACKWARD_RECV: "backward-pp-comm",
}

#: Launch attribution puts each stage's first op of a step in a group of its own.
FIRST_OP = "first-op"

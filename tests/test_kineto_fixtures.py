"""The recorded fixtures (tests/data/kineto, see its README): a real pp 2 x dp 2 gloo job, rank 3 slowed.

Importing them must find every annotated range as an op, pair every send with its recv (no recv
ending before its send started), and the analysis must name rank 3 (dp_rank 1, stage 1): the
highest exact S_w and the top of the heatmap's worker grid. The unannotated set (``with_stack``)
goes through the best-effort path from Python stacks and must give the same ops and verdict.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from graphwia.analyses.standard import analyze
from graphwia.model.dag import build_dag
from graphwia.model.schedule import KIND_CODE
from graphwia.trace.kineto import import_kineto

DATA = Path(__file__).parent / "data" / "kineto"
pytestmark = pytest.mark.skipif(not (DATA / "annotated").is_dir(), reason=f"recorded fixtures not found in {DATA}")

SLOW_RANK, SLOW_WORKER = 3, (1, 1)  # dp_rank, stage
#: The ranges the recording annotates (tests/data/kineto/README.md), read here independently of the importer.
ANNOTATION = re.compile(
    r"((?:forward|backward)-(?:compute|send|recv))(?: mb=\d+)?|grads-reduce-scatter"
    r"|optimizer-clip-main-grad|optimizer"
)

_cache: dict = {}


def imported(kind: str):
    if kind not in _cache:
        _cache[kind] = import_kineto(DATA / kind, name=kind)
    return _cache[kind]


def analysis(kind: str):
    key = ("analysis", kind)
    if key not in _cache:
        _cache[key] = analyze(imported(kind)[0])
    return _cache[key]


def annotated_counts() -> Counter:
    """(rank, step, optype) → number of annotated ranges, from the raw JSON files."""
    counts: Counter = Counter()
    for path in sorted((DATA / "annotated").glob("*.json.gz")):
        document = json.loads(gzip.decompress(path.read_bytes()))
        rank = document["distributedInfo"]["rank"]
        events = [e for e in document["traceEvents"] if e.get("ph") == "X"]
        steps = [
            (int(e["name"].split("#")[1]), e["ts"], e["ts"] + e["dur"])
            for e in events
            if e["name"].startswith("ProfilerStep#")
        ]
        for e in events:
            match = ANNOTATION.fullmatch(e["name"]) if e.get("cat") == "user_annotation" else None
            if match:
                step = next(n for n, a, b in steps if a <= e["ts"] < b)
                counts[rank, step, match.group(1) or e["name"]] += 1
    return counts


def table_counts(kind: str) -> Counter:
    ops = imported(kind)[0].ops
    return Counter(
        {
            (int(r), int(s), str(o)): int(n)
            for (r, s, o), n in ops.groupby(["rank", "step", "optype"], observed=True).size().items()
        }
    )


def test_ops_equal_the_annotated_ranges():
    expected = annotated_counts()
    assert sum(expected.values()) == 304  # 4 ranks x 4 steps x 19 ops
    assert table_counts("annotated") == expected
    trace, report = imported("annotated")
    assert report.steps == [2, 3, 4, 5]  # ProfilerStep numbers kept
    assert report.sources == {"cpu": 304} and report.outside_steps == 0
    assert (trace.meta.dp_size, trace.meta.pp_size, trace.meta.world_size) == (2, 2, 4)


@pytest.mark.parametrize("kind", ["annotated", "stack"])
def test_every_p2p_pair_is_matched_and_causal(kind):
    trace, report = imported(kind)
    dag = build_dag(trace)
    for template in dag.schedule.stages:
        p2p = np.isin(template.ops.labels("optype"), ["forward-send", "forward-recv", "backward-send", "backward-recv"])
        assert (template.ops["noop"][p2p] == 0).all()  # every p2p op has a peer
    ops = dag.table
    names = ops.labels("optype")
    pairs = np.flatnonzero(dag.barrier_table["kind"] == KIND_CODE["p2p-pair"])
    sends = np.isin(names, ["forward-send", "backward-send"])
    assert len(pairs) == sends.sum()  # one pair per send
    member = ops["barrier"] - dag.n_ops
    for barrier in pairs:
        rows = np.flatnonzero(member == barrier)
        assert len(rows) == 2
        send, recv = (rows[0], rows[1]) if sends[rows[0]] else (rows[1], rows[0])
        assert ops["end"][recv] >= ops["start"][send]
    assert report.clocks.violations_before == 0


@pytest.mark.parametrize("kind", ["annotated", "stack"])
def test_analysis_names_the_slowed_worker(kind):
    result = analysis(kind)
    table = result.worker_table
    workers = list(zip(table["dp_rank"].tolist(), table["stage"].tolist()))
    assert workers[int(np.argmax(table["S_worker"]))] == SLOW_WORKER  # highest exact S_w
    assert workers[int(np.argmax(table["score"]))] == SLOW_WORKER  # top of the heatmap grid
    assert int(table["rank"][workers.index(SLOW_WORKER)]) == SLOW_RANK
    assert result.slowdown > 1.5


def test_stack_set_is_imported_by_the_best_effort_path():
    trace, report = imported("stack")
    assert report.method == {"python stacks (best effort)": 4}
    assert report.steps == [2, 3]
    annotated = table_counts("annotated")
    per_rank = {(rank, optype): n for (rank, step, optype), n in annotated.items() if step == 2}
    for (rank, step, optype), n in table_counts("stack").items():
        assert per_rank[rank, optype] == n, (rank, step, optype)
    assert sum(table_counts("stack").values()) == 2 * sum(per_rank.values())
    ops = trace.ops
    forward = ops[ops.optype == "forward-compute"]
    assert sorted(forward.mb_id.unique()) == [0, 1, 2, 3]
    backward = ops[(ops.optype == "backward-compute") & (ops.step == 2)].sort_values(["rank", "seq_id"])
    # microbatches of backwards linked to forwards by autograd sequence numbers
    assert (backward.groupby("rank").mb_id.apply(list) == [[0, 1, 2, 3]] * 4).all()

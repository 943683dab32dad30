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
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from graphwia.analyses.standard import analyze
from graphwia.errors import TraceError
from graphwia.model.dag import build_dag
from graphwia.model.schedule import KIND_CODE
from graphwia.trace.kineto import import_kineto, read_mapping

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


# -- files of two runs, and the README's mapping example -------------------------------------


def test_two_runs_mixed_without_rank_collision(tmp_path):
    """Ranks 0-1 of the annotated run and ranks 2-3 of the stack run: same layout, same host, no
    rank twice, common steps 2-3; their steps lie 38 s apart, so they are refused as two runs."""
    for rank in range(4):
        kind = "annotated" if rank < 2 else "stack"
        shutil.copy(DATA / kind / f"rank{rank}.json.gz", tmp_path / f"rank{rank}.json.gz")
    with pytest.raises(TraceError, match="look like different jobs or runs") as info:
        import_kineto(tmp_path)
    message = str(info.value)
    assert "\n" not in message and "rank0.json.gz (rank 0)" in message and "rank2.json.gz (rank 2)" in message
    assert "ProfilerStep#2" in message


README = Path(__file__).parent.parent / "README.md"
#: The annotated fixture's names → the names the README's mapping example maps.
README_NAMES = (
    (re.compile(r"forward-compute mb=(\d+)"), r"fwd \1"),
    (re.compile(r"backward-compute mb=(\d+)"), r"bwd \1"),
    (re.compile(r"forward-send (mb=\d+)"), r"send-forward \1"),
    (re.compile(r"forward-recv (mb=\d+)"), r"recv-forward \1"),
    (re.compile(r"backward-send (mb=\d+)"), r"send-backward \1"),
    (re.compile(r"backward-recv (mb=\d+)"), r"recv-backward \1"),
    (re.compile(r"grads-reduce-scatter"), "dp-allreduce"),
    (re.compile(r"optimizer"), "optimizer-step"),
)


def readme_mapping() -> str:
    """The mapping file of the README's worked example (its first yaml block on importing traces)."""
    text = README.read_text()
    section = text[text.index("### Importing PyTorch profiler traces") :]
    return section[section.index("```yaml\n") + len("```yaml\n") : section.index("```\n", section.index("```yaml"))]


def renamed_fixture(target: Path) -> Path:
    """The annotated fixture with its ranges named as the README's example expects."""
    target.mkdir()
    for path in sorted((DATA / "annotated").glob("*.json.gz")):
        document = json.loads(gzip.decompress(path.read_bytes()))
        for event in document["traceEvents"]:
            if event.get("cat") == "user_annotation":
                for pattern, replacement in README_NAMES:
                    if pattern.fullmatch(event["name"]):
                        event["name"] = pattern.sub(replacement, event["name"])
                        break
        (target / path.name).write_bytes(gzip.compress(json.dumps(document).encode()))
    return target


def test_readme_mapping_example_imports_a_pipeline(tmp_path):
    rules = readme_mapping()
    for name in ("send-forward", "recv-forward", "send-backward", "recv-backward"):
        assert f"'{name} mb=" in rules  # every p2p op of a pipeline is mapped
    (tmp_path / "map.yaml").write_text(rules)
    directory = renamed_fixture(tmp_path / "renamed")
    with pytest.raises(TraceError, match="no forward-compute"):  # the names are no longer the convention's
        import_kineto(directory)
    trace, report = import_kineto(directory, mapping=read_mapping(tmp_path / "map.yaml"), name="annotated")
    assert report.method == {"mapping file + annotations": 4}  # the clip still follows the convention
    assert table_counts_of(trace) == table_counts("annotated")
    assert report.clocks.pairs == imported("annotated")[1].clocks.pairs == 64 and report.clocks.violations_before == 0
    expected = imported("annotated")[0].ops.sort_values(["rank", "step", "optype", "seq_id"]).reset_index(drop=True)
    got = trace.ops.sort_values(["rank", "step", "optype", "seq_id"]).reset_index(drop=True)
    for column in ("mb_id", "start_ts", "duration"):
        np.testing.assert_array_equal(got[column], expected[column])
    analysis_of_readme = analyze(trace)
    table = analysis_of_readme.worker_table
    workers = list(zip(table["dp_rank"].tolist(), table["stage"].tolist()))
    assert workers[int(np.argmax(table["S_worker"]))] == SLOW_WORKER


def test_pipeline_without_recv_rules_is_refused_at_import(tmp_path):
    """The README's example as it was (no recv-forward, send-backward rules): 0 p2p pairs, and the
    analysis failed later; now the import says what is missing."""
    rules = "\n".join(
        line for line in readme_mapping().splitlines() if "recv-forward" not in line and "send-backward" not in line
    )
    (tmp_path / "map.yaml").write_text(rules + "\n")
    directory = renamed_fixture(tmp_path / "renamed")
    with pytest.raises(TraceError, match="no forward-recv op on rank 2 \\(dp_rank 0, stage 1\\)") as info:
        import_kineto(directory, mapping=read_mapping(tmp_path / "map.yaml"))
    message = str(info.value)
    assert "\n" not in message and "mapping file" in message and "--map" not in message


def table_counts_of(trace) -> Counter:
    return Counter(
        {
            (int(r), int(s), str(o)): int(n)
            for (r, s, o), n in trace.ops.groupby(["rank", "step", "optype"], observed=True).size().items()
        }
    )

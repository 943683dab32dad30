"""Chakra export: files read back and rebuilt, replayed by duration, matched across ranks; the CLI.

The replayer here is the test's own: a node starts when its data deps have
ended; a send and its receive (same tag, swapped src/dst) or the k-th
collective of a communicator group on each of its ranks end, on each member,
at the latest start among the members plus that member's duration.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from conftest import real_trace, requires_data
from typer.testing import CliRunner

from graphwia import Trace, UsageError
from graphwia.analyses.critical_path import critical_path
from graphwia.analyses.whatif import choose_scenario, parse_scenarios, run_whatif
from graphwia.cli.main import app
from graphwia.errors import TraceError
from graphwia.optypes import ALL_OPTYPES, OPTYPE_CODE
from graphwia.outputs import chakra_schema as C
from graphwia.outputs.chakra import export_chakra
from graphwia.synth.generate import synthesize, write_synth

US = 1e6


# -- reading and replaying --------------------------------------------------------------------


def read_export(export) -> tuple[dict[int, list[dict]], dict[str, list[int]]]:
    """Every file of an export as plain node dicts, by rank, and the group file."""
    files = {}
    for rank, path in zip(export.ranks, export.files):
        metadata, nodes = C.read_et(path)
        assert metadata.version and {a.name: C.attribute_value(a) for a in metadata.attr}["rank"] == rank
        files[rank] = [
            {
                "id": n.id,
                "name": n.name,
                "type": n.type,
                "deps": list(n.data_deps),
                "dur": n.duration_micros,
                "attr": {a.name: C.attribute_value(a) for a in n.attr},
            }
            for n in nodes
        ]
    return files, json.loads(export.comm_groups.read_text())


def match_groups(files, groups) -> dict[tuple, list[tuple[int, int]]]:
    """Group key → member (rank, id) nodes; checks every pair and collective is complete."""
    members = defaultdict(list)
    for rank, nodes in files.items():
        seen = Counter()
        for node in nodes:
            attr = node["attr"]
            if node["type"] in (C.COMM_SEND_NODE, C.COMM_RECV_NODE):
                own = attr["comm_src"] if node["type"] == C.COMM_SEND_NODE else attr["comm_dst"]
                assert own == rank, node
                members[("p2p", attr["comm_src"], attr["comm_dst"], attr["comm_tag"])].append((rank, node["id"]))
            elif node["type"] == C.COMM_COLL_NODE:
                pg = attr["pg_name"]
                assert pg in groups and set(attr) == {"comm_type", "comm_size", "pg_name"}, node
                members[("coll", pg, seen[pg])].append((rank, node["id"]))
                seen[pg] += 1
    by_key = {(rank, node["id"]): node for rank, nodes in files.items() for node in nodes}
    for key, found in members.items():
        if key[0] == "p2p":  # exactly one send and one receive, same tag, swapped src/dst
            assert sorted(by_key[m]["type"] for m in found) == [C.COMM_SEND_NODE, C.COMM_RECV_NODE], key
        else:  # one peer on each rank of the group, all the same op
            assert sorted(rank for rank, _ in found) == sorted(groups[key[1]]), key
            assert len({by_key[m]["name"] for m in found}) == 1, key
    return members


def replay(files, groups) -> tuple[dict, dict]:
    """Start and end (µs) of every (rank, id) node, by the rules in the module docstring."""
    nodes = {(rank, node["id"]): node for rank, rank_nodes in files.items() for node in rank_nodes}
    members = match_groups(files, groups)
    group_of = {m: key for key, found in members.items() for m in found}
    children, pending = defaultdict(list), {}
    for key, node in nodes.items():
        pending[key] = len(node["deps"])
        for dep in node["deps"]:
            children[(key[0], dep)].append(key)
    ready = [key for key, n in pending.items() if n == 0]
    start, end, arrived, sync = {}, {}, Counter(), {}

    def finish(key, time):
        end[key] = time
        for child in children[key]:
            pending[child] -= 1
            if pending[child] == 0:
                ready.append(child)

    while ready:
        key = ready.pop()
        node = nodes[key]
        start[key] = max((end[(key[0], dep)] for dep in node["deps"]), default=0)
        group = group_of.get(key)
        if group is None:
            finish(key, start[key] + node["dur"])
            continue
        sync[group] = max(sync.get(group, 0), start[key])
        arrived[group] += 1
        if arrived[group] == len(members[group]):
            for member in members[group]:
                finish(member, sync[group] + nodes[member]["dur"])
    assert len(end) == len(nodes), f"replay stuck: {len(nodes) - len(end)} nodes never ran"
    return nodes, end


def listed(directory: Path) -> list[str]:
    """The files of a directory, without the hidden bookkeeping of output sets."""
    return sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))


def step_of(name: str) -> int:
    return int(name.rsplit(" ", 1)[1])


def replayed_step_times(files, groups, steps) -> np.ndarray:
    """Per step: latest optimizer end − the step's start (the previous step boundary, or 0), seconds."""
    nodes, end = replay(files, groups)
    boundary, optimizer = defaultdict(int), defaultdict(int)
    for key, node in nodes.items():
        if node["name"].startswith("step-boundary"):
            boundary[step_of(node["name"])] = max(boundary[step_of(node["name"])], end[key])
        elif node["name"].startswith("optimizer["):
            optimizer[step_of(node["name"])] = max(optimizer[step_of(node["name"])], end[key])
    return np.array([optimizer[s] - (boundary[steps[i - 1]] if i else 0) for i, s in enumerate(steps)]) / US


# -- what the files should hold, from the DAG ---------------------------------------------------


def expected_graph(chosen, rank_of_worker) -> dict[int, tuple[set, set]]:
    """Per rank: node names and (node, dep) name pairs, built from the DAG and the scenario's delays."""
    dag = chosen.dag
    table = dag.table
    names = [
        f"{ALL_OPTYPES[o]}[{q}] step {s}"
        for o, q, s in zip(table["optype"].tolist(), table["seq_id"].tolist(), table["step"].tolist())
    ]
    delayed = np.rint(np.maximum(chosen.delay, 0) * US) > 0
    entry = [("launch-delay " + n if d else n) for n, d in zip(names, delayed.tolist())]
    worker = list(zip(table["dp_rank"].tolist(), table["stage"].tolist()))
    rank = [rank_of_worker[w] for w in worker]
    nodes, deps = defaultdict(set), defaultdict(set)
    for op in range(dag.n_ops):
        nodes[rank[op]].add(names[op])
        if delayed[op]:
            nodes[rank[op]].add(entry[op])
            deps[rank[op]].add((names[op], entry[op]))
    intra = dag.edges.via >= 0
    has_succ, has_pred = np.zeros(dag.n_ops, bool), np.zeros(dag.n_ops, bool)
    for src, dst in zip(dag.edges.via[intra].tolist(), dag.edges.dst[intra].tolist()):
        assert rank[src] == rank[dst]
        deps[rank[dst]].add((entry[dst], names[src]))
        has_succ[src] = has_pred[dst] = True
    steps = dag.steps.tolist()
    for r in set(rank):
        nodes[r].update(f"step-boundary after step {s}" for s in steps[:-1])
    position = {s: i for i, s in enumerate(steps)}
    for op in range(dag.n_ops):
        i = position[int(table["step"][op])]
        if not has_succ[op] and i < len(steps) - 1:
            deps[rank[op]].add((f"step-boundary after step {steps[i]}", names[op]))
        if not has_pred[op] and i > 0:
            deps[rank[op]].add((entry[op], f"step-boundary after step {steps[i - 1]}"))
    return {r: (nodes[r], deps[r]) for r in nodes}


def check_structure(export, chosen, files):
    """Node set, data deps, types and durations of every file against the DAG."""
    rank_of_worker = {(d, s): rank for rank, (_, d, s) in export.ranks.items()}
    expected = expected_graph(chosen, rank_of_worker)
    assert set(files) == set(expected)
    dag = chosen.dag
    table = dag.table
    duration = {}
    for op in range(dag.n_ops):
        name = f"{ALL_OPTYPES[table['optype'][op]]}[{table['seq_id'][op]}] step {table['step'][op]}"
        duration[(rank_of_worker[(int(table["dp_rank"][op]), int(table["stage"][op]))], name)] = int(
            np.rint(max(chosen.weight[op], 0) * US)
        )
    for rank, nodes in files.items():
        by_id = {n["id"]: n for n in nodes}
        assert [n["id"] for n in nodes] == list(range(len(nodes)))
        assert all(dep < n["id"] for n in nodes for dep in n["deps"]), "file order is topological"
        names = {n["name"] for n in nodes}
        pairs = {(n["name"], by_id[dep]["name"]) for n in nodes for dep in n["deps"]}
        assert len(names) == len(nodes)
        assert (names, pairs) == expected[rank], f"rank {rank}"
        for n in nodes:
            if (rank, n["name"]) in duration:
                assert n["dur"] == duration[(rank, n["name"])], n["name"]
            elif n["name"].startswith("step-boundary"):
                assert n["type"] == C.COMM_COLL_NODE and n["dur"] == 0 and n["attr"]["comm_size"] == 0
            else:
                assert n["name"].startswith("launch-delay ") and n["type"] == C.COMP_NODE and n["dur"] > 0


def step_tolerance(chosen, weight, delay) -> np.ndarray:
    """1 µs per op on each step's critical path (the rounding of an op and of its launch delay)."""
    paths = critical_path(chosen.dag, chosen.compiled, weight, delay)
    counts = paths.elements.groupby("step").size()
    return np.array([counts[s] for s in chosen.dag.steps]) / US


# -- the schema -------------------------------------------------------------------------------


def test_schema_round_trip_and_stream_framing(tmp_path):
    node = C.Node(
        id=7,
        name="x",
        type=C.COMM_SEND_NODE,
        data_deps=[1, 5],
        duration_micros=2**40,
        start_time_micros=3,
        attr=[
            C.AttributeProto(name="comm_src", int32_val=-1),
            C.AttributeProto(name="comm_size", int64_val=2**40),
            C.AttributeProto(name="pg_name", string_val="3"),
            C.AttributeProto(name="is_cpu_op", bool_val=False),
            C.AttributeProto(name="u", uint64_val=2**64 - 1),
        ],
    )
    back = C.Node.FromString(node.SerializeToString())
    assert back == node and [C.attribute_value(a) for a in back.attr] == [-1, 2**40, "3", False, 2**64 - 1]
    assert C.Node.DESCRIPTOR.full_name == "ChakraProtoMsg.Node"
    assert C.Node.DESCRIPTOR.fields_by_name["data_deps"].number == 5
    assert C.AttributeProto.DESCRIPTOR.fields_by_name["string_val"].number == 29
    assert [C.varint(v) for v in (0, 127, 128, 300)] == [b"\x00", b"\x7f", b"\x80\x01", b"\xac\x02"]
    payloads = [C.GlobalMetadata(version="0.0.4").SerializeToString(), node.SerializeToString(), b"", b"z" * 200]
    data = C.encode_delimited(payloads)
    assert list(C.split_delimited(data)) == payloads
    path = tmp_path / "t.0.et"
    path.write_bytes(data[:-1])
    with pytest.raises(UsageError, match="runs past the end"):
        C.read_et(path)
    path.write_bytes(b"")
    with pytest.raises(UsageError, match="empty file"):
        C.read_et(path)


# -- synthetic jobs: structure, no-ops, ranks, sizes --------------------------------------------


@pytest.fixture(scope="module")
def synth_trace() -> Trace:
    frame, meta = synthesize(
        dp=2, pp=3, vpp=2, microbatches=6, steps=3, seed=5, tp=2, slow_workers=[(1, 2, 1.5)], name="sy"
    )
    return Trace.from_frame(frame, meta)


@pytest.mark.parametrize("scenario", ["base", "nodelay", "ideal"])
def test_synthetic_export_rebuilds_and_replays(synth_trace, tmp_path, scenario):
    export = export_chakra(synth_trace, tmp_path, scenario=scenario, activation_bytes=1 << 20, grad_bytes=1 << 26)
    chosen = choose_scenario(synth_trace, scenario)
    files, groups = read_export(export)
    check_structure(export, chosen, files)
    assert listed(tmp_path) == sorted(
        [f"sy-{scenario}.{r}.et" for r in export.ranks]
        + [f"sy-{scenario}.comm_groups.json", f"sy-{scenario}.README.md"]
    )
    assert sorted(export.ranks) == sorted(set(synth_trace.table["rank"].tolist())) != list(range(6))
    used = {n["attr"]["pg_name"] for nodes in files.values() for n in nodes if n["type"] == C.COMM_COLL_NODE}
    assert used == set(groups)  # the group file covers every pg_name used, and nothing else
    # Sizes from the options; the message about unknown sizes names only what is left.
    sizes = {(n["type"], n["attr"]["comm_size"]) for nodes in files.values() for n in nodes if n["attr"]}
    assert (C.COMM_SEND_NODE, 1 << 20) in sizes and (C.COMM_COLL_NODE, 1 << 26) in sizes
    assert any("embedding and clip" in note and "activation" not in note for note in export.notes)
    # p2p no-ops have no peer: they are compute nodes of their duration.
    dag = chosen.dag
    noops = np.flatnonzero(dag.table["noop"] > 0)
    assert len(noops), "the synthetic job has p2p no-ops"
    by_name = {(r, n["name"]): n for r, nodes in files.items() for n in nodes}
    for op in noops[:20].tolist():
        rank = int(dag.table["rank"][op])
        name = f"{ALL_OPTYPES[dag.table['optype'][op]]}[{dag.table['seq_id'][op]}] step {dag.table['step'][op]}"
        assert by_name[(rank, name)]["type"] == C.COMP_NODE and not by_name[(rank, name)]["attr"]
    # Replayed by duration, every step takes the scenario's simulated time (durations are whole µs).
    replayed = replayed_step_times(files, groups, export.steps)
    expected = chosen.compiled.evaluate(chosen.weight, chosen.delay).step_time[:, 0]
    assert np.all(np.abs(replayed - expected) <= step_tolerance(chosen, chosen.weight, chosen.delay))
    np.testing.assert_allclose(replayed, export.replay_step_time, atol=1e-9)
    _, end = replay(files, groups)
    assert export.makespan == pytest.approx(max(end.values()) / US, abs=1e-9)


def test_compact_ranks_and_names(synth_trace, tmp_path):
    spread = export_chakra(synth_trace, tmp_path, scenario="ideal", name="job_1.x")
    assert max(spread.ranks) > 5 and any("global rank" in note for note in spread.notes)
    export = export_chakra(synth_trace, tmp_path, scenario="ideal", compact_ranks=True, name="job_1.x")
    assert list(export.ranks) == list(range(6))
    # The second export of the same name replaced the first one's files, those of ranks above 5 too.
    assert listed(tmp_path) == sorted(
        [p.name for p in export.files] + ["job_1.x.README.md", "job_1.x.comm_groups.json"]
    )
    assert [p.name for p in export.files] == [f"job_1.x.{r}.et" for r in range(6)]
    assert [g for g, _, _ in export.ranks.values()] == sorted(set(synth_trace.table["rank"].tolist()))
    files, groups = read_export(export)
    match_groups(files, groups)
    assert not any("global rank" in note for note in export.notes)
    with pytest.raises(UsageError, match="name '../up' is not a valid name"):
        export_chakra(synth_trace, tmp_path, name="../up")
    with pytest.raises(UsageError, match="activation_bytes"):
        export_chakra(synth_trace, tmp_path, activation_bytes=-1)


def test_an_analysis_exports_as_its_trace(synth_trace, tmp_path):
    from graphwia import analyze

    from_trace = export_chakra(synth_trace, tmp_path / "trace", scenario="ideal")
    from_analysis = export_chakra(analyze(synth_trace), tmp_path / "analysis", scenario="ideal")
    assert [p.read_bytes() for p in from_trace.files] == [p.read_bytes() for p in from_analysis.files]
    with pytest.raises(UsageError, match="steps"):
        export_chakra(analyze(synth_trace), tmp_path, steps=[1])


def test_whatif_scenario_replays_its_step_times(synth_trace, tmp_path):
    scenarios = parse_scenarios(
        {
            "baseline": "nodelay",
            "scenarios": [
                {"name": "slow-first", "where": {"stage": [0], "dp_rank": [0]}, "scale": {"duration": 3}},
                {"name": "quick-p2p", "where": {"optype": ["forward-send", "forward-recv"]}, "set": {"transfer": 0}},
            ],
        }
    )
    result = run_whatif(synth_trace, scenarios)
    for i, name in enumerate(scenarios.names):
        export = export_chakra(synth_trace, tmp_path / name, scenario=name, scenarios=scenarios)
        files, groups = read_export(export)
        chosen = choose_scenario(synth_trace, name, scenarios=scenarios)
        replayed = replayed_step_times(files, groups, export.steps)
        assert np.all(np.abs(replayed - result.step_time[:, i]) <= step_tolerance(chosen, chosen.weight, chosen.delay))
    with pytest.raises(UsageError, match="'missing' is not in"):
        export_chakra(synth_trace, tmp_path, scenario="missing", scenarios=scenarios)


def test_one_step_has_no_boundary(synth_trace, tmp_path):
    export = export_chakra(synth_trace, tmp_path, scenario="nodelay", steps=[1])
    files, groups = read_export(export)
    assert not any(n["name"].startswith("step-boundary") for nodes in files.values() for n in nodes)
    assert export.steps == [1] and not any("step boundary" in uses for uses in export.group_uses.values())
    assert replayed_step_times(files, groups, [1]) == pytest.approx(export.replay_step_time, abs=1e-9)


# -- the real traces --------------------------------------------------------------------------

_real: dict = {}
#: Steps exported per trace: all of ST; AR's first 8 of 44 (its 200 k nodes replay in Python in ~10 s).
STEPS = {"ST": None, "AR": slice(0, 8)}


def real_export(name: str, scenario: str, out: Path):
    """Export, chosen scenario and files read back, made once per (trace, scenario)."""
    key = (name, scenario)
    if key not in _real:
        trace = real_trace(name)
        steps = None if STEPS[name] is None else trace.steps[STEPS[name]].tolist()
        export = export_chakra(trace, out / f"{name}-{scenario}", scenario=scenario, steps=steps)
        _real[key] = (export, choose_scenario(trace, scenario, steps=steps), *read_export(export))
    return _real[key]


@requires_data
@pytest.mark.parametrize(
    "name, scenario", [("ST", "base"), ("ST", "nodelay"), ("ST", "ideal"), ("AR", "base"), ("AR", "ideal")]
)
def test_real_replay_gives_the_scenario_step_times(name, scenario, tmp_path_factory):
    export, chosen, files, groups = real_export(name, scenario, tmp_path_factory.mktemp("chakra"))
    if name == "ST":
        check_structure(export, chosen, files)
    used = {n["attr"]["pg_name"] for nodes in files.values() for n in nodes if n["type"] == C.COMM_COLL_NODE}
    assert used == set(groups)
    replayed = replayed_step_times(files, groups, export.steps)
    weight, delay = chosen.weight, chosen.delay
    scenario_time = chosen.compiled.evaluate(weight, delay).step_time[:, 0]
    negative = (delay < 0).sum() + (weight < 0).sum()
    if negative:  # base: clock-noise launch delays below 0 cannot be written; they become 0, and say so
        assert any(f"{(delay < 0).sum()} negative launch delay" in note for note in export.notes)
        weight, delay = np.maximum(weight, 0), np.maximum(delay, 0)
        written = chosen.compiled.evaluate(weight, delay).step_time[:, 0]
        assert np.all(np.abs(written - scenario_time) <= 1e-4 * scenario_time)  # what they change is small
        scenario_time = written
    else:
        assert not any("negative" in note for note in export.notes)
    tolerance = step_tolerance(chosen, weight, delay)
    deviation = np.abs(replayed - scenario_time)
    assert np.all(deviation <= tolerance), f"worst step off by {deviation.max() * US:.1f} µs"


@requires_data
def test_real_straggler_is_in_base_not_in_ideal(tmp_path_factory):
    out = tmp_path_factory.mktemp("chakra")
    compute = ("forward-compute[", "backward-compute[")
    means = {}
    for scenario in ("base", "ideal"):
        export, chosen, files, _ = real_export("AR", scenario, out)
        slow = next(rank for rank, (_, d, s) in export.ranks.items() if (d, s) == (0, 0))
        durations = {
            rank: np.array([n["dur"] for n in nodes if n["name"].startswith(compute)]) for rank, nodes in files.items()
        }
        means[scenario] = {rank: d.mean() for rank, d in durations.items()}
        others = [m for rank, m in means[scenario].items() if rank != slow]
        if scenario == "base":  # the slowed worker computes far longer than anyone else
            assert means[scenario][slow] > 1.5 * max(others)
        else:  # ideal: every forward/backward compute is its optype's typical duration, everywhere
            for optype in ("forward-compute", "backward-compute"):
                values = {n["dur"] for nodes in files.values() for n in nodes if n["name"].startswith(optype + "[")}
                typical = chosen.weight[chosen.dag.table["optype"] == OPTYPE_CODE[optype]][0]
                assert values == {int(np.rint(typical * US))}


# -- the CLI ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synth_files(tmp_path_factory):
    return write_synth(tmp_path_factory.mktemp("synth"), "cx", dp=2, pp=2, microbatches=4, steps=3, seed=2)


def run_cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_writes_the_files(synth_files, tmp_path):
    trace, _ = synth_files
    out = tmp_path / "et"
    result = run_cli(
        "export-chakra",
        trace,
        "--out",
        out,
        "--scenario",
        "ideal",
        "--steps",
        "1-2",
        "--activation-bytes",
        "4096",
        "--grad-bytes",
        "65536",
    )
    assert result.exit_code == 0, result.output
    written = listed(out)
    assert written == sorted(
        [f"cx-ideal.{r}.et" for r in range(4)] + ["cx-ideal.comm_groups.json", "cx-ideal.README.md"]
    )
    assert "4 ranks" in result.output and "replayed mean step time" in result.output
    metadata, nodes = C.read_et(out / "cx-ideal.0.et")
    assert {a.name: C.attribute_value(a) for a in metadata.attr}["steps"] == "1-2"
    assert sum(n.name.startswith("step-boundary") for n in nodes) == 1
    assert "## Replaying with ASTRA-sim" in (out / "cx-ideal.README.md").read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--scenario", "fastest"], "scenario 'fastest' is not one of nodelay, base, ideal"),
        (["--name", "a/b"], "--name 'a/b' is not a valid name"),
        (["--steps", "9"], "step 9 is not in the trace"),
    ],
)
def test_cli_bad_input_is_one_line(synth_files, tmp_path, args, message):
    trace, _ = synth_files
    result = run_cli("export-chakra", trace, "--out", tmp_path / "et", *args)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("graphwia: error:") and message in lines[0], result.output
    assert not (tmp_path / "et").exists() or not listed(tmp_path / "et")


def test_cli_unwritable_out(synth_files, tmp_path):
    trace, _ = synth_files
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run_cli("export-chakra", trace, "--out", blocker)
    assert result.exit_code == 1 and "output directory cannot be written" in result.output


def test_cli_whatif_needs_a_scenario(synth_files, tmp_path):
    trace, _ = synth_files
    whatif = tmp_path / "w.yaml"
    whatif.write_text("scenarios:\n  - {name: slow, where: {stage: [0]}, scale: {duration: 2}}\n")
    result = run_cli("export-chakra", trace, "--out", tmp_path / "et", "--whatif", whatif)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "--whatif" in lines[0] and "needs --scenario" in lines[0], result.output
    assert not (tmp_path / "et").exists()
    result = run_cli("export-chakra", trace, "--out", tmp_path / "et", "--whatif", whatif, "--scenario", "slow", "-q")
    assert result.exit_code == 0, result.output
    assert listed(tmp_path / "et")[0].startswith("cx-slow.")


def test_duration_beyond_the_unsigned_fields_names_the_op(tmp_path):
    """An op of 1e14 s does not fit 2^64 - 1 µs (it was cast into garbage with a RuntimeWarning):
    one line naming the op, nothing written."""
    frame, meta = synthesize(name="h", dp=2, pp=2, microbatches=4, steps=2, seed=1)
    frame.loc[frame.index[(frame.optype == "optimizer") & (frame.stage == 1)][0], "duration"] = 1e14
    trace = Trace.from_frame(frame, meta, time_unit="s")
    with pytest.raises(TraceError, match=r"optimizer\[0\] step 0 \(dp_rank \d, stage 1\) has a duration of 1e\+14 s"):
        export_chakra(trace, tmp_path / "et", scenario="base")
    assert not (tmp_path / "et").exists() or not listed(tmp_path / "et")


def test_message_sizes_from_imported_profiler_traces(tmp_path):
    """synth --format kineto → import kineto → export-chakra: comm_size is what synth's record_param_comms
    said (each kind its own), without options; the options still win; the command says where from."""
    from graphwia.synth.kineto import ACTIVATION_BYTES, GRAD_BYTES

    result = run_cli(
        "synth", "--out", tmp_path, "--name", "kj", "--dp", "2", "--pp", "2", "--microbatches", "4", "--steps", "2",
        "--format", "kineto",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    result = run_cli("import", "kineto", tmp_path / "kj", "--out", tmp_path / "imp", "--name", "kj")
    assert result.exit_code == 0, result.output
    assert (
        f"p2p messages {ACTIVATION_BYTES} B" in result.output and f"DP collective ops {GRAD_BYTES} B" in result.output
    )
    trace = tmp_path / "imp" / "trace-kj.parquet"

    def sizes(out: Path) -> dict[int, set[int]]:
        found = defaultdict(set)
        for path in out.glob("*.et"):
            for node in C.read_et(path)[1]:
                attr = {a.name: C.attribute_value(a) for a in node.attr}
                if "comm_size" in attr and not node.name.startswith(("step-boundary", "embedding", "optimizer-clip")):
                    found[node.type].add(attr["comm_size"])
        return found

    result = run_cli("export-chakra", trace, "--out", tmp_path / "et")
    assert result.exit_code == 0, result.output
    found = sizes(tmp_path / "et")
    assert found[C.COMM_SEND_NODE] == found[C.COMM_RECV_NODE] == {ACTIVATION_BYTES} != {0}
    assert found[C.COMM_COLL_NODE] == {GRAD_BYTES}
    assert f"p2p messages {ACTIVATION_BYTES} B (from the trace's metadata)" in result.output
    assert "activation_bytes" not in result.output and "grad_bytes" not in result.output  # not unknown
    readme = next((tmp_path / "et").glob("*.README.md")).read_text()
    assert f"p2p messages {ACTIVATION_BYTES} (from the trace's metadata)" in readme

    result = run_cli("export-chakra", trace, "--out", tmp_path / "et2", "--grad-bytes", "4096")
    assert result.exit_code == 0, result.output
    found = sizes(tmp_path / "et2")
    assert found[C.COMM_SEND_NODE] == {ACTIVATION_BYTES} and found[C.COMM_COLL_NODE] == {4096}
    assert "DP collective ops 4096 B (from --grad-bytes)" in result.output

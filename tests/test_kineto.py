"""Kineto import: ops by convention and mapping file, spans, topology, steps, clocks, errors, CLI.

The traces are written by graphwia.synth.kineto (small GPU-style jobs) and then edited the way
real traces differ: names, missing links, missing files, skewed clocks, broken files.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from graphwia.cli.main import app
from graphwia.errors import ArgumentError, TraceError, UsageError
from graphwia.synth.generate import synthesize
from graphwia.synth.kineto import ACTIVATION_BYTES, GRAD_BYTES, write_kineto
from graphwia.trace.files import open_trace
from graphwia.trace.kineto import Layout, import_kineto, read_mapping
from graphwia.trace.kineto.spans import nccl_kernel
from graphwia.trace.optable import Trace

KEY = ["step", "dp_rank", "stage", "optype", "seq_id"]


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> tuple[Path, Trace]:
    """A dp 2 x pp 2 synthetic job written as Kineto traces (plain JSON), and its op table."""
    frame, meta = synthesize(name="k", dp=2, pp=2, microbatches=4, steps=3, seed=5)
    trace = Trace.from_frame(frame, meta)
    out = tmp_path_factory.mktemp("kineto") / "job"
    write_kineto(trace, out)
    return out, trace


def copy_job(job, tmp_path: Path) -> Path:
    target = tmp_path / "job"
    shutil.copytree(job[0], target)
    return target


def edit(path: Path, change) -> None:
    """Rewrite a trace file through ``change(document)``."""
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


def ordered(trace: Trace):
    return trace.ops.sort_values(KEY).reset_index(drop=True)


def same_ops(a: Trace, b: Trace, atol: float = 2e-9) -> None:
    x, y = ordered(a), ordered(b)
    assert (x.optype.astype(str) == y.optype.astype(str)).all()
    for column in ("step", "dp_rank", "stage", "seq_id", "rank"):
        assert (x[column] == y[column]).all(), column
    np.testing.assert_allclose(y.duration, x.duration, atol=atol)
    np.testing.assert_allclose(y.start_ts - y.start_ts.min(), x.start_ts - x.start_ts.min(), atol=atol)


def one_line_error(error: type, match: str, call) -> str:
    with pytest.raises(error, match=match) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    return message


# -- what is read ---------------------------------------------------------------------------


def test_import_recovers_the_op_table(job):
    imported, report = import_kineto(job[0], name="k")
    same_ops(job[1], imported)
    # the message sizes of record_param_comms: what synth wrote, each kind its own
    assert (imported.meta.activation_bytes, imported.meta.grad_bytes) == (ACTIVATION_BYTES, GRAD_BYTES)
    assert ACTIVATION_BYTES != GRAD_BYTES
    assert dataclasses.replace(imported.meta, activation_bytes=None, grad_bytes=None) == job[1].meta
    assert report.topology.source == "distributedInfo process groups"
    assert report.steps == [0, 1, 2] and not report.dropped_steps
    assert report.sources == {"kernels": len(imported.table) - 12, "cpu": 12}  # gc: CPU work only
    assert report.clocks.pairs > 0 and report.clocks.violations_before == 0
    text = "\n".join(report.lines())
    assert "dp 2 x pp 2" in text and "steps 0-2" in text


def test_gzip_and_file_list(job, tmp_path):
    files = []
    for path in sorted(job[0].iterdir()):
        target = tmp_path / (path.name + ".gz")
        target.write_bytes(gzip.compress(path.read_bytes()))
        files.append(target)
    imported, _ = import_kineto(files)
    same_ops(job[1], imported)


def test_flows_link_kernels_without_correlation_args(job, tmp_path):
    """A kernel without a correlation id is found through the ac2g flow ending on it."""
    directory = copy_job(job, tmp_path)

    def drop(document):
        for event in document["traceEvents"]:
            if event.get("cat") == "kernel":
                del event["args"]["correlation"]

    for path in directory.iterdir():
        edit(path, drop)
    imported, report = import_kineto(directory)
    same_ops(job[1], imported)
    assert report.sources["kernels"] == len(imported.table) - 12


def test_gpu_user_annotation_when_no_launch_is_linked(job, tmp_path):
    directory = copy_job(job, tmp_path)

    def drop(document):
        document["traceEvents"] = [e for e in document["traceEvents"] if e.get("cat") != "cuda_runtime"]

    for path in directory.iterdir():
        edit(path, drop)
    imported, report = import_kineto(directory)
    assert report.sources["gpu_user_annotation"] == len(imported.table) - 12
    # the GPU copy is 1 ns wider on each side; a communication op's also spans its copy kernel
    x, y = ordered(job[1]), ordered(imported)
    compute = x.optype.isin(["forward-compute", "backward-compute", "optimizer"])
    np.testing.assert_allclose(y.duration[compute], x.duration[compute], atol=3e-9)
    assert (y.duration[~compute] >= x.duration[~compute] - 3e-9).all()


def test_nccl_kernel_names_of_both_generations():
    assert nccl_kernel("ncclKernel_AllReduce_RING_LL_Sum_float") == ("ncclKernel", "AllReduce")
    assert nccl_kernel("ncclDevKernel_SendRecv") == ("ncclDevKernel", "SendRecv")
    assert nccl_kernel("void ncclDevKernel_ReduceScatter_Sum_bf16_RING_LL(ncclDevComm*)") == (
        "ncclDevKernel",
        "ReduceScatter",
    )
    assert nccl_kernel("ampere_bf16_s16816gemm") is None


def test_mapping_file_names_ops_of_other_instrumentation(job, tmp_path):
    directory = copy_job(job, tmp_path)
    renames = {
        "forward-compute": "fwd",
        "backward-compute": "bwd",
        "forward-send": "send-forward",
        "forward-recv": "recv-forward",
        "backward-send": "send-backward",
        "backward-recv": "recv-backward",
        "grads-reduce-scatter": "dp-reduce-scatter",
        "optimizer": "optimizer-step",
    }

    def rename(document):
        for event in document["traceEvents"]:
            if event.get("cat") in ("user_annotation", "gpu_user_annotation"):
                optype, _, rest = event["name"].partition(" ")
                if optype in renames:
                    event["name"] = " ".join(filter(None, [renames[optype], rest]))

    for path in directory.iterdir():
        edit(path, rename)
    mapping = tmp_path / "map.yaml"
    mapping.write_text(
        "rules:\n"
        "  - {match: 'fwd mb=(?P<mb>\\d+)', optype: forward-compute}\n"
        "  - {match: 'bwd mb=(?P<mb>\\d+)', optype: backward-compute}\n"
        "  - {match: 'send-forward', optype: forward-send}\n"
        "  - {match: 'recv-forward', optype: forward-recv}\n"
        "  - {match: 'send-backward', optype: backward-send}\n"
        "  - {match: 'recv-backward', optype: backward-recv}\n"
        "  - {match: 'dp-reduce-scatter( chunk=(?P<chunk>\\d+))?', optype: grads-reduce-scatter}\n"
        "  - {match: 'optimizer-step', optype: optimizer, category: user_annotation}\n"
    )
    one_line_error(TraceError, "no forward-compute", lambda: import_kineto(directory))  # not without the rules
    imported, report = import_kineto(directory, mapping=read_mapping(mapping))
    same_ops(job[1], imported)
    assert report.method == {"mapping file + annotations": 4}


def test_layout_options_replace_group_names(job, tmp_path):
    directory = copy_job(job, tmp_path)

    def anonymous(document):
        for config in document["distributedInfo"]["pg_config"]:
            config["pg_desc"] = "undefined"

    for path in directory.iterdir():
        edit(path, anonymous)
    message = one_line_error(UsageError, "give the layout", lambda: import_kineto(directory))
    assert "--" not in message  # the library names no command-line option
    imported, report = import_kineto(directory, layout=Layout(pp=2, dp=2))
    same_ops(job[1], imported)
    assert report.topology.source.startswith("layout options")
    with pytest.raises(ArgumentError, match="^order 'tp-pp'"):
        Layout(pp=2, dp=2, order="tp-pp")
    one_line_error(UsageError, "8 ranks", lambda: import_kineto(directory, layout=Layout(pp=2, dp=4)))


def test_layout_order():
    assert Layout(pp=2, dp=2, tp=2).coordinates(5) == {"tp": 1, "cp": 0, "ep": 0, "dp": 0, "pp": 1}
    assert Layout(pp=2, dp=2, tp=2, order="tp-pp-dp").coordinates(5) == {"tp": 1, "pp": 0, "dp": 1}


def test_tensor_parallel_peers_are_ignored(job, tmp_path):
    directory = copy_job(job, tmp_path)
    peer = directory / "rank0-tp1.json"
    shutil.copy(directory / "rank0.json", peer)

    def world_of_8(document):  # tp 2: ranks 4-7 are the TP peers of ranks 0-3
        info = document["distributedInfo"]
        info["world_size"] = 8
        for config in info["pg_config"]:
            if config["pg_desc"] == "default_pg":
                config["ranks"], config["pg_size"] = list(range(8)), 8

    def as_tp_peer(document):  # rank 4: rank 0's groups, of the other TP index
        info = document["distributedInfo"]
        info["rank"] = 4
        for config in info["pg_config"]:
            if config["pg_desc"] != "default_pg":
                config["ranks"] = [r + 4 for r in config["ranks"]]
                config["pg_name"] = f"{config['pg_name']}+tp1"

    for path in directory.iterdir():
        edit(path, world_of_8)
    edit(peer, as_tp_peer)
    imported, report = import_kineto(directory)
    assert report.topology.ignored == [4] and report.topology.tp == 2
    assert imported.meta.world_size == 8 and imported.meta.tp_size == 2


def test_incomplete_step_is_dropped_and_reported(job, tmp_path):
    directory = copy_job(job, tmp_path)

    def drop_one(document):
        steps = sorted(
            (e for e in document["traceEvents"] if e.get("name", "").startswith("ProfilerStep#")), key=lambda e: e["ts"]
        )
        s1 = steps[1]
        victim = next(
            e
            for e in document["traceEvents"]
            if e.get("name") == "forward-compute mb=2" and s1["ts"] <= e["ts"] < s1["ts"] + s1["dur"]
        )
        document["traceEvents"].remove(victim)

    edit(directory / "rank2.json", drop_one)
    imported, report = import_kineto(directory)
    assert report.steps == [0, 2]
    assert list(report.dropped_steps) == [1] and "rank 2" in report.dropped_steps[1]
    assert list(imported.steps) == [0, 2]


def test_step_recorded_by_some_ranks_only_is_dropped_and_reported(job, tmp_path):
    """Rank 3's profiler stopped a step early: step 2 is left out, and the report says why."""
    directory = copy_job(job, tmp_path)

    def stop_early(document):
        document["traceEvents"] = [e for e in document["traceEvents"] if e.get("name") != "ProfilerStep#2"]

    edit(directory / "rank3.json", stop_early)
    imported, report = import_kineto(directory)
    assert report.steps == [0, 1] and list(imported.steps) == [0, 1]
    assert report.dropped_steps == {2: "recorded by 3 of 4 ranks, not by rank(s) 3"}
    assert "dropped 1: 2 (recorded by 3 of 4 ranks, not by rank(s) 3)" in "\n".join(report.lines())


def test_clock_offsets_between_hosts(tmp_path):
    frame, meta = synthesize(name="k", dp=2, pp=2, microbatches=4, steps=3, seed=5)
    trace = Trace.from_frame(frame, meta)
    write_kineto(trace, tmp_path / "same", ranks_per_host=2)
    write_kineto(trace, tmp_path / "skewed", ranks_per_host=2, clock_skew={1: 0.05})  # stage 1's host 50 ms late
    reference, _ = import_kineto(tmp_path / "same")
    imported, report = import_kineto(tmp_path / "skewed")
    clocks = report.clocks
    assert clocks.violations_before > 0 and clocks.violations_after == 0
    assert clocks.offsets["synth-node0"] == 0
    assert abs(clocks.offsets["synth-node1"] / 1e9 + 0.05) < 1e-3
    assert "offsets applied" in "\n".join(report.lines())
    x, y = ordered(reference), ordered(imported)
    np.testing.assert_allclose(y.duration, x.duration, atol=2e-9)
    np.testing.assert_allclose(y.start_ts - y.start_ts.min(), x.start_ts - x.start_ts.min(), atol=1e-3)


# -- errors: one line naming the file ------------------------------------------------------


def test_missing_rank(job, tmp_path):
    directory = copy_job(job, tmp_path)
    (directory / "rank3.json").unlink()
    message = one_line_error(TraceError, "missing", lambda: import_kineto(directory))
    assert "rank 3 (dp_rank 1, stage 1)" in message and str(directory) in message


def test_single_rank_trace_set(job):
    message = one_line_error(TraceError, "single rank", lambda: import_kineto([job[0] / "rank1.json"]))
    assert "rank1.json" in message


def test_two_jobs_in_one_directory(job, tmp_path):
    directory = copy_job(job, tmp_path)
    other = tmp_path / "other"
    frame, meta = synthesize(name="o", dp=4, pp=2, microbatches=4, steps=2)
    write_kineto(Trace.from_frame(frame, meta), other)
    shutil.copy(other / "rank5.json", directory / "rank5.json")
    one_line_error(TraceError, "two jobs", lambda: import_kineto(directory))
    (directory / "rank5.json").unlink()
    shutil.copy(other / "rank0.json", directory / "zz-rank0.json")
    edit(directory / "zz-rank0.json", lambda d: d["distributedInfo"].update(world_size=4))
    message = one_line_error(TraceError, "both rank 0", lambda: import_kineto(directory))
    assert "zz-rank0.json" in message


def mixed(tmp_path: Path, first: Path, second: Path, ranks_of_second=(2, 3)) -> Path:
    """A directory with the files of ``first`` but those of ``ranks_of_second`` taken from ``second``."""
    directory = tmp_path / "mixed"
    directory.mkdir()
    for path in first.iterdir():
        rank = int(path.name.split(".")[0].removeprefix("rank"))
        shutil.copy((second if rank in ranks_of_second else first) / path.name, directory / path.name)
    return directory


def test_two_runs_with_other_seeds_in_one_directory(job, tmp_path):
    """Same layout, steps, host and times, no rank twice: on one host a recv ends before its send."""
    frame, meta = synthesize(name="k", dp=2, pp=2, microbatches=4, steps=3, seed=6)
    write_kineto(Trace.from_frame(frame, meta), tmp_path / "seed6")
    directory = mixed(tmp_path, job[0], tmp_path / "seed6")
    message = one_line_error(TraceError, "look like different jobs or runs", lambda: import_kineto(directory))
    assert "ends" in message and "before the" in message and "0.1 ms allowed" in message
    assert any(f"rank{r}.json" in message for r in (0, 1)) and any(f"rank{r}.json" in message for r in (2, 3))
    assert import_kineto(tmp_path / "seed6")[1].clocks.violations_before == 0  # each run alone is causal


def test_files_without_host_names_are_not_held_to_one_clock(job, tmp_path):
    """Without host_name, ranks may be on several machines: a recv before its send is reported, not refused."""
    frame, meta = synthesize(name="k", dp=2, pp=2, microbatches=4, steps=3, seed=6)
    write_kineto(Trace.from_frame(frame, meta), tmp_path / "seed6")
    directory = mixed(tmp_path, job[0], tmp_path / "seed6")
    for path in directory.iterdir():
        edit(path, lambda document: document.pop("host_name"))
    _, report = import_kineto(directory)
    assert report.clocks.violations_before > 0


def test_two_runs_told_apart_by_steps_groups_and_settings(job, tmp_path):
    directory = copy_job(job, tmp_path)

    def renumber(document):  # another run of the profiler: steps 10-12
        for event in document["traceEvents"]:
            if event.get("name", "").startswith("ProfilerStep#"):
                event["name"] = f"ProfilerStep#{int(event['name'][13:]) + 10}"

    edit(directory / "rank2.json", renumber)
    message = one_line_error(TraceError, "share no ProfilerStep number", lambda: import_kineto(directory))
    assert "rank0.json (rank 0) and rank2.json (rank 2)" in message and "steps 0-2 and 10-12" in message

    directory = copy_job(job, tmp_path / "later")
    edit(directory / "rank3.json", lambda d: d.update(baseTimeNanoseconds=d["baseTimeNanoseconds"] + 10**10))
    message = one_line_error(TraceError, r"ProfilerStep#\d 9\.\d+ s apart", lambda: import_kineto(directory))
    assert "rank3.json (rank 3)" in message and "different jobs or runs" in message

    directory = copy_job(job, tmp_path / "groups")

    def other_order(document):  # rank 1 of a job numbered dp-first: its PP group is [1, 3] there too,
        for config in document["distributedInfo"]["pg_config"]:  # but its DP group holds rank 2
            if config["pg_desc"] == "DATA_PARALLEL_GROUP":
                config["ranks"] = [1, 2]

    edit(directory / "rank1.json", other_order)
    message = one_line_error(TraceError, "two jobs or runs", lambda: import_kineto(directory))
    assert "rank0.json (rank 0) lists DATA_PARALLEL_GROUP [0, 1] (pg_name 5) holding rank 1" in message
    assert "rank1.json (rank 1) lists DATA_PARALLEL_GROUP as [1, 2]" in message

    directory = copy_job(job, tmp_path / "nccl")
    edit(directory / "rank3.json", lambda d: d["distributedInfo"].update(nccl_version="2.18.3"))
    message = one_line_error(TraceError, "nccl_version", lambda: import_kineto(directory))
    assert "rank3.json" in message and "two jobs" in message


def test_cli_two_synth_runs_in_one_directory(tmp_path):
    runner = CliRunner()
    for seed in (1, 2):
        result = runner.invoke(
            app,
            ["synth", "--out", str(tmp_path / str(seed)), "--name", "j", "--dp", "2", "--pp", "2"]
            + ["--microbatches", "4", "--steps", "3", "--seed", str(seed), "--format", "kineto"],
        )
        assert result.exit_code == 0, result.output
    directory = mixed(tmp_path, tmp_path / "1" / "j", tmp_path / "2" / "j")
    result = runner.invoke(app, ["import", "kineto", str(directory), "--out", str(tmp_path / "o"), "--name", "m"])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "look like different jobs or runs" in lines[0], result.stderr
    assert not (tmp_path / "o" / "trace-m.parquet").exists()


@pytest.mark.parametrize(
    "damage,match",
    [
        (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "truncated"),
        (lambda p: p.write_text("rank 0 was here\n"), "not valid JSON"),
        (lambda p: p.write_text('{"traceEvents": 3}'), "not a PyTorch profiler trace"),
        (lambda p: p.write_bytes(gzip.compress(p.read_bytes())[:4000]), "gzip"),
    ],
)
def test_broken_file(job, tmp_path, damage, match):
    directory = copy_job(job, tmp_path)
    damage(directory / "rank2.json")
    message = one_line_error(TraceError, match, lambda: import_kineto(directory))
    assert "rank2.json" in message


def test_trace_without_steps(job, tmp_path):
    directory = copy_job(job, tmp_path)
    edit(
        directory / "rank1.json",
        lambda d: d.update(
            traceEvents=[e for e in d["traceEvents"] if not e.get("name", "").startswith("ProfilerStep#")]
        ),
    )
    message = one_line_error(TraceError, "no ProfilerStep", lambda: import_kineto(directory))
    assert "rank1.json" in message


def strip_annotations(document):
    """Rename every op annotation (not the ProfilerStep ranges) to a name no rule knows."""
    for event in document["traceEvents"]:
        if event.get("cat") == "user_annotation" and not event["name"].startswith("ProfilerStep#"):
            event["name"] = "range"


def test_unannotated_trace_without_stacks(job, tmp_path):
    directory = copy_job(job, tmp_path)

    edit(directory / "rank0.json", strip_annotations)
    message = one_line_error(TraceError, "no op annotations", lambda: import_kineto(directory))
    assert "rank0.json" in message and "with_stack" in message


def test_no_distributed_info(job, tmp_path):
    directory = copy_job(job, tmp_path)
    edit(directory / "rank0.json", lambda d: d.pop("distributedInfo"))
    assert "rank0.json" in one_line_error(TraceError, "distributedInfo", lambda: import_kineto(directory))


@pytest.mark.parametrize(
    "rules,match",
    [
        ("rules:\n  - {match: 'fwd(', optype: forward-compute}\n", "rule 1: invalid regular expression"),
        (
            "rules:\n  - {match: 'a', optype: forward-compute}\n  - {match: 'b', optype: fwd}\n",
            "rule 2: unknown optype",
        ),
        ("rules:\n  - {match: '(?P<micro>\\d+)', optype: forward-compute}\n", "rule 1: named group"),
        ("rules:\n  - {match: 'a', optype: gc, cat: kernel}\n", "rule 1: unknown key"),
        ("rules:\n  - {optype: gc}\n", "rule 1: expected a mapping with 'match'"),
        (
            "rules:\n  - {match: 'a', optype: gc}\n  - {match: 'opt (?P<mb>\\d+)', optype: optimizer}\n",
            "rule 2: .*gives a microbatch to optimizer",
        ),
        ("rules:\n  - {match: 'dp (?P<mb>\\d+)', optype: grads-reduce-scatter}\n", "rule 1: .*microbatch"),
        ("rules: []\n", "a mapping file holds"),
    ],
)
def test_invalid_mapping_file(tmp_path, rules, match):
    path = tmp_path / "map.yaml"
    path.write_text(rules)
    message = one_line_error(UsageError, match, lambda: read_mapping(path))
    assert str(path) in message


def test_mapping_group_capturing_no_number(job, tmp_path):
    """A rule whose mb group captures text: one line naming the mapping file, the rule and the event."""
    directory = copy_job(job, tmp_path)

    def rename(document):
        for event in document["traceEvents"]:
            if event.get("name", "").startswith("forward-compute mb="):
                event["name"] = "fwd " + event["name"].rpartition("=")[2]

    for path in directory.iterdir():
        edit(path, rename)
    path = tmp_path / "map.yaml"
    path.write_text("rules:\n  - {match: 'x', optype: gc}\n  - {match: '(?P<mb>fwd) \\d+', optype: forward-compute}\n")
    message = one_line_error(UsageError, "rule 2", lambda: import_kineto(directory, mapping=read_mapping(path)))
    assert str(path) in message and "the event 'fwd " in message and "rank0.json" in message
    assert "(?P<mb>fwd)" in message and "its mb 'fwd' is not a number below 2^31" in message


def test_convention_number_too_large(job, tmp_path):
    directory = copy_job(job, tmp_path)
    huge = "forward-compute mb=99999999999"

    def rename(document):
        event = next(e for e in document["traceEvents"] if e.get("name") == "forward-compute mb=1")
        event["name"] = huge

    edit(directory / "rank1.json", rename)
    message = one_line_error(TraceError, "not a number below 2\\^31", lambda: import_kineto(directory))
    assert "rank1.json" in message and huge in message


# -- entry points ---------------------------------------------------------------------------


def test_open_trace_dispatches(job, tmp_path):
    opened = open_trace(job[0])
    assert opened.meta.trial_name == "job" and opened.meta.dp_size == 2 and opened.meta.pp_size == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(UsageError, "without .json", lambda: open_trace(empty))


def test_cli_import_then_analyze(job, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["import", "kineto", str(job[0]), "--out", str(tmp_path / "imp"), "--name", "k"])
    assert result.exit_code == 0, result.stderr
    assert "dp 2 x pp 2" in result.stdout
    assert (tmp_path / "imp" / "trace-k.parquet").is_file() and (tmp_path / "imp" / "meta-k.yaml").is_file()
    loaded = open_trace(tmp_path / "imp" / "trace-k.parquet")
    same_ops(job[1], loaded)
    result = runner.invoke(
        app, ["analyze", str(job[0]), "--out", str(tmp_path / "a"), "--no-plots", "-q", "--no-per-worker"]
    )
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "a" / "result-job.json").is_file()


def test_cli_import_errors_are_one_line(job, tmp_path):
    directory = copy_job(job, tmp_path)
    (directory / "rank0.json").unlink()
    result = CliRunner().invoke(app, ["import", "kineto", str(directory), "--out", str(tmp_path / "o"), "--name", "k"])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("graphwia: error:") and "rank 0" in lines[0], result.stderr
    result = CliRunner().invoke(
        app, ["import", "kineto", str(directory), "--out", str(tmp_path / "o"), "--name", "k", "--pp", "2"]
    )
    assert result.exit_code == 2 and "--pp and --dp" in result.stderr


def test_cli_import_checks_the_name_first(tmp_path):
    """--name names the output files: a bad one is a usage error before any input is read."""
    result = CliRunner().invoke(
        app, ["import", "kineto", str(tmp_path / "absent"), "--out", str(tmp_path / "o"), "--name", "../x"]
    )
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--name '../x' is not a valid name" in lines[0], result.stderr


def test_library_errors_name_no_command_line_option(job, tmp_path):
    """The library says "a mapping file", "the layout"; the command line words its own options."""
    directory = copy_job(job, tmp_path)

    edit(directory / "rank0.json", strip_annotations)
    assert "--" not in one_line_error(TraceError, "mapping file", lambda: import_kineto(directory))
    directory = copy_job(job, tmp_path / "renamed")
    for path in directory.iterdir():
        edit(
            path,
            lambda d: [e.update(name="fwd") for e in d["traceEvents"] if e.get("name", "").startswith("forward-c")],
        )
    assert "--" not in one_line_error(TraceError, "mapping file", lambda: import_kineto(directory))


def test_ranks_read_on_local_processes_and_on_dask(job):
    """The same import with files read by two local processes and by a dask cluster's workers."""
    distributed = pytest.importorskip("distributed")
    here, _ = import_kineto(job[0])
    local, _ = import_kineto(job[0], workers=2)
    same_ops(here, local, atol=0)
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    ) as cluster:
        remote, _ = import_kineto(job[0], scheduler=cluster.scheduler_address)
    same_ops(here, remote, atol=0)
    one_line_error(UsageError, "not a scheduler address", lambda: import_kineto(job[0], scheduler="nonsense"))


def test_clock_offset_known_answer():
    """Host 1 runs 50 ms late: its forward recv ends 'before' the send started by up to 49.5 ms and
    its backward send 'starts' up to 50.5 ms after the recv on host 0 ended: midpoint 50 ms."""
    from graphwia.trace.kineto.clocks import estimate_offsets

    ms = 1_000_000
    ops = {  # stage 0 on host 0 sends forward at 10 ms; stage 1 (host 1) receives, and sends backward
        "dp_rank": np.zeros(4, np.int64),
        "stage": np.array([0, 1, 1, 0]),
        "step": np.zeros(4, np.int64),
        "optype": np.array([4, 5, 6, 7]),  # forward-send, forward-recv, backward-send, backward-recv
        "mb": np.zeros(4, np.int64),
        "chunk": np.full(4, -1),
        "host": np.array([0, 1, 1, 0]),
        "start": np.array([10, 10 - 50 + 0.2, 20 - 50, 19.4]) * ms,
        "end": np.array([10.5, 10.5 - 50, 20.4 - 50, 20.5]) * ms,
    }
    ops["start"], ops["end"] = ops["start"].astype(np.int64), ops["end"].astype(np.int64)
    report = estimate_offsets(ops, ["a", "b"], 0, pp=2, vpp=1)
    assert report.pairs == 2 and report.violations_before == 1 and report.violations_after == 0
    assert report.offsets["a"] == 0 and abs(report.offsets["b"] - 50 * ms) <= 0.5 * ms

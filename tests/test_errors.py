"""Bad input gets one clear line, the right exit code, and no traceback (issue 6).

Every case runs the ``graphwia analyze`` CLI (in-process with typer's CliRunner,
a few as a subprocess) on a small synthetic trace with one defect, and checks
the exit code (2: usage, 1: bad data), that no traceback is printed, that the
error is a single ``graphwia: error:`` line, and that it names the culprit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from graphwia.cli.main import app
from graphwia.synth.generate import synthesize
from tests.conftest import DATA, requires_data

RUNNER = CliRunner()
GRAPHWIA = Path(sys.executable).with_name("graphwia")


# -- helpers -----------------------------------------------------------------------------


def synth(dp=2, pp=2, vpp=1, microbatches=3, steps=2, seed=1):
    """A valid synthetic trace and its metadata dict (fresh copies)."""
    frame, meta = synthesize(dp=dp, pp=pp, vpp=vpp, microbatches=microbatches, steps=steps, seed=seed, name="t")
    return frame.copy(), dict(meta)


def write_case(
    directory: Path, frame: pd.DataFrame | None, meta: dict | str | None, fmt: str = "parquet", raw: bytes | None = None
) -> Path:
    """Write ``trace-t.<fmt>`` (frame, or raw bytes) and ``meta-t.yaml``; return the trace path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"trace-t.{fmt}"
    if raw is not None:
        path.write_bytes(raw)
    elif frame is not None:
        if fmt == "csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
    if meta is not None:
        (directory / "meta-t.yaml").write_text(meta if isinstance(meta, str) else yaml.safe_dump(meta))
    return path


def analyze(trace: Path, *args: str, out: Path | None = None):
    out = out or trace.parent / "out"
    return RUNNER.invoke(app, ["analyze", str(trace), "--out", str(out), "-q", "--no-plots", *args])


def assert_clean_failure(result, code: int, *culprits: str) -> str:
    """Exit ``code``, no traceback, exactly one ``graphwia: error:`` line naming every culprit."""
    output = result.stdout + result.stderr
    assert result.exit_code == code, output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("graphwia: error: "), result.stderr
    assert not lines[0].startswith("graphwia: error: unexpected "), lines[
        0
    ]  # every bad input is a foreseen GraphwiaError
    for culprit in culprits:
        assert culprit in lines[0], (culprit, lines[0])
    return lines[0]


def sample_row(frame, optype, seq_id, stage=0, dp_rank=0, step=0):
    return (
        (frame["optype"] == optype)
        & (frame["seq_id"] == seq_id)
        & (frame["stage"] == stage)
        & (frame["dp_rank"] == dp_rank)
        & (frame["step"] == step)
    )


# -- files ---------------------------------------------------------------------------------


def test_valid_trace_runs(tmp_path):
    frame, meta = synth()
    result = analyze(write_case(tmp_path, frame, meta))
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "out" / "result-t.json").is_file()
    assert "error" not in result.stderr


def test_missing_trace_file(tmp_path):
    _, meta = synth()
    trace = write_case(tmp_path, None, meta)
    assert_clean_failure(analyze(trace), 1, str(trace), "trace file not found")


def test_missing_metadata_file(tmp_path):
    frame, _ = synth()
    trace = write_case(tmp_path, frame, None)
    assert_clean_failure(analyze(trace), 1, str(tmp_path / "meta-t.yaml"), "metadata file not found")


def test_explicit_meta_option_missing(tmp_path):
    frame, meta = synth()
    trace = write_case(tmp_path, frame, meta)
    missing = tmp_path / "nope.yaml"
    assert_clean_failure(analyze(trace, "--meta", str(missing)), 1, str(missing), "not found")


@pytest.mark.parametrize("raw", [b"", b"hello, this is not parquet", b"PAR1" + b"\0" * 64])
def test_not_a_parquet_file(tmp_path, raw):
    _, meta = synth()
    trace = write_case(tmp_path, None, meta, raw=raw)
    assert_clean_failure(analyze(trace), 1, str(trace), "not a readable parquet file")


def test_truncated_parquet(tmp_path):
    frame, meta = synth()
    whole = frame.to_parquet(index=False)
    trace = write_case(tmp_path, None, meta, raw=whole[: len(whole) * 2 // 3])
    assert_clean_failure(analyze(trace), 1, str(trace), "not a readable parquet file")


def test_unsupported_extension(tmp_path):
    frame, meta = synth()
    trace = write_case(tmp_path, None, meta, fmt="xlsx", raw=frame.to_json().encode())
    assert_clean_failure(analyze(trace), 1, str(trace), "unsupported trace format", ".xlsx")


def test_binary_garbage_csv(tmp_path):
    _, meta = synth()
    trace = write_case(tmp_path, None, meta, fmt="csv", raw=bytes(range(256)) * 4)
    assert_clean_failure(analyze(trace), 1, str(trace))


def test_valid_csv_runs(tmp_path):
    frame, meta = synth()
    result = analyze(write_case(tmp_path, frame, meta, fmt="csv"))
    assert result.exit_code == 0, result.stderr


# -- columns and values ------------------------------------------------------------------------


def test_missing_column(tmp_path):
    frame, meta = synth()
    trace = write_case(tmp_path, frame.drop(columns=["mb_id", "gmc"]), meta)
    assert_clean_failure(analyze(trace), 1, str(trace), "missing column(s)", "gmc", "mb_id")


def test_empty_trace(tmp_path):
    frame, meta = synth()
    trace = write_case(tmp_path, frame.iloc[:0], meta)
    assert_clean_failure(analyze(trace), 1, str(trace), "no rows")


def test_csv_string_in_numeric_column(tmp_path):
    frame, meta = synth()
    frame["duration"] = frame["duration"].astype(object)
    frame.loc[7, "duration"] = "oops"
    row = frame.loc[7]
    trace = write_case(tmp_path, frame, meta, fmt="csv")
    assert_clean_failure(
        analyze(trace),
        1,
        str(trace),
        "column duration",
        "row 7",
        "'oops'",
        f"{row['optype']} seq_id {row['seq_id']}",
        f"dp_rank {row['dp_rank']}",
        f"stage {row['stage']}",
        f"step {row['step']}",
    )


def test_csv_string_in_integer_column(tmp_path):
    frame, meta = synth()
    frame["seq_id"] = frame["seq_id"].astype(object)
    frame.loc[3, "seq_id"] = "three"
    trace = write_case(tmp_path, frame, meta, fmt="csv")
    assert_clean_failure(analyze(trace), 1, str(trace), "column seq_id", "row 3", "'three'")


def test_wrong_column_type(tmp_path):
    frame, meta = synth()
    frame["stage"] = frame["stage"] > 0  # booleans are not ranks
    trace = write_case(tmp_path, frame, meta)
    assert_clean_failure(analyze(trace), 1, str(trace), "column stage", "bool")


def test_fractional_integer_column(tmp_path):
    frame, meta = synth()
    frame["dp_rank"] = frame["dp_rank"].astype(float)
    frame.loc[5, "dp_rank"] = 0.5
    trace = write_case(tmp_path, frame, meta)
    assert_clean_failure(analyze(trace), 1, str(trace), "column dp_rank", "row 5", "0.5")


@pytest.mark.parametrize("column,value", [("start_ts", np.nan), ("duration", np.inf), ("duration", -np.inf)])
def test_nan_inf_value(tmp_path, column, value):
    frame, meta = synth()
    frame.loc[11, column] = value
    row = frame.loc[11]
    trace = write_case(tmp_path, frame, meta)
    assert_clean_failure(
        analyze(trace),
        1,
        str(trace),
        f"column {column}",
        "NaN/inf",
        "row 11",
        f"{row['optype']} seq_id {row['seq_id']}",
        f"step {row['step']}",
    )


def test_nan_in_integer_column(tmp_path):
    frame, meta = synth()
    frame["mb_id"] = frame["mb_id"].astype(float)
    frame.loc[2, "mb_id"] = np.nan
    trace = write_case(tmp_path, frame, meta)
    assert_clean_failure(analyze(trace), 1, str(trace), "column mb_id", "row 2")


def test_negative_duration(tmp_path):
    frame, meta = synth()
    row = frame.loc[9]
    frame.loc[9, "duration"] = -0.5
    trace = write_case(tmp_path, frame, meta)
    assert_clean_failure(
        analyze(trace),
        1,
        str(trace),
        "negative",
        "duration",
        f"{row['optype']} seq_id {row['seq_id']} on worker (dp_rank {row['dp_rank']}, "
        f"stage {row['stage']}) in step {row['step']}",
    )


def test_duplicated_op_instance(tmp_path):
    frame, meta = synth()
    row = frame.loc[13]
    trace = write_case(tmp_path, pd.concat([frame, frame.loc[[13]]], ignore_index=True), meta)
    assert_clean_failure(
        analyze(trace),
        1,
        str(trace),
        "duplicated op instance",
        f"{row['optype']} seq_id {row['seq_id']} on worker (dp_rank {row['dp_rank']}, "
        f"stage {row['stage']}) in step {row['step']}",
    )


def test_unknown_op_type(tmp_path):
    frame, meta = synth()
    frame["optype"] = frame["optype"].astype(str)
    frame.loc[4, "optype"] = "flash-attention"
    trace = write_case(tmp_path, frame, meta)
    assert_clean_failure(analyze(trace), 1, str(trace), "unknown op type", "'flash-attention'", "row 4")


def test_missing_op_type(tmp_path):
    frame, meta = synth()
    frame["optype"] = frame["optype"].astype(object)
    frame.loc[4, "optype"] = None
    trace = write_case(tmp_path, frame, meta)
    assert_clean_failure(analyze(trace), 1, str(trace), "column optype", "missing", "row 4")


# -- metadata ---------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["dp_size", "world_size", "trial_name"])
def test_metadata_missing_field(tmp_path, field):
    frame, meta = synth()
    del meta[field]
    trace = write_case(tmp_path, frame, meta)
    assert_clean_failure(analyze(trace), 1, "meta-t.yaml", "missing field", field)


@pytest.mark.parametrize("field,value", [("pp_size", 0), ("dp_size", -2), ("tp_size", "four"), ("vpp_size", 1.5)])
def test_metadata_non_positive_or_non_integer_size(tmp_path, field, value):
    frame, meta = synth()
    meta[field] = value
    trace = write_case(tmp_path, frame, meta)
    assert_clean_failure(analyze(trace), 1, "meta-t.yaml", field, str(value))


def test_metadata_world_size_not_product(tmp_path):
    frame, meta = synth()
    meta["world_size"] = 6
    trace = write_case(tmp_path, frame, meta)
    assert_clean_failure(analyze(trace), 1, "meta-t.yaml", "world_size 6", "= 4")


@pytest.mark.parametrize("text", ["dp_size: [1, 2", "- just\n- a list\n", "42\n"])
def test_metadata_not_a_mapping(tmp_path, text):
    frame, _ = synth()
    trace = write_case(tmp_path, frame, text)
    assert_clean_failure(analyze(trace), 1, "meta-t.yaml")


def _resized(meta: dict, **sizes) -> dict:
    meta = dict(meta, **sizes)
    meta["world_size"] = meta["dp_size"] * meta["pp_size"] * meta["tp_size"] * meta["dsp_size"]
    return meta


@pytest.mark.parametrize(
    "sizes,culprits",
    [
        ({"dp_size": 1}, ["column dp_rank holds 1", "dp_size=1"]),
        ({"dp_size": 3}, ["dp_size=3", "dp_rank(s) 2 have no ops"]),
        ({"pp_size": 1}, ["column stage holds 1", "pp_size=1"]),
        ({"pp_size": 4}, ["pp_size=4", "stage(s) 2-3 have no ops"]),
        ({"vpp_size": 2}, ["vpp_size=2", "stage 0 has ops of model chunk(s) 0 only"]),
    ],
)
def test_metadata_disagrees_with_trace(tmp_path, sizes, culprits):
    frame, meta = synth()
    trace = write_case(tmp_path, frame, _resized(meta, **sizes))
    assert_clean_failure(analyze(trace), 1, str(trace), *culprits)


@pytest.mark.parametrize(
    "vpp,culprits",
    [
        (1, ["column mc holds 1", "vpp_size=1"]),
        (3, ["vpp_size=3", "model chunk(s) 0-1 only"]),
    ],
)
def test_metadata_vpp_disagrees_with_interleaved_trace(tmp_path, vpp, culprits):
    frame, meta = synth(dp=1, pp=2, vpp=2, microbatches=2)
    trace = write_case(tmp_path, frame, _resized(meta, vpp_size=vpp))
    assert_clean_failure(analyze(trace), 1, str(trace), *culprits)


# -- the trace does not fit the model -----------------------------------------------------------------


def test_dp_rank_missing_entirely(tmp_path):
    frame, meta = synth(dp=3)
    trace = write_case(tmp_path, frame[frame["dp_rank"] != 1], meta)
    assert_clean_failure(analyze(trace), 1, str(trace), "dp_size=3", "dp_rank(s) 1 have no ops")


def test_op_missing_on_one_worker(tmp_path):
    frame, meta = synth()
    drop = sample_row(frame, "forward-compute", 1, stage=1, dp_rank=1, step=1)
    trace = write_case(tmp_path, frame[~drop], meta)
    assert_clean_failure(
        analyze(trace), 1, str(trace), "forward-compute seq_id 1 is missing on worker (dp_rank 1, stage 1) in step 1"
    )


def test_worker_missing_in_one_step(tmp_path):
    frame, meta = synth()
    drop = (frame["step"] == 1) & (frame["dp_rank"] == 1) & (frame["stage"] == 0)
    trace = write_case(tmp_path, frame[~drop], meta)
    assert_clean_failure(analyze(trace), 1, str(trace), "missing on worker (dp_rank 1, stage 0) in step 1")


def test_extra_op_not_in_the_schedule(tmp_path):
    frame, meta = synth()
    extra = frame[sample_row(frame, "gc", 0, stage=1, dp_rank=1, step=1)].assign(seq_id=1)
    trace = write_case(tmp_path, pd.concat([frame, extra], ignore_index=True), meta)
    assert_clean_failure(
        analyze(trace),
        1,
        str(trace),
        "gc seq_id 1 on worker (dp_rank 1, stage 1) in step 1",
        "not run by the sample worker",
    )


@pytest.mark.parametrize(
    "pp,stage,culprits",
    [
        # a middle stage must have one send per compute
        (3, 1, ["stage 1: 2 launched forward-send op(s) for 3 forward-compute op(s)", "missing in the middle"]),
        # an edge stage may have one fewer, but then its peer's recvs cannot be paired
        (2, 0, ["stage 0: 2 launched forward-send op(s) but stage 1 has 3 launched forward-recv op(s)"]),
    ],
)
def test_unpairable_p2p(tmp_path, pp, stage, culprits):
    frame, meta = synth(dp=1, pp=pp, microbatches=3)
    drop = sample_row(frame, "forward-send", 1, stage=stage)
    trace = write_case(tmp_path, frame[~drop], meta)
    assert_clean_failure(
        analyze(trace),
        1,
        str(trace),
        *culprits,
        "cannot be paired" if pp == 2 else "forward-send",
        "dp_rank 0 in step 0",
    )


def test_dependency_cycle_names_the_ops(tmp_path):
    # On stage 0's sample worker, the first backward compute is recorded before the first forward
    # compute. The inferred compute stream then runs backward 0 -> forward 0 -> forward-send 0 ->
    # (stage 1) forward 0 -> backward 0 -> backward-send 0 -> (stage 0) backward 0: a cycle.
    frame, meta = synth(dp=1, pp=2)
    forward = sample_row(frame, "forward-compute", 0)
    backward = sample_row(frame, "backward-compute", 0)
    frame.loc[backward, "start_ts"] = frame.loc[forward, "start_ts"].iloc[0] - 0.001
    trace = write_case(tmp_path, frame, meta)
    line = assert_clean_failure(
        analyze(trace),
        1,
        str(trace),
        "dependency cycle",
        "backward-compute seq_id 0 (dp_rank 0, stage 0, step 0)",
        "forward-send seq_id 0 (dp_rank 0, stage 0, step 0)",
        "backward-send seq_id 0 (dp_rank 0, stage 1, step 0)",
    )
    assert line.count(" -> ") >= 3


# -- usage and output ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec,culprits",
    [
        (["7-9"], ["--steps: selects no step", "steps present: 0-1"]),
        (["5"], ["step 5 is not in the trace", "steps present: 0-1"]),
        (["x"], ["--steps", "'x'"]),
        (["3-1"], ["--steps", "'3-1'", "empty"]),
    ],
)
def test_steps_that_select_nothing(tmp_path, spec, culprits):
    frame, meta = synth()
    trace = write_case(tmp_path, frame, meta)
    assert_clean_failure(analyze(trace, "--steps", *spec), 2, *culprits)


def test_out_under_a_regular_file(tmp_path):
    frame, meta = synth()
    trace = write_case(tmp_path, frame, meta)
    blocker = tmp_path / "blocker"
    blocker.write_text("I am a file")
    out = blocker / "out"
    assert_clean_failure(analyze(trace, out=out), 1, str(out), "cannot be written")


def test_output_file_path_is_a_directory(tmp_path):
    frame, meta = synth()
    trace = write_case(tmp_path, frame, meta)
    out = tmp_path / "out"
    (out / "ms-t.json").mkdir(parents=True)
    assert_clean_failure(analyze(trace, out=out), 1, str(out / "ms-t.json"), "cannot write output")
    assert not (out / "result-t.json").exists()  # all or nothing: no partial set of results
    assert not list(out.glob(".*.tmp"))


# -- warnings ------------------------------------------------------------------------------------


def warning_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("graphwia: warning: ")]


def test_clamped_launch_delay_and_base_mismatch_warn_once_each(tmp_path):
    # Every optimizer of step 1 recorded 50 ms before the clip it waits for ends (clock skew), the
    # one of worker (1, 1) 60 ms: the delays are clamped to 0, so the base simulation ends step 1
    # later than recorded.
    frame, meta = synth()
    optimizers = (frame["optype"] == "optimizer") & (frame["step"] == 1)
    frame.loc[optimizers, "start_ts"] -= 0.05
    frame.loc[sample_row(frame, "optimizer", 0, stage=1, dp_rank=1, step=1), "start_ts"] -= 0.01
    result = analyze(write_case(tmp_path, frame, meta))
    assert result.exit_code == 0, result.stderr
    assert "Traceback" not in result.stderr
    warnings = warning_lines(result)
    clamped = [w for w in warnings if "launch delay(s)" in w]
    base = [w for w in warnings if "base simulation" in w]
    assert len(clamped) == 1 and len(base) == 1, warnings
    assert "4 launch delay(s) <= -0.01 s set to 0" in clamped[0]
    assert "worst: optimizer seq_id 0 on worker (dp_rank 1, stage 1) in step 1" in clamped[0]
    assert "in 1 step(s); worst: step 1 (" in base[0]
    assert len(warnings) == len(result.stderr.strip().splitlines())  # nothing else on stderr


def test_clamped_transfer_time_warns_with_worst_op(tmp_path):
    # A forward-recv that "ends" 30 ms before its peer send started: its transfer time is clock noise.
    frame, meta = synth(dp=1, pp=2)
    recv = sample_row(frame, "forward-recv", 1, stage=1, step=1)
    send = sample_row(frame, "forward-send", 1, stage=0, step=1)
    send_start = frame.loc[send, "start_ts"].iloc[0]
    frame.loc[recv, "start_ts"] = send_start - 0.04
    frame.loc[recv, "duration"] = 0.01
    result = analyze(write_case(tmp_path, frame, meta))
    assert result.exit_code == 0, result.stderr
    transfer = [w for w in warning_lines(result) if "transfer time(s)" in w]
    assert len(transfer) == 1, result.stderr
    assert "forward-recv seq_id 1 on worker (dp_rank 0, stage 1) in step 1" in transfer[0]
    assert "-0.03" in transfer[0]


def test_clean_trace_has_no_warnings(tmp_path):
    frame, meta = synth()
    result = analyze(write_case(tmp_path, frame, meta))
    assert result.exit_code == 0
    assert warning_lines(result) == []


# -- as a real process ---------------------------------------------------------------------------


def run_process(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="100")
    return subprocess.run([str(GRAPHWIA), *args], capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.skipif(not GRAPHWIA.exists(), reason="graphwia entry point not installed in this venv")
def test_process_bad_data_exits_1_without_traceback(tmp_path):
    frame, meta = synth()
    frame.loc[3, "duration"] = -1.0
    trace = write_case(tmp_path, frame, meta)
    proc = run_process("analyze", str(trace), "--out", str(tmp_path / "out"), "--no-plots")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith(f"graphwia: error: {trace}: column duration has 1 negative value(s)")


@pytest.mark.skipif(not GRAPHWIA.exists(), reason="graphwia entry point not installed in this venv")
def test_process_usage_error_exits_2_and_debug_shows_traceback(tmp_path):
    frame, meta = synth()
    trace = write_case(tmp_path, frame, meta)
    proc = run_process("analyze", str(trace), "--out", str(tmp_path / "out"), "--no-plots", "--steps", "40")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "step 40 is not in the trace; steps present: 0-1" in proc.stderr
    debug = run_process("--debug", "analyze", str(trace), "--out", str(tmp_path / "out"), "--no-plots", "--steps", "40")
    assert debug.returncode != 0
    assert "Traceback" in debug.stderr and "UsageError" in debug.stderr


# -- real traces -------------------------------------------------------------------------------------


@requires_data
def test_real_trace_with_wrong_metadata(tmp_path):
    shutil.copy(DATA / "trace-ST.parquet", tmp_path / "trace-ST.parquet")
    meta = yaml.safe_load((DATA / "meta-ST.yaml").read_text())
    meta = _resized(meta, dp_size=4)
    (tmp_path / "meta-ST.yaml").write_text(yaml.safe_dump(meta))
    assert_clean_failure(
        analyze(tmp_path / "trace-ST.parquet"), 1, "trace-ST.parquet", "dp_size=4", "dp_rank(s) 2-3 have no ops"
    )


@requires_data
def test_real_trace_truncated(tmp_path):
    data = (DATA / "trace-ST.parquet").read_bytes()
    (tmp_path / "trace-ST.parquet").write_bytes(data[: len(data) // 2])
    shutil.copy(DATA / "meta-ST.yaml", tmp_path / "meta-ST.yaml")
    assert_clean_failure(analyze(tmp_path / "trace-ST.parquet"), 1, "trace-ST.parquet", "not a readable parquet")


def test_line_breaks_quoted_from_the_file_stay_on_one_line(tmp_path):
    frame, meta = synth()
    frame["optype"] = frame["optype"].astype(str)
    frame.loc[6, "optype"] = "forward-\ncompute\x0b"
    trace = write_case(tmp_path, frame, meta, fmt="csv")
    assert_clean_failure(analyze(trace), 1, str(trace), "unknown op type", "row 6")


@pytest.mark.parametrize(
    "args,message",
    [
        (["analyze"], "Missing argument 'trace'. (see 'graphwia analyze -h')"),
        (["analyze", "t.parquet", "--bogus"], "No such option: --bogus"),
        (
            ["synth", "--out", "o", "--name", "a", "--dp", "abc", "--pp", "1", "--microbatches", "1", "--steps", "1"],
            "Invalid value for '--dp': ",
        ),
        (["analyze", "t.parquet", "--decompose-threshold", "abc"], "Invalid value for '--decompose-threshold': "),
        (["nonsense"], "No such command 'nonsense'. (see 'graphwia -h')"),
    ],
)
def test_usage_errors_are_one_line_with_exit_code_2(args, message):
    """typer's own usage errors (a missing argument, an unknown option or command, a value of the wrong type)
    read as every other graphwia error: one line on stderr, no framed box, exit code 2."""
    result = RUNNER.invoke(app, args)
    assert result.exit_code == 2 and result.stdout == "", result.output
    assert result.stderr.startswith(f"graphwia: error: {message}") and result.stderr.count("\n") == 1, result.stderr


def test_no_arguments_still_shows_the_help():
    result = RUNNER.invoke(app, [])
    assert result.exit_code == 2 and "Usage: graphwia" in result.output and "graphwia: error" not in result.output


def test_the_installed_command_words_a_usage_error_in_one_line():
    script = Path(sys.executable).with_name("graphwia")
    if not script.exists():
        pytest.skip("graphwia is not installed beside this interpreter")
    result = subprocess.run([str(script), "whatif", "trace.parquet"], capture_output=True, text=True)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "graphwia: error: Missing option '--scenarios'. (see 'graphwia whatif -h')\n"

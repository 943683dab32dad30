"""Hostile and inconsistent inputs (issue 13, items 1, 3, 4, 5, 8, 9; issue 18, items 5 and 8).

Every case runs the CLI on a tiny synthetic trace with one defect and checks
the exit code, that stderr is one ``graphwia: error:`` line naming the
culprit (no traceback, nothing else), and that nothing was written outside
``--out`` (and, for a failure, nothing at all).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from graphwia.cli.main import app
from graphwia.errors import GraphwiaError
from graphwia.synth.generate import synthesize, write_synth, write_trace_files
from graphwia.utils.names import MAX_NAME_LENGTH, check_name, is_name
from tests.test_errors import assert_clean_failure, synth, write_case
from tests.test_synth import synth_command

RUNNER = CliRunner()


def run(*args) -> object:
    return RUNNER.invoke(app, [str(a) for a in args])


def analyze(trace: Path, *args, out: Path | None = None):
    out = out or trace.parent / "out"
    return run("analyze", trace, "--out", out, "-q", "--no-plots", *args)


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() or p.is_symlink()}


def assert_ok(result) -> None:
    assert result.exit_code == 0, result.stdout + result.stderr
    assert result.stderr == "", result.stderr


def strict_json(path: Path):
    """The file's JSON; NaN or Infinity (not JSON) fail the test."""

    def refuse(constant):
        raise AssertionError(f"{path.name}: non-JSON number {constant}")

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        return json.loads(handle.read(), parse_constant=refuse)


# -- 1. names from input files -------------------------------------------------------------------

HOSTILE_NAMES = [
    "x/../../../../escape",
    "..",
    "../escape",
    "",
    None,
    ["a", "b"],
    "two\nlines",
    "a b",
    "cost_$5_to_$6",
    "n" * (MAX_NAME_LENGTH + 1),
    "nul\x00name",
    "surrogate\udc80",
    ".hidden",
    7,
]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=lambda n: ascii(n)[:20])
def test_hostile_trial_name_is_refused_before_any_work(tmp_path, name):
    frame, meta = synth()
    meta["trial_name"] = name
    trace = write_case(tmp_path / "in", frame, meta)
    before = files_under(tmp_path)
    line = assert_clean_failure(analyze(trace, out=tmp_path / "out"), 1, "meta-t.yaml", "trial_name")
    assert "\x00" not in line and len(line) < 400
    assert files_under(tmp_path) == before  # nothing written anywhere, not even inside --out
    assert not (tmp_path.parent / "escape.json").exists()


def test_valid_odd_names_pass():
    for name in ("a", "A.b-c_9", "9" * MAX_NAME_LENGTH, "run.2024-01-01"):
        assert check_name(name, what="trial_name", source="f") == name


def test_fleet_manifest_entry_with_empty_job_name(tmp_path):
    write_synth(tmp_path, "ok", dp=1, pp=2, microbatches=2, steps=1)
    (tmp_path / "..parquet").write_bytes((tmp_path / "trace-ok.parquet").read_bytes())
    (tmp_path / "fleet.txt").write_text("trace-ok.parquet\n..parquet meta-ok.yaml\n")
    result = run("fleet", tmp_path / "fleet.txt", "--out", tmp_path / "out", "--workers", "1")
    assert_clean_failure(result, 2, "fleet.txt:2", "job name", "''")
    assert not (tmp_path / "out" / "jobs").exists()


def test_fleet_directory_with_a_hostile_file_name(tmp_path):
    write_synth(tmp_path, "ok", dp=1, pp=2, microbatches=2, steps=1)
    os.link(tmp_path / "trace-ok.parquet", tmp_path / "trace-a $b.parquet")
    result = run("fleet", tmp_path, "--out", tmp_path / "out", "--workers", "1")
    assert_clean_failure(result, 2, "trace-a $b.parquet", "job name", "'a $b'")


def test_fleet_job_with_a_hostile_trial_name_fails_alone(tmp_path):
    write_synth(tmp_path / "in", "good", dp=1, pp=2, microbatches=2, steps=1)
    write_synth(tmp_path / "in", "evil", dp=1, pp=2, microbatches=2, steps=1)
    meta = yaml.safe_load((tmp_path / "in" / "meta-evil.yaml").read_text())
    meta["trial_name"] = "x/../../../../escape"
    (tmp_path / "in" / "meta-evil.yaml").write_text(yaml.safe_dump(meta))
    out = tmp_path / "out"
    result = run("fleet", tmp_path / "in", "--out", out, "--workers", "1", "--no-plots", "-q")
    assert result.exit_code == 1
    errors = result.stderr.strip().splitlines()
    assert errors[0].startswith("graphwia: job evil failed:") and "trial_name" in errors[0]
    assert all(
        path.resolve().is_relative_to(out.resolve()) for path in files_under(tmp_path) - files_under(tmp_path / "in")
    )
    assert (out / "jobs" / "good" / "result-good.json").is_file() and not (tmp_path.parent / "escape.json").exists()


@pytest.mark.parametrize("name", ["../x", "a/b", "", "$HOME"])
def test_synth_name_is_checked(tmp_path, name):
    result = run(*synth_command(tmp_path / "out", name, dp=1))
    assert_clean_failure(result, 2, "--name", "not a valid name")
    assert not (tmp_path / "out").exists() and not (tmp_path / "x").exists()


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """One analysed tiny trace (no pictures are drawn from it in the name property test)."""
    from graphwia import analyze as run_analysis
    from graphwia.trace.optable import Trace

    frame, meta = synthesize(dp=1, pp=2, microbatches=2, steps=1, seed=4, name="t")
    trace = Trace.from_frame(frame, meta)
    return frame, meta, run_analysis(trace)


#: Pieces of paths and of what file systems choke on; names are drawn from arbitrary text and from these.
PATH_PIECES = ".. . / \\ ~ a Z9 - _ $ escape".split() + ["\x00", " ", "\n", "\u00e9", "\udc80"]
_PATHY = st.lists(st.sampled_from(PATH_PIECES), max_size=16).map("".join)
NAMES = st.one_of(
    st.text(max_size=120),
    _PATHY,
    _PATHY.map(lambda tail: "." + tail),  # leading dot: hidden, or the start of "..", "../"
    _PATHY.map(lambda tail: "../" + tail),
    _PATHY.map(lambda tail: "/" + tail),  # absolute
    st.builds(  # segments: a/../.., ..\\x
        lambda segments, separator: separator.join(segments),
        st.lists(st.sampled_from(["..", "..", "..", ".", "a", "escape", ""]), min_size=2, max_size=12),
        st.sampled_from(["/", "\\"]),
    ),
    st.builds(  # long: over any name limit, a file system's included, or only just within
        lambda piece, times, tail: piece * times + tail,
        st.sampled_from(["a", "../", "a/", "9.", "\u00e9"]),
        st.integers(min_value=30, max_value=300),
        _PATHY,
    ),
)

#: Paths written while recording (see :func:`_written_paths`): the argument of each audit event that writes.
_RECORDED: list[list] = []
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_PATH_ARGUMENTS = {  # audit event -> positions of the paths it creates, changes or removes
    "os.mkdir": (0,),
    "os.rename": (0, 1),  # os.replace too
    "os.remove": (0,),
    "os.rmdir": (0,),
    "os.symlink": (1,),
    "os.link": (1,),
    "os.truncate": (0,),
    "os.chmod": (0,),
    "os.utime": (0,),
}


def _audit(event: str, args: tuple) -> None:
    if not _RECORDED:
        return
    try:
        if event == "open":
            path, _, flags = args
            if isinstance(flags, int) and flags & _WRITE_FLAGS:
                _RECORDED[-1].append(path)
        elif event in _PATH_ARGUMENTS:
            _RECORDED[-1].extend(args[i] for i in _PATH_ARGUMENTS[event])
    except Exception:  # an audit hook that raises would fail the operation it watches
        pass


@contextlib.contextmanager
def _written_paths() -> Iterator[list]:
    """Every path opened for writing, created, renamed or removed by this process in the block (audit hooks:
    what any code does, not what the code under test reports)."""
    if not getattr(sys, "_graphwia_test_audit", False):
        sys.addaudithook(_audit)  # for the rest of the session; a no-op outside this block
        sys._graphwia_test_audit = True  # type: ignore[attr-defined]
    paths: list = []
    _RECORDED.append(paths)
    try:
        yield paths
    finally:
        _RECORDED.pop()


def _resolved(path) -> Path:
    """Where ``path`` (str, bytes or a path; relative to the working directory) lands: its folder resolved."""
    path = Path(os.path.abspath(os.fsdecode(path)))
    return path.parent.resolve() / path.name


def test_the_audit_recorder_sees_writes(tmp_path):
    with _written_paths() as paths:
        (tmp_path / "a.txt").write_text("x")
        os.replace(tmp_path / "a.txt", tmp_path / "b.txt")
        (tmp_path / "b.txt").read_text()  # reading is not writing
    assert [_resolved(p) for p in paths] == [tmp_path / "a.txt", tmp_path / "a.txt", tmp_path / "b.txt"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=NAMES)
@example(text="x/../../../../escape")
@example(text="../escape")
@example(text="..")
@example(text=".")
@example(text="/escape")
@example(text="a\\..\\..\\escape")
@example(text="nul\x00name")
@example(text=".hidden")
@example(text="n" * (MAX_NAME_LENGTH + 1))
@example(text="n" * 300)
@example(text="t")  # a valid name: the attempts write files, and the recorder sees them
def test_names_from_any_text_never_write_outside_out(tmp_path_factory, small, text):
    """Trial, job, scenario and synth names from arbitrary text and from path pieces: a one-line name error, or
    every path written (opened for writing, created, renamed, removed) resolves inside --out."""
    from graphwia.analyses.whatif import parse_scenarios
    from graphwia.fleet.run import job_dir
    from graphwia.outputs.job import write_outputs
    from graphwia.outputs.whatif import timeline_path
    from graphwia.trace.meta import parse_meta
    from graphwia.utils.io import write_json

    frame, meta, analysis = small
    sandbox = tmp_path_factory.mktemp("sandbox")
    out = sandbox / "a" / "b" / "out"
    out.mkdir(parents=True)
    attempts = {
        "trial (metadata)": lambda: parse_meta({**meta, "trial_name": text}, source="meta.yaml"),
        "trial (outputs)": lambda: write_outputs(_renamed(analysis, text), out, plots=False),
        "job": lambda: write_json(job_dir(out, text) / "fleet-job.json", {}),
        "scenario": lambda: parse_scenarios({"scenarios": [{"name": text, "ideal": True}]}),
        "scenario timeline": lambda: timeline_path(out, "t", text).write_text("x"),
        "synth": lambda: write_trace_files(out, text, frame, meta),
    }
    with _written_paths() as written:
        for what, attempt in attempts.items():
            try:
                attempt()
            except GraphwiaError as exc:
                assert "\n" not in str(exc), what
            else:
                assert is_name(text), (what, text)  # only valid names get through
    root = out.resolve()
    escaped = [p for p in written if not _resolved(p).is_relative_to(root)]
    assert not escaped, escaped
    assert written or not is_name(text)  # a valid name writes files, which the recorder saw
    outside = files_under(sandbox) - files_under(out)
    assert not outside, outside


def _renamed(analysis, name: str):
    meta = dataclasses.replace(analysis.meta, trial_name=name)
    return dataclasses.replace(analysis, trace=dataclasses.replace(analysis.trace, meta=meta))


# -- 3. only finite, strict-JSON numbers ------------------------------------------------------------


def test_all_zero_durations_is_one_line_and_no_warnings(tmp_path):
    frame, meta = synth()
    frame["duration"] = 0.0
    trace = write_case(tmp_path, frame, meta)
    for command in (
        ["analyze", trace, "--out", tmp_path / "out", "-q"],
        ["critical-path", trace, "--out", tmp_path / "cp.json", "-q"],
    ):
        assert_clean_failure(run(*command), 1, str(trace), "step(s) 0-1", "lasts 0 s")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    assert not (tmp_path / "cp.json").exists()


def test_end_that_overflows_is_one_line(tmp_path):
    frame, meta = synth()
    frame.loc[5, "start_ts"] = 1.7e308
    frame.loc[5, "duration"] = 1e308
    trace = write_case(tmp_path, frame, meta)
    assert_clean_failure(analyze(trace), 1, str(trace), "start_ts + duration overflows", "1 op(s)")


@pytest.mark.parametrize(
    "action,culprits",
    [
        ("set: {duration: 0, transfer: 0}", ["scenario 'big'", "every op on its path takes 0 s"]),
        # each step time is positive, the speedup (a baseline span over a subnormal number) overflows
        ("set: {duration: 5.0e-324, transfer: 5.0e-324}", ["scenario 'big': its speedup", "is inf"]),
    ],
)
def test_whatif_scenario_without_a_finite_positive_step_time(tmp_path, action, culprits):
    frame, meta = synth(microbatches=12)
    trace = write_case(tmp_path, frame, meta)
    scenarios = tmp_path / "s.yaml"
    scenarios.write_text(f"scenarios:\n  - name: big\n    {action}\n")
    for extra in ([], ["--json"], ["--per-step"], ["--timelines", tmp_path / "tl"]):
        result = run("whatif", trace, "--scenarios", scenarios, *extra)
        assert_clean_failure(result, 2, str(scenarios), *culprits)
        assert result.stdout == ""
    assert not list((tmp_path / "tl").iterdir())


@pytest.mark.parametrize(
    "action,key",
    [
        ("where: {optype: [forward-compute]}\n    scale: {duration: 1.0e+308}", "scale.duration: 1e+308"),
        ("scale: {duration: 1.0e-320, transfer: 1.0e-320}", "scale.duration: 1e-320"),
        ("scale: {transfer: 2.0e+6}", "scale.transfer: 2000000.0"),
        ("where: {stage: [0]}\n    scale: {launch_delay: 1.0e-7}", "scale.launch_delay: 1e-07"),
        ("set: {duration: 1.0e+10}", "set.duration: 10000000000.0"),
    ],
)
def test_scenario_factors_and_values_out_of_range_are_refused_when_read(tmp_path, action, key):
    """Every command that reads a scenario file refuses it there: one line naming the file, the scenario and the
    key; no number, no warning, no file."""
    trace = write_case(tmp_path, *synth())
    scenarios = tmp_path / "s.yaml"
    scenarios.write_text(f"baseline: base\nscenarios:\n  - name: big\n    {action}\n")
    for command in (
        ["whatif", trace, "--scenarios", scenarios, "--json"],
        ["whatif", trace, "--scenarios", scenarios, "--per-step", "--timelines", tmp_path / "tl"],
        ["critical-path", trace, "--whatif", scenarios, "--scenario", "big", "--out", tmp_path / "cp.json", "-q"],
        ["export-chakra", trace, "--whatif", scenarios, "--scenario", "big", "--out", tmp_path / "chakra"],
    ):
        result = run(*command)
        assert_clean_failure(result, 2, f"{scenarios}: scenario 'big': {key} is out of range")
        assert result.stdout == ""
    assert files_under(tmp_path) == {trace, trace.with_name("meta-t.yaml"), scenarios}


def _rig(monkeypatch, *changes) -> None:
    """Make run_whatif's simulation report, for each (array, column, values) of ``changes``, ``values(old)`` as
    column ``column`` of its ``array`` (step_time or span; column 0 is the baseline): numbers a scenario within
    the bounds may still reach on a hostile trace."""
    from graphwia.analyses import whatif

    real = whatif._simulate_batch

    def rigged(compiled, batch, **options):
        sim = real(compiled, batch, **options)
        for array, column, values in changes:
            changed = getattr(sim, array).copy()
            changed[:, column] = values(changed[:, column])
            setattr(sim, array, changed)
        return sim

    monkeypatch.setattr(whatif, "_simulate_batch", rigged)


def _all(value):
    return lambda old: np.full_like(old, value)


@pytest.mark.parametrize("baseline", ["nodelay", "base"])
@pytest.mark.parametrize(
    "changes,culprits",
    [
        # every step time finite, their mean over the steps overflows
        ([("step_time", 1, _all(1e308))], ["scenario 'big': the mean step time over 2 step(s) is inf s"]),
        ([("span", 0, _all(1e308))], ["baseline '", "the mean step time over 2 step(s) is inf s"]),
        # every mean finite and positive, a speedup overflows or underflows
        ([("step_time", 1, _all(5e-324))], ["scenario 'big': its speedup (mean baseline span", "is inf;"]),
        (
            [("step_time", 1, lambda old: np.where(np.arange(len(old)) == 1, 1e-320, old))],
            ["scenario 'big': its speedup (in step 1: baseline span", "step time 9.99989e-321 s) is inf;"],
        ),
        ([("span", 0, _all(5e-324)), ("step_time", 1, _all(10.0))], ["scenario 'big': its speedup", "is 0;"]),
    ],
)
def test_whatif_numbers_that_overflow_or_underflow_are_one_line(tmp_path, monkeypatch, baseline, changes, culprits):
    """Each step time finite and positive is not enough: the means and speedups printed must be so too, with no
    library warning on the way."""
    trace = write_case(tmp_path, *synth())
    scenarios = tmp_path / "s.yaml"
    scenarios.write_text(
        f"baseline: {baseline}\nscenarios:\n  - name: big\n    where: {{optype: [forward-compute]}}\n"
        "    scale: {duration: 0.5}\n"
    )
    _rig(monkeypatch, *changes)
    for extra in ([], ["--json"], ["--per-step"]):
        result = run("whatif", trace, "--scenarios", scenarios, *extra)
        assert_clean_failure(result, 2, str(scenarios), *culprits)
        assert result.stdout == ""


def test_whatif_masking_check_out_of_range_warns_nothing(tmp_path, monkeypatch):
    """Under base, a baseline span so small that the masking check's shares overflow: the speedups are still
    finite and positive (printed), the check gives no warning and no library warning reaches stderr."""
    trace = write_case(tmp_path, *synth())
    scenarios = tmp_path / "s.yaml"
    scenarios.write_text("baseline: base\nscenarios:\n  - name: big\n    scale: {duration: 0.5}\n")
    _rig(monkeypatch, ("span", 0, _all(1e-310)))
    result = run("whatif", trace, "--scenarios", scenarios, "--json")
    assert_ok(result)
    [entry] = json.loads(result.stdout)["scenarios"]
    assert 0 < entry["speedup"] < 1e-300


def test_undefined_ratio_is_null_with_a_warning(tmp_path, monkeypatch):
    """M_S = 0/0 (no slowdown to explain) is written as null, and the run says so in one warning."""
    import graphwia

    real = graphwia.analyze

    def without_slowdown(trace, **kwargs):
        analysis = real(trace, **kwargs)
        ms = dataclasses.replace(analysis.ms, tideal=analysis.ms.tori)
        return dataclasses.replace(analysis, ms=ms)

    monkeypatch.setattr(graphwia, "analyze", without_slowdown)
    frame, meta = synth()
    out = tmp_path / "out"
    result = analyze(write_case(tmp_path, frame, meta), out=out)
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("graphwia: warning: ms-t.json: ") and "null" in lines[0], lines
    assert "rem" in lines[0] and "Ms" in lines[0]
    ms = strict_json(out / "ms-t.json")
    assert ms["rem"] is None and ms["Ms"] is None and isinstance(ms["tori"], float)


def test_json_writer_is_strict(tmp_path):
    from graphwia.utils.io import json_text, nonfinite_fields, write_json

    data = {"a": float("nan"), "b": [1.0, float("inf")], "c": {"d": -float("inf"), "e": 2}}
    assert nonfinite_fields(data) == ["a", "b.1", "c.d"]
    assert json.loads(json_text(data)) == {"a": None, "b": [1.0, None], "c": {"d": None, "e": 2}}
    strict_json(write_json(tmp_path / "x.json", data))
    strict_json(write_json(tmp_path / "x.json.gz", data, compress=True))


def test_library_warnings_are_one_line_without_source_paths(tmp_path, monkeypatch):
    import warnings

    import graphwia

    real = graphwia.analyze

    def noisy(trace, **kwargs):
        np.float64(1.0) / np.float64(0.0)  # a numpy RuntimeWarning, as a degenerate division gives
        warnings.warn("something odd", UserWarning, stacklevel=2)
        return real(trace, **kwargs)

    monkeypatch.setattr(graphwia, "analyze", noisy)
    frame, meta = synth()
    result = analyze(write_case(tmp_path, frame, meta))
    assert result.exit_code == 0
    lines = result.stderr.strip().splitlines()
    assert sorted(line.split(": ")[2] for line in lines) == ["RuntimeWarning", "UserWarning"], lines
    assert all(line.startswith("graphwia: warning: ") and ".py" not in line for line in lines)


# -- 4. hostile metadata is bounded ------------------------------------------------------------------

LAUGHS = "\n".join(
    ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    + [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)]
    + [
        "trial_name: *i",
        "run_id: 0",
        "dp_size: 2",
        "pp_size: 2",
        "tp_size: 1",
        "dsp_size: 1",
        "vpp_size: 1",
        "world_size: 4",
    ]
)


@pytest.mark.parametrize(
    "text,culprits",
    [
        (LAUGHS, ["line 2", "aliases"]),
        ("trial_name: " + "[" * 50_000 + "]" * 50_000 + "\n", ["line 1", "nested deeper than"]),
        ("trial_name: t\nrun_id: " + "7" * 5000 + "\n", ["line 2, column 9", "5000 characters is too long"]),
        ("trial_name: t\nrun_id: 0\ndp_size: [1, 2\n", ["line 4, column 1", "expected ',' or ']'"]),
        ("trial_name: t\n  run_id: 0\n", ["line 2, column 9", "mapping values are not allowed"]),
        ("x: " + "y" * (1 << 20) + "\n", ["bytes", "holds at most"]),
    ],
)
def test_hostile_metadata_file_fails_fast(tmp_path, text, culprits):
    frame, _ = synth()
    trace = write_case(tmp_path, frame, text)
    started = time.monotonic()
    line = assert_clean_failure(analyze(trace), 1, "meta-t.yaml", *culprits)
    assert time.monotonic() - started < 5 and len(line) < 500


@pytest.mark.parametrize(
    "changes,culprits",
    [
        ({"dp_size": 2**40, "world_size": 2**41}, ["dp_size", "at most 2147483647"]),
        ({"dp_size": 2**30, "world_size": 2**31}, ["world_size", "at most"]),
        ({"dp_size": 2**20, "world_size": 2**21}, ["dp_size=1048576", "the trace has ops of 2 dp_rank value(s) only"]),
        ({"vpp_size": 2**30}, ["vpp_size=1073741824", "the trace has ops of 1 mc value(s) only"]),
        ({"run_id": 2**70}, ["run_id", "64 bits"]),
        ({"run_id": "12"}, ["run_id must be an integer", "'12'"]),
        ({"trial_name": "nul\x00"}, ["trial_name", "'nul\\x00'"]),
    ],
)
def test_metadata_values_are_checked_before_any_work(tmp_path, changes, culprits):
    frame, meta = synth()
    meta.update(changes)
    trace = write_case(tmp_path, frame, meta)
    started = time.monotonic()
    assert_clean_failure(analyze(trace), 1, *culprits)
    assert time.monotonic() - started < 5


def test_a_metadata_key_given_twice_is_refused(tmp_path):
    """PyYAML keeps the last of two equal keys; a metadata file with one twice says which, and where."""
    frame, meta = synth()
    text = yaml.safe_dump(meta, sort_keys=False)  # trial_name on line 1
    first = text.splitlines().index("trial_name: t") + 1
    text += "trial_name: other\n"
    trace = write_case(tmp_path, frame, text)
    line, before = text.count("\n"), files_under(tmp_path)
    assert_clean_failure(
        analyze(trace),
        1,
        f"meta-t.yaml: not a readable YAML file (line {line}, column 1: key 'trial_name' appears twice",
        f"(first on line {first})",
    )
    assert files_under(tmp_path) == before


def test_a_scenario_key_given_twice_is_refused(tmp_path):
    trace = write_case(tmp_path, *synth())
    scenarios = tmp_path / "s.yaml"
    scenarios.write_text("scenarios:\n  - name: big\n    scale: {duration: 2}\n    scale: {duration: 0.5}\n")
    for command in (
        ["whatif", trace, "--scenarios", scenarios],
        ["critical-path", trace, "--whatif", scenarios, "--scenario", "big", "--out", tmp_path / "cp.json", "-q"],
    ):
        result = run(*command)
        assert_clean_failure(result, 2, f"{scenarios}: not a readable YAML file (line 4, column 5: key 'scale'")
        assert result.stdout == ""


def test_lone_surrogate_in_yaml_name(tmp_path):
    frame, meta = synth()
    text = yaml.safe_dump({k: v for k, v in meta.items() if k != "trial_name"}) + 'trial_name: "bad\\udc80"\n'
    trace = write_case(tmp_path, frame, text)
    assert_clean_failure(analyze(trace), 1, "meta-t.yaml", "trial_name", "\\udc80")


# -- 5. user strings in pictures are plain text ----------------------------------------------------------


def test_dollar_signs_in_picture_texts_are_plain_text():
    from graphwia.outputs.heatmap import heatmap_figure, heatmap_png

    grid = pd.DataFrame([[1.0, 1.2], [1.3, np.nan]])
    assert heatmap_png(grid, title="cost_$5_to_$6", label="S_$w$")[:4] == b"\x89PNG"
    fig = heatmap_figure(grid, title="cost_$5_to_$6")
    assert [t.get_text() for t in fig.texts] == ["cost_$5_to_$6"]


# -- 8. inconsistent data accepted or misreported ----------------------------------------------------------


def test_pp1_metadata_with_p2p_ops(tmp_path):
    frame, meta = synth(dp=1, pp=2)
    frame = frame[frame["stage"] == 0]
    meta.update(pp_size=1, world_size=1)
    trace = write_case(tmp_path, frame, meta)
    assert_clean_failure(analyze(trace), 1, str(trace), "pp_size=1", "p2p op(s)", "need a peer stage")


def test_csv_with_a_column_twice(tmp_path):
    frame, meta = synth()
    trace = write_case(tmp_path, frame, meta, fmt="csv")
    lines = trace.read_text().splitlines()
    durations = frame["duration"].astype(str).tolist()
    trace.write_text("\n".join([lines[0] + ",duration"] + [f"{row},{d}" for row, d in zip(lines[1:], durations)]))
    assert_clean_failure(analyze(trace), 1, str(trace), "column(s) duration appear more than once")


def test_rank_changing_within_a_worker(tmp_path):
    frame, meta = synth()
    worker = (frame["dp_rank"] == 1) & (frame["stage"] == 0) & (frame["step"] == 1)
    frame.loc[worker, "rank"] = 17
    trace = write_case(tmp_path, frame, meta)
    assert_clean_failure(analyze(trace), 1, str(trace), "column rank changes within worker (dp_rank 1, stage 0)", "17")


def test_two_workers_sharing_a_rank(tmp_path):
    frame, meta = synth()
    frame.loc[(frame["dp_rank"] == 1) & (frame["stage"] == 1), "rank"] = 0
    trace = write_case(tmp_path, frame, meta)
    assert_clean_failure(analyze(trace), 1, str(trace), "column rank holds 0 for two workers")


def test_trace_without_optimizer_ops(tmp_path):
    frame, meta = synth()
    trace = write_case(tmp_path, frame[frame["optype"] != "optimizer"], meta)
    assert_clean_failure(analyze(trace), 1, str(trace), "step(s) 0-1 have no optimizer op")


def test_semicolon_separated_csv(tmp_path):
    frame, meta = synth()
    trace = tmp_path / "trace-t.csv"
    write_case(tmp_path, None, meta)
    frame.to_csv(trace, sep=";", index=False)
    assert_clean_failure(analyze(trace), 1, str(trace), "looks ';'-separated")


def test_optype_as_integer_codes(tmp_path):
    frame, meta = synth()
    frame["optype"] = frame["optype"].cat.codes
    trace = write_case(tmp_path, frame, meta)
    assert_clean_failure(analyze(trace), 1, str(trace), "column optype holds numbers", "row 0")


@pytest.mark.parametrize("dtype,offset", [(np.float32, 1.7e9), (np.float64, 1.7e18)])
def test_timestamps_too_coarse_for_their_ops(tmp_path, dtype, offset):
    """float32 epoch seconds (and float64 epoch ns read as s) cannot time ops of milliseconds."""
    frame, meta = synth()
    frame["start_ts"] = (frame["start_ts"] + offset).astype(dtype)
    trace = write_case(tmp_path, frame, meta)
    assert_clean_failure(
        analyze(trace), 1, str(trace), "column start_ts holds values up to", dtype.__name__, "resolves them only to"
    )


def test_epoch_ns_start_with_second_durations_is_a_unit_error(tmp_path):
    frame, meta = synth()
    frame["start_ts"] = ((frame["start_ts"] + 1.7e9) * 1e9).round().astype(np.int64)
    trace = write_case(tmp_path, frame, meta)
    assert_clean_failure(analyze(trace), 1, str(trace), "do not look like seconds alike", "--time-unit")


@pytest.mark.parametrize("unit,factor", [("ms", 1e3), ("us", 1e6), ("ns", 1e9)])
def test_implausible_time_unit_is_detected_and_time_unit_converts(tmp_path, unit, factor):
    frame, meta = synth()
    seconds = write_case(tmp_path / "s", frame, meta)
    scaled = frame.copy()
    scaled["start_ts"] = (scaled["start_ts"] * factor).round().astype(np.int64) + 1_700_000_000 * int(factor)
    scaled["duration"] = (scaled["duration"] * factor).round().astype(np.int64)
    trace = write_case(tmp_path / unit, scaled, meta)
    assert_clean_failure(analyze(trace), 1, str(trace), "do not look like seconds", f"--time-unit {unit}")
    assert_ok(analyze(trace, "--time-unit", unit))
    assert_ok(analyze(seconds))
    ours = strict_json(tmp_path / unit / "out" / "result-t.json")["blocking_slowdown"]
    assert ours == pytest.approx(strict_json(tmp_path / "s" / "out" / "result-t.json")["blocking_slowdown"], rel=1e-3)


def test_gzipped_csv_is_read(tmp_path):
    frame, meta = synth()
    plain = write_case(tmp_path / "plain", frame, meta, fmt="csv")
    packed = tmp_path / "gz" / "trace-t.csv.gz"
    write_case(tmp_path / "gz", None, meta)
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert_ok(analyze(plain))
    assert_ok(analyze(packed))
    assert strict_json(tmp_path / "gz" / "out" / "result-t.json") == strict_json(
        tmp_path / "plain" / "out" / "result-t.json"
    )


def test_symlink_loop_as_out(tmp_path):
    frame, meta = synth()
    trace = write_case(tmp_path, frame, meta)
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    assert_clean_failure(analyze(trace, out=loop), 1, str(loop), "symbolic link loop")


# -- issue 18, item 8: errors blame the right thing ---------------------------------------------------------


def test_missing_trace_is_blamed_before_missing_metadata(tmp_path):
    trace = tmp_path / "trace-gone.parquet"
    assert_clean_failure(analyze(trace), 1, str(trace), "trace file not found")


def test_directory_as_trace(tmp_path):
    (tmp_path / "data").mkdir()
    result = analyze(tmp_path / "data", out=tmp_path / "out")
    line = result.stderr.strip()
    assert result.exit_code in (1, 2) and line.startswith(f"graphwia: error: {tmp_path / 'data'}: ")
    assert "directory" in line and "not found" not in line and len(line.splitlines()) == 1


def test_result_json_as_trace(tmp_path):
    """The trace is blamed, not its (missing) metadata file."""
    result_file = tmp_path / "result-t.json"
    result_file.write_text("{}")
    result = analyze(result_file)
    line = result.stderr.strip()
    assert result.exit_code in (1, 2) and line.startswith(f"graphwia: error: {result_file}: ")
    assert "meta" not in line and len(line.splitlines()) == 1


def test_result_json_as_trace_file_says_what_it_is(tmp_path):
    from graphwia.errors import TraceError
    from graphwia.trace.optable import load_trace

    result_file = tmp_path / "result-t.json"
    result_file.write_text("{}")
    with pytest.raises(TraceError, match="looks like a result file written by graphwia analyze"):
        load_trace(result_file)


def test_steps_before_the_trace(tmp_path):
    frame, meta = synth(steps=3)
    trace = write_case(tmp_path, frame, meta)
    result = run("analyze", "--steps", "0", "2", trace, "--out", tmp_path / "out", "-q", "--no-plots")
    assert_ok(result)
    assert sorted(strict_json(tmp_path / "out" / "result-t.json")["step_t_base"]) == ["0", "2"]


def test_version_and_short_help():
    from importlib.metadata import version

    result = run("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"graphwia {version('graphwia')}"
    for args in (["-h"], ["analyze", "-h"]):
        result = run(*args)
        assert result.exit_code == 0 and "Usage:" in result.stdout


# -- 9. fail early -------------------------------------------------------------------------------------------


def test_synth_refuses_a_trace_too_large_up_front(tmp_path):
    started = time.monotonic()
    result = run(
        "synth",
        "--out",
        tmp_path,
        "--name",
        "huge",
        "--dp",
        "100000",
        "--pp",
        "1000",
        "--microbatches",
        "8",
        "--steps",
        "10",
    )
    assert time.monotonic() - started < 5
    assert_clean_failure(result, 2, "--dp/--pp/--vpp/--microbatches/--steps", "trace rows", "GB")
    assert not list(tmp_path.iterdir())


def test_timelines_are_written_in_bounded_memory(tmp_path, monkeypatch):
    """Beyond the times it draws, the writer holds one chunk of events at a time, not the whole text
    (issue 13, item 9): its peak does not grow with the number of ops."""
    import tracemalloc

    import graphwia.outputs.timeline as timeline
    from graphwia import analyze as run_analysis
    from graphwia.outputs.job import _ideal_bars
    from graphwia.trace.optable import Trace

    monkeypatch.setattr(timeline, "CHUNK_OPS", 512)
    peaks, sizes = [], []
    for steps in (4, 16):
        frame, meta = synthesize(dp=2, pp=4, microbatches=16, steps=steps, seed=2, name="t")
        analysis = run_analysis(Trace.from_frame(frame, meta), per_worker=False)
        start, end = _ideal_bars(analysis)
        text = timeline.timeline_json(analysis.dag, start, end)
        tracemalloc.start()
        try:
            timeline.write_bars_timeline(tmp_path / "t.json.gz", analysis.dag, start, end)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert gzip.decompress((tmp_path / "t.json.gz").read_bytes()) == text
        sizes.append(len(text))
    assert sizes[1] > 3.5 * sizes[0]
    assert peaks[1] < 1.3 * peaks[0] and peaks[1] < sizes[1] / 4, (peaks, sizes)

"""Outputs are written atomically: a failing run leaves earlier results byte-identical (issue 6)."""

from __future__ import annotations

import errno
import pathlib
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from graphwia.cli.main import app
from graphwia.errors import OutputError
from graphwia.synth.generate import synthesize
from graphwia.utils.io import all_or_nothing, atomic_path, write_json, write_text

RUNNER = CliRunner()


def write_trace(directory: Path, seed: int, **changes) -> Path:
    """A small synthetic trace named ``t`` (``changes``: column -> {row: value})."""
    frame, meta = synthesize(dp=2, pp=2, microbatches=3, steps=2, seed=seed, name="t")
    for column, cells in changes.items():
        for row, value in cells.items():
            frame.loc[row, column] = value
    directory.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(directory / "trace-t.parquet", index=False)
    (directory / "meta-t.yaml").write_text(yaml.safe_dump(meta))
    return directory / "trace-t.parquet"


def analyze(trace: Path, out: Path, *args: str):
    return RUNNER.invoke(app, ["analyze", str(trace), "--out", str(out), "-q", *args])


def snapshot(out: Path) -> dict[str, bytes]:
    """Every file in ``out`` (hidden temporaries included) and its bytes."""
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


@pytest.fixture
def earlier(tmp_path) -> tuple[Path, dict[str, bytes]]:
    """An output directory holding a successful run's results, and their bytes."""
    out = tmp_path / "out"
    result = analyze(write_trace(tmp_path / "good", seed=1), out, "--no-plots")
    assert result.exit_code == 0, result.stderr
    before = snapshot(out)
    assert {"result-t.json", "ms-t.json", "mw-t.json"} <= set(before)
    return out, before


@pytest.mark.parametrize("case", ["negative-duration", "bad-steps", "missing-meta"])
def test_failed_run_leaves_earlier_results_byte_identical(tmp_path, earlier, case):
    out, before = earlier
    trace = write_trace(tmp_path / "bad", seed=2, duration={3: -1.0} if case == "negative-duration" else {})
    if case == "missing-meta":
        (tmp_path / "bad" / "meta-t.yaml").unlink()
    result = analyze(trace, out, "--no-plots", *(["--steps", "9"] if case == "bad-steps" else []))
    assert result.exit_code in (1, 2)
    assert result.stderr.startswith("graphwia: error: ")
    assert snapshot(out) == before


def test_failure_while_writing_leaves_earlier_results_byte_identical(tmp_path, earlier, monkeypatch):
    """The disk fills up half way through ms-t.json of a run on a *different* trace: the
    result-t.json it had already written must not replace the earlier one."""
    out, before = earlier
    real_write_text = pathlib.Path.write_text

    def disk_full_on_ms(self, text, *args, **kwargs):
        if self.name.startswith(".ms-t.json."):
            real_write_text(self, text[: len(text) // 2], *args, **kwargs)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write_text(self, text, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", disk_full_on_ms)
    result = analyze(write_trace(tmp_path / "other", seed=2), out, "--no-plots")
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr
    assert (
        result.stderr.strip() == f"graphwia: error: {out / 'ms-t.json'}: cannot write output (No space left on device)"
    )
    assert snapshot(out) == before  # byte-identical, and no temporary left behind


def test_failure_in_pictures_leaves_earlier_results_byte_identical(tmp_path, earlier, monkeypatch):
    """Pictures are written after the result JSONs; a failure there must not commit those JSONs."""
    import graphwia.outputs.heatmap as heatmap
    import graphwia.outputs.report as report

    out, before = earlier
    monkeypatch.setattr(heatmap, "heatmap_png", lambda *a, **k: b"\x89PNG not really")  # fast; written first

    def broken_report(*args, **kwargs):
        raise RuntimeError("report template exploded")

    monkeypatch.setattr(report, "write_report", broken_report)
    result = analyze(write_trace(tmp_path / "other", seed=2), out)
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr
    assert "report template exploded" in result.stderr
    assert snapshot(out) == before  # no new result JSON, no heatmap of the failed run


def test_successful_rerun_replaces_every_result(tmp_path, earlier):
    out, before = earlier
    result = analyze(write_trace(tmp_path / "other", seed=2), out, "--no-plots")
    assert result.exit_code == 0, result.stderr
    after = snapshot(out)
    assert set(after) == set(before)
    assert after["result-t.json"] != before["result-t.json"]


# -- graphwia.utils.io ---------------------------------------------------------------------------------------


def test_atomic_path_keeps_the_target_when_the_writer_fails(tmp_path):
    target = tmp_path / "x.json"
    target.write_text("old")
    with pytest.raises(ValueError):
        with atomic_path(target) as tmp:
            tmp.write_text("half of the new")
            raise ValueError("writer failed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_all_or_nothing_commits_together(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.txt"
    with all_or_nothing():
        write_json(a, {"x": 1})
        write_text(b, "new")
        assert not a.exists() and not b.exists()  # nothing visible before the block succeeded
    assert a.read_text() == '{\n    "x": 1\n}' and b.read_text() == "new"


def test_all_or_nothing_commits_nothing_on_failure(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("old a")
    with pytest.raises(RuntimeError):
        with all_or_nothing():
            write_text(a, "new a")
            with all_or_nothing():  # nested blocks join the outer one
                write_text(b, "new b")
            raise RuntimeError("later step failed")
    assert a.read_text() == "old a" and not b.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_all_or_nothing_refuses_a_directory_target_before_any_rename(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("old a")
    b.mkdir()
    with pytest.raises(OutputError, match="b.txt: cannot write output"):
        with all_or_nothing():
            write_text(a, "new a")
            write_text(b, "new b")
    assert a.read_text() == "old a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


def test_unwritable_directory_is_an_output_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutputError, match="cannot write output"):
        write_text(blocker / "sub" / "x.txt", "data")

"""The HTML report: self-contained, complete, and rendered by headless Chromium."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess

import pytest

from graphwia import Trace, analyze
from graphwia.outputs.job import output_paths, write_outputs
from graphwia.outputs.report import report_html
from graphwia.outputs.summary import percent, verdict
from graphwia.synth.generate import synthesize

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
IMAGE = re.compile(r"<img alt='([^']*)' src='data:image/png;base64,([A-Za-z0-9+/=]+)'>")
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
NO_CHROMIUM = "no chromium binary on PATH (.ci/run installs Debian's chromium)"


@pytest.fixture(scope="module")
def analysis():
    frame, meta = synthesize(dp=2, pp=2, microbatches=4, steps=3, seed=1, slow_workers=[(1, 1, 1.6)], name="rep")
    return analyze(Trace.from_frame(frame, meta))


@pytest.fixture(scope="module")
def report_dir(analysis, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    write_outputs(analysis, out)
    return out


def test_report_is_self_contained_with_every_section(analysis, report_dir):
    page = output_paths(report_dir, analysis.name)["report"].read_text()
    images = IMAGE.findall(page)
    # S per step, the causes, attribution by op type / DP rank / stage, the two heatmaps.
    assert [alt for alt, _ in images] == [
        "S per step",
        "causes",
        "S by op type",
        "S by DP rank",
        "S by stage",
        "Worker score min(S_dp_rank, S_stage), as ranked by M_W",
        "Exact per-worker slowdown S_w",
    ]
    assert all(base64.b64decode(data)[:8] == PNG_MAGIC for _, data in images)
    assert page.count("<img") == len(images)  # no image from anywhere else
    assert not re.search(r"""(src|href)=['"](?!data:|#|timeline-|ideal-timeline-|https://ui\.perfetto\.dev)""", page)
    assert "<link" not in page and "@import" not in page
    for name in ("timeline-rep.json.gz", "ideal-timeline-rep.json.gz"):
        assert f"href='{name}'" in page and (report_dir / name).is_file()
    assert f"S = {analysis.slowdown:.4f}" in page
    assert f"{percent(analysis.Ms)}" in page and f"{percent(analysis.Mw)}" in page
    assert verdict(analysis).replace("'", "&#x27;") in page


def test_report_below_threshold_says_there_is_no_attribution():
    frame, meta = synthesize(dp=2, pp=2, microbatches=4, steps=2, seed=2)
    quiet = analyze(Trace.from_frame(frame, meta), decompose_threshold=10.0)
    page = report_html(quiet, {}, {})
    assert "below the decomposition threshold: no attribution" in page
    assert [alt for alt, _ in IMAGE.findall(page)] == ["S per step"]


def test_report_ranks_the_causes_and_says_what_was_ruled_out(analysis):
    page = report_html(analysis, {}, {})
    section = page[page.index("<h2>Causes</h2>") : page.index("<h2>Characterisation")]
    first = analysis.causes.ranked[0]
    assert first.cause == "worker"
    assert f"<td><strong>worker</strong></td><td>{percent(first.share)}</td>" in section
    assert "Ruled out:" in section and "<strong>stage</strong>: no stage computes" in section
    assert "the worst 1 of 4 workers" in page  # M_W's workers as a count


def test_report_of_a_job_without_pipeline_says_m_s_does_not_apply():
    frame, meta = synthesize(dp=3, pp=1, microbatches=2, steps=2, seed=2)
    page = report_html(analyze(Trace.from_frame(frame, meta)), {}, {})
    assert "n/a (pp = 1: no pipeline stages)" in page and "No cause found." in page


def test_report_escapes_names(analysis):
    page = report_html(analysis, {}, {"<script>alert(1)</script>": "x&y.json.gz"})
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page and "x&amp;y.json.gz" in page


# -- headless Chromium ---------------------------------------------------------------
def chromium(*args, tmp_path) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


def body_data(page_url: str, tmp_path) -> dict[str, str]:
    """The data-* attributes of <body> after the page loaded (set by the report's script)."""
    dom = chromium("--dump-dom", page_url, tmp_path=tmp_path).stdout
    body = re.search(r"<body([^>]*)>", dom)
    assert body, f"no <body> in chromium's DOM dump: {dom[:200]!r}"
    return dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body.group(1)))


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_report_renders_in_headless_chromium(analysis, report_dir, tmp_path):
    page = output_paths(report_dir, analysis.name)["report"]
    assert body_data(page.as_uri(), tmp_path) == {"image-count": "7", "images-loaded": "true"}

    shot = tmp_path / "shot.png"
    chromium(f"--screenshot={shot}", "--window-size=1200,2000", page.as_uri(), tmp_path=tmp_path)
    from matplotlib.image import imread

    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (2000, 1200)
    red = (pixels[..., 0] > 0.6) & (pixels[..., 1] < 0.35) & (pixels[..., 2] < 0.35)
    assert red.sum() > 2000  # the big S, the bars and the heatmap cells were drawn


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_the_image_check_fails_on_a_broken_image(analysis, report_dir, tmp_path):
    """Control: the same check reports a page whose image cannot decode."""
    page = output_paths(report_dir, analysis.name)["report"].read_text()
    broken = tmp_path / "broken.html"
    broken.write_text(page.replace("base64,iVBOR", "base64,AAAA", 1))
    assert body_data(broken.as_uri(), tmp_path) == {"image-count": "7", "images-loaded": "false"}

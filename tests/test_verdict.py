"""Verdicts that fit the job (issue 18, item 6): what was measured, in counts, and never a metric that does not apply."""

from __future__ import annotations

import re

import pytest
from conftest import real_analysis, requires_data

import graphwia
from graphwia.outputs.summary import percent, summary_lines, verdict
from graphwia.synth.generate import synthesize


def synthetic(seed: int = 11, steps: int = 3, **kwargs):
    frame, meta = synthesize(seed=seed, steps=steps, **kwargs)
    return graphwia.analyze(graphwia.Trace.from_frame(frame, meta))


def line(analysis, label: str) -> str:
    return next(text for text in summary_lines(analysis) if text.strip().startswith(label))


def test_pp1_says_m_s_does_not_apply():
    analysis = synthetic(dp=4, pp=1, microbatches=4, slow_workers=[(1, 0, 1.5)])
    assert analysis.Ms == pytest.approx(1.0)  # the number exists (every op is on the last stage) …
    m_s = line(analysis, "M_S")
    assert "n/a" in m_s and "pp = 1" in m_s and "100.0%" not in m_s  # … but is not shown as a finding
    assert verdict(analysis).startswith("individual worker problem: the worst 1 of 4 workers (dp_rank 1, stage 0)")
    assert "stage partitioning" not in verdict(analysis)


def test_dp1_with_a_slow_stage_is_a_stage_not_a_worker():
    analysis = synthetic(dp=1, pp=4, microbatches=8, slow_stage=(1, 1.5))
    assert analysis.Mw > 0.5  # with dp = 1 the worst worker is the slow stage
    text = verdict(analysis)
    assert "individual worker" not in text
    assert text.startswith("stage partitioning imbalance: stage 1 of 4 computes")
    assert "with dp = 1 a worker is its whole stage" in line(analysis, "M_W")


def test_a_slow_first_stage_has_a_cause():
    analysis = synthetic(seed=1, dp=4, pp=4, microbatches=8, slow_stage=(0, 1.4))
    assert 1.05 < analysis.slowdown < 1.1 and analysis.Ms < 0  # M_S looks at the last stage only
    text = verdict(analysis)
    assert "no significant straggling" not in text
    assert text.startswith(
        f"small slowdown (S = {analysis.slowdown:.3f} < 1.1), caused by stage partitioning "
        "imbalance: stage 0 of 4 computes"
    )


def test_gc_as_the_top_op_type_is_named():
    analysis = synthetic(seed=3, dp=4, pp=2, microbatches=4, steps=4, gc_pauses=[(0.3, 0.5)])
    assert analysis.blocking["optype"].top(1)[0][0] == "gc"
    text = verdict(analysis)
    assert text.startswith("garbage-collection pauses: ")
    assert "most of S is in gc (S_t = " in text


def test_fractions_are_counts():
    analysis = synthetic(dp=4, pp=4, microbatches=8, slow_workers=[(2, 1, 1.5)])
    text = verdict(analysis)
    assert re.search(r"the worst 1 of 16 workers \(dp_rank 2, stage 1\) computes 1\.[45]\dx as long as", text)
    assert "%" not in text.split("explaining")[0]  # no "top 3% of workers"
    assert "(the worst 1 of 16 workers)" in line(analysis, "M_W")


def test_shares_over_100_percent_are_explained():
    analysis = synthetic(dp=4, pp=4, microbatches=8, slow_workers=[(2, 1, 1.5)])
    assert analysis.Mw > 1.005
    assert any(text.strip().startswith("(a share over 100%") for text in summary_lines(analysis))
    within = synthetic(dp=8, pp=2, microbatches=8, seqlen_cv=0.4)
    assert max(within.Ms, within.Mw, *(c.share for c in within.causes.ranked)) < 1
    assert not any("over 100%" in text for text in summary_lines(within))


@pytest.mark.parametrize(
    "value, text", [(-0.0004, "0.0%"), (0.0004, "0.0%"), (-0.0012, "-0.1%"), (1.0432, "104.3%"), (float("nan"), "n/a")]
)
def test_percent_never_prints_minus_zero(value, text):
    assert percent(value) == text


def test_no_summary_prints_minus_zero():
    jobs = [
        synthetic(dp=4, pp=4, microbatches=8, slow_workers=[(2, 1, 1.5)]),
        synthetic(dp=8, pp=2, microbatches=8, seqlen_cv=0.4),
        synthetic(dp=2, pp=2, microbatches=4),
    ]
    for analysis in jobs:
        assert not any(re.search(r"-0\.0%", text) for text in summary_lines(analysis))


def test_the_verdict_states_what_was_measured():
    analysis = synthetic(dp=8, pp=2, microbatches=8, seqlen_cv=0.4)
    text = verdict(analysis)
    assert text.startswith(
        "sequence-length imbalance: a microbatch's compute varies from microbatch to microbatch (CV "
    )
    assert "alike on every stage of a replica (correlation 1.00)" in text
    share = analysis.causes.ranked[0].share
    assert f"explaining {percent(share)} of the slowdown" in text


def test_a_healthy_job_says_so():
    analysis = synthetic(dp=4, pp=4, microbatches=8)
    assert verdict(analysis).startswith("no significant straggling: S = ")
    assert line(analysis, "causes").endswith("none found")


@requires_data
def test_real_verdicts_name_the_dominant_op_type():
    assert "most of S is in backward-compute" in verdict(real_analysis("AR"))
    assert "most of S is in" not in verdict(real_analysis("ST"))  # forward and backward share it
    se = verdict(real_analysis("SE"))
    assert (
        se.startswith("sequence-length imbalance")
        and "; then stage partitioning imbalance: stage 1 of 2 (the last)" in se
    )

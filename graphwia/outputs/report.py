"""The HTML report of one analysis: a single self-contained page.

Everything a reader needs on one page, with no external asset (charts are
matplotlib PNGs embedded as base64 ``data:`` URIs): S and its per-step curve,
the causes of the slowdown ranked by the share each explains (a chart, the
evidence, and the causes ruled out), the attribution of S by op type, DP rank
and stage, the worker heatmaps, M_S and M_W, a one-line verdict, and links to
the timelines written beside the page.

A small inline script sets ``data-images-loaded="true"`` on ``<body>`` once
every image has decoded, so a headless browser can check the page rendered.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from graphwia.analyses.causes import NAMED_SHARE, Causes
from graphwia.analyses.standard import TOP_WORKER_PERCENT, Analysis
from graphwia.outputs.heatmap import figure_png
from graphwia.outputs.summary import (
    CAUSE_TITLE,
    OVER_100,
    evidence_text,
    ms_text,
    over_100,
    percent,
    ruled_out_text,
    share_text,
    top_workers_text,
    verdict,
)
from graphwia.utils.io import write_text

__all__ = [
    "BAR",
    "CAUSE_COLOR",
    "DPI",
    "SCRIPT",
    "STYLE",
    "attribution_png",
    "causes_png",
    "png_img",
    "report_html",
    "step_curve_png",
    "write_report",
]

BAR = "#c0392b"
DPI = 100
#: One colour per cause, shared with the fleet page.
CAUSE_COLOR = {
    "worker": "#d62728",
    "stage": "#ff7f0e",
    "sequence-length": "#9467bd",
    "gc": "#8c564b",
    "communication": "#1f77b4",
    "launch": "#17becf",
    "unexplained": "#7f7f7f",
    "none": "#bbbbbb",
}


# -- charts -------------------------------------------------------------------------
def step_curve_png(analysis: Analysis) -> bytes:
    """S (and the launch slowdown) of every analysed step, with the overall S."""
    steps = [str(int(s)) for s in analysis.steps]
    x = np.arange(len(steps))  # analysed steps side by side, even when their numbers have gaps
    fig = Figure(figsize=(7.5, 2.8), dpi=DPI)
    ax = fig.add_subplot()
    ax.plot(x, analysis.step_slowdown, "o-", color=BAR, ms=3, lw=1.2, label="S per step")
    ax.plot(x, analysis.launch_step_slowdown, "s-", color="#7f8c8d", ms=2.5, lw=0.8, label="launch slowdown per step")
    ax.axhline(analysis.slowdown, color=BAR, ls="--", lw=0.8, label=f"S = {analysis.slowdown:.3f}")
    ax.axhline(1.0, color="black", lw=0.6)
    every = max(1, len(steps) // 16)
    ax.set_xticks(x[::every], steps[::every], fontsize=7)
    ax.set_xlabel("analysed step")
    ax.set_ylabel("slowdown")
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return figure_png(fig)


def attribution_png(values: dict, title: str, overall: float, by_rank: bool) -> bytes:
    """S_G of every group as bars from 1.0 (below 1: the group is faster than typical).

    ``by_rank``: vertical bars in rank order (DP ranks, stages); otherwise
    horizontal bars sorted by value (op types).
    """
    keys = sorted(values) if by_rank else sorted(values, key=lambda k: values[k])
    labels = [str(k) for k in keys]
    heights = np.array([values[k] for k in keys]) - 1.0
    n = len(labels)
    if by_rank:
        fig = Figure(figsize=(min(max(3.2, 0.9 + 0.22 * n), 11.0), 2.8), dpi=DPI)
        ax = fig.add_subplot()
        ax.bar(range(n), heights, bottom=1.0, color=BAR)
        ax.set_xticks(range(n), labels, fontsize=7 if n > 24 else 8)
        ax.axhline(overall, color="black", ls="--", lw=0.8, label=f"S = {overall:.3f}")
        ax.axhline(1.0, color="black", lw=0.6)
        ax.set_ylabel("S_G")
        if n <= 16:
            for i, h in enumerate(heights):
                ax.text(i, 1.0 + h, f"{1 + h:.3f}", ha="center", va="bottom" if h >= 0 else "top", fontsize=7)
    else:
        fig = Figure(figsize=(7.5, 0.6 + 0.28 * n), dpi=DPI)
        ax = fig.add_subplot()
        ax.barh(range(n), heights, left=1.0, color=BAR)
        ax.set_yticks(range(n), labels, fontsize=8)
        ax.axvline(overall, color="black", ls="--", lw=0.8, label=f"S = {overall:.3f}")
        ax.axvline(1.0, color="black", lw=0.6)
        ax.set_xlabel("S_G")
        for i, h in enumerate(heights):
            ax.text(1.0 + h, i, f" {1 + h:.3f} ", va="center", ha="left" if h >= 0 else "right", fontsize=7)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return figure_png(fig)


def causes_png(causes: Causes) -> bytes:
    """The found causes as horizontal bars of their share, ranked from the top, with the naming threshold."""
    ranked = causes.ranked
    n = len(ranked)
    fig = Figure(figsize=(7.5, 0.9 + 0.42 * n), dpi=DPI)
    ax = fig.add_subplot()
    shares = np.array([c.share for c in ranked]) * 100
    ax.barh(range(n), shares, color=[CAUSE_COLOR[c.cause] for c in ranked])
    ax.set_yticks(range(n), [c.cause for c in ranked], fontsize=9)
    ax.invert_yaxis()  # the first cause on top
    ax.axvline(NAMED_SHARE * 100, color="black", ls="--", lw=0.8, label=f"named from {NAMED_SHARE:.0%}")
    ax.axvline(0, color="black", lw=0.6)
    for i, share in enumerate(shares):
        ax.text(share, i, f" {share:.1f}% ", va="center", ha="left" if share >= 0 else "right", fontsize=8)
    ax.set_xlim(min(0.0, shares.min() * 1.2), max(100.0, shares.max() * 1.15))
    ax.set_xlabel("share of the slowdown explained (%)")
    ax.set_title(f"causes of the slowdown S = {causes.slowdown:.3f}", fontsize=9)
    # Above the axes, right: inside them the box would cover the value of a long bar.
    ax.legend(fontsize=7, loc="lower right", bbox_to_anchor=(1.0, 1.0), frameon=False, borderaxespad=0.2)
    fig.tight_layout()
    return figure_png(fig)


# -- page ---------------------------------------------------------------------------
STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.meta { color: #666; } .verdict { background: #fdf2f0; border-left: 4px solid #c0392b; padding: 0.7em 1em; }
.big { font-size: 2.2em; font-weight: bold; color: #c0392b; }
table { border-collapse: collapse; } td, th { padding: 0.25em 0.8em; text-align: right; border-bottom: 1px solid #eee; }
th:first-child, td:first-child { text-align: left; }
img { max-width: 100%; display: block; margin: 0.5em 0; } .warn { color: #a04000; }
.row { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; } td.what, th.what { text-align: left; }
"""

SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var loaded = images.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.dataset.imageCount = String(images.length);
  document.body.dataset.imagesLoaded = String(images.length > 0 && loaded.length === images.length);
});
"""


def report_html(analysis: Analysis, heatmaps: dict[str, bytes], links: dict[str, str]) -> str:
    """The report page of ``analysis``.

    ``heatmaps``: caption → PNG bytes, embedded in order. ``links``: caption →
    relative path of a file beside the page (the timelines).
    """
    meta = analysis.meta
    e = html.escape
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>graphwia report: {e(analysis.name)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>What-if analysis of stragglers: {e(analysis.name)}</h1>",
        f"<p class='meta'>dp {meta.dp_size} × pp {meta.pp_size} (tp {meta.tp_size}, vpp {meta.vpp_size}, "
        f"dsp {meta.dsp_size}); {len(analysis.steps)} step(s) analysed, {analysis.dag.n_ops:,} op instances, "
        f"{len(analysis.workers)} traced workers; trace {e(str(analysis.trace.source))}</p>",
        f"<p class='verdict'><strong>Verdict</strong> (S = {analysis.slowdown:.3f}): {e(verdict(analysis))}.</p>",
        "<h2>Slowdown S</h2>",
        f"<p><span class='big'>S = {analysis.slowdown:.4f}</span> &nbsp; launch slowdown "
        f"{analysis.launch_slowdown:.4f}</p>",
        _step_time_table(analysis),
        png_img(step_curve_png(analysis), "S per step"),
        "<h2>Causes</h2>",
        *_causes_section(analysis),
        "<h2>Characterisation: M_S and M_W</h2>",
        _m_table(analysis),
        "<h2>Attribution of S</h2>",
        *_attribution_section(analysis),
        "<h2>Worker heatmaps</h2>",
        "<p>One cell per worker (PP rank down, DP rank across), colour from 1.0 to 1.5.</p>",
        "<div class='row'>",
        *[f"<div><h3>{e(caption)}</h3>{png_img(png, caption)}</div>" for caption, png in heatmaps.items()],
        "</div>",
        "<h2>Timelines</h2>",
        "<p>Chrome trace-event files; open them in <a href='https://ui.perfetto.dev'>Perfetto</a> "
        "(Open trace file) or chrome://tracing.</p><ul>",
        *[f"<li><a href='{e(href)}'>{e(caption)}</a> ({e(href)})</li>" for caption, href in links.items()],
        "</ul>",
        *_warnings(analysis.warnings),
        f"<script>{SCRIPT}</script></body></html>",
    ]
    return "\n".join(parts)


def write_report(path: str | Path, analysis: Analysis, heatmaps: dict[str, bytes], links: dict[str, str]) -> Path:
    """Write :func:`report_html` to ``path`` atomically."""
    return write_text(path, report_html(analysis, heatmaps, links))


def png_img(png: bytes, alt: str) -> str:
    """An ``<img>`` embedding ``png`` as a base64 ``data:`` URI."""
    data = base64.b64encode(png).decode("ascii")
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'>"


def _step_time_table(analysis: Analysis) -> str:
    rows = [
        ("trace as recorded", analysis.step_time_observed),
        ("no launch delays", analysis.step_time_nodelay),
        ("ideal (no blocking)", analysis.step_time_ideal),
    ]
    body = "".join(f"<tr><td>{name}</td><td>{np.mean(t):.3f} s</td></tr>" for name, t in rows)
    return f"<table><tr><th>mean step time</th><th></th></tr>{body}</table>"


def _m_table(analysis: Analysis) -> str:
    e = html.escape
    rows = [
        ("M_S", "every op of the last stage", analysis.ms, analysis.meta.pp_size > 1),
        ("M_W", f"every op of {top_workers_text(analysis)} (the top {TOP_WORKER_PERCENT}%)", analysis.mw, True),
    ]
    body = "".join(
        f"<tr><td><strong>{name}</strong></td><td class='what'>{e(what)}</td>"
        + (
            f"<td><strong>{percent(m.rem)}</strong></td><td>{percent(m.add)}</td><td>{m.trem:.3f} s</td>"
            f"<td>{m.tadd:.3f} s</td>"
            if applies
            else f"<td colspan='4' class='what'>{e(ms_text(analysis))}</td>"
        )
        + "</tr>"
        for name, what, m, applies in rows
    )
    head = "<tr><th></th><th class='what'>set of ops X</th><th>rem (explains)</th><th>add</th><th>t_rem</th><th>t_add</th></tr>"
    note = (
        f"<p class='meta'>t_ori = {analysis.ms.tori:.3f} s (no-delay), t_ideal = {analysis.ms.tideal:.3f} s. "
        "rem: share of the slowdown that disappears when X is made typical; add: share that appears when only "
        "X keeps its recorded weights." + (f" ({e(OVER_100)}.)" if over_100(analysis) else "") + "</p>"
    )
    return f"<table>{head}{body}</table>{note}"


def _causes_section(analysis: Analysis) -> list[str]:
    e = html.escape
    causes = analysis.causes
    parts = [
        "<p>Each cause is looked for by its signature in the trace; a cause found gets the share of the "
        "slowdown it explains: the part of (no-delay − ideal) step time that disappears when the ops carrying "
        "it are made typical. Shares overlap and need not add up to 100%.</p>"
    ]
    if causes.ranked:
        parts.append(png_img(causes_png(causes), "causes"))
        rows = "".join(
            f"<tr><td><strong>{e(c.cause)}</strong></td><td>{percent(c.share)}</td>"
            f"<td class='what'>{e(CAUSE_TITLE[c.cause])}: {e(evidence_text(c, analysis))} "
            f"({e(share_text(c))})</td></tr>"
            for c in causes.ranked
        )
        parts.append(f"<table><tr><th>cause</th><th>share</th><th class='what'>evidence</th></tr>{rows}</table>")
    else:
        parts.append("<p><strong>No cause found.</strong></p>")
    ruled = "".join(
        f"<li><strong>{e(c.cause)}</strong>: {e(ruled_out_text(c, analysis))}</li>" for c in causes.ruled_out
    )
    if ruled:
        parts.append(f"<p class='meta'>Ruled out:</p><ul class='meta'>{ruled}</ul>")
    return parts


def _attribution_section(analysis: Analysis) -> list[str]:
    parts = analysis.blocking
    if "optype" not in parts:
        return ["<p>S is below the decomposition threshold: no attribution.</p>"]
    s = analysis.slowdown
    return [
        "<p>S_G: the slowdown left when only the ops of group G keep their recorded weights (SPEC §5.4).</p>",
        png_img(attribution_png(parts["optype"].overall, "S_G by op type", s, by_rank=False), "S by op type"),
        "<div class='row'>",
        png_img(attribution_png(parts["dp_rank"].overall, "S_G by DP rank", s, by_rank=True), "S by DP rank"),
        png_img(attribution_png(parts["stage"].overall, "S_G by stage (PP rank)", s, by_rank=True), "S by stage"),
        "</div>",
    ]


def _warnings(warnings: list[str]) -> list[str]:
    if not warnings:
        return []
    return ["<h2>Warnings</h2><ul>", *[f"<li class='warn'>{html.escape(w)}</li>" for w in warnings], "</ul>"]

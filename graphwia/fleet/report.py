"""A fleet's outputs: ``fleet.csv``, ``fleet.parquet`` (:func:`write_fleet`) and ``fleet.html``,
one self-contained page about a fleet of analysed jobs.

The page answers the fleet questions: how often stragglers hit (CDF of S,
share of jobs with S ≥ 1.1), how much GPU time they waste ((S − 1)/S of each
job's GPU hours), why (each job's first cause, from the cause analysis of
:mod:`graphwia.analyses.causes`, as in its own summary and report) and which
op types slow jobs down (S attribution by op type across jobs). Plots are matplotlib PNGs
(Agg, no pyplot state) embedded as base64, so the file can be mailed around.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd

from graphwia.analyses.causes import LABELS, NAMED_SHARE, STRAGGLER_S
from graphwia.fleet.run import FleetRun, JobRecord, fleet_table
from graphwia.outputs.report import CAUSE_COLOR
from graphwia.outputs.summary import CAUSE_TITLE, percent
from graphwia.utils.io import atomic_path, output_set, write_text

__all__ = [
    "CAUSE_LABEL",
    "PAGE",
    "TOP_JOBS",
    "cause_summary",
    "fleet_summary",
    "optype_summary",
    "optype_table",
    "render_fleet_html",
    "write_fleet",
    "write_fleet_report",
]

#: What each value of the cause column means on the page.
CAUSE_LABEL = {
    **{cause: f"{cause}: {title}" for cause, title in CAUSE_TITLE.items()},
    "unexplained": f"unexplained: S ≥ {STRAGGLER_S}, no cause explains {NAMED_SHARE:.0%}",
    "none": f"none: S < {STRAGGLER_S} and no cause explains {NAMED_SHARE:.0%}",
}
TOP_JOBS = 25


def fleet_summary(table: pd.DataFrame) -> dict:
    """Headline numbers of a fleet table (see :data:`graphwia.fleet.run.COLUMNS`)."""
    ok = table[table["status"] == "ok"]
    gpu, wasted = float(ok["gpu_hours"].sum()), float(ok["wasted_gpu_hours"].sum())
    stragglers = int((ok["S"] >= STRAGGLER_S).sum())
    return {
        "jobs": len(table),
        "ok": len(ok),
        "failed": len(table) - len(ok),
        "stragglers": stragglers,
        "straggler_share": stragglers / len(ok) if len(ok) else float("nan"),
        "gpu_hours": gpu,
        "wasted_gpu_hours": wasted,
        "wasted_share": wasted / gpu if gpu else float("nan"),
    }


def cause_summary(ok: pd.DataFrame) -> pd.DataFrame:
    """Per cause label (index: :data:`graphwia.analyses.causes.LABELS`, in order): ``jobs`` and their ``wasted``
    GPU hours."""
    grouped = ok.groupby("cause").agg(jobs=("name", "size"), wasted=("wasted_gpu_hours", "sum"))
    return grouped.reindex(list(LABELS), fill_value=0)


def optype_table(attribution: dict[str, dict[str, float]]) -> pd.DataFrame:
    """Long table (job, optype, S_t) of each job's S attribution by op type."""
    rows = [(job, optype, value) for job, parts in attribution.items() for optype, value in parts.items()]
    return pd.DataFrame(rows, columns=["job", "optype", "S_t"])


def optype_summary(attribution: dict[str, dict[str, float]]) -> pd.DataFrame:
    """Per op type across jobs: jobs where it is the top one, jobs with S_t ≥ 1.1, median and max S_t."""
    long = optype_table(attribution)
    if long.empty:
        return pd.DataFrame(columns=["optype", "top_in_jobs", "jobs_st_ge_threshold", "median_S_t", "max_S_t"])
    top = long.loc[long.groupby("job")["S_t"].idxmax(), "optype"].value_counts()
    by = long.groupby("optype")["S_t"]
    hits = (long["S_t"] >= STRAGGLER_S).groupby(long["optype"]).sum()
    summary = pd.DataFrame(
        {"top_in_jobs": top, "jobs_st_ge_threshold": hits, "median_S_t": by.median(), "max_S_t": by.max()}
    )
    summary["top_in_jobs"] = summary["top_in_jobs"].fillna(0).astype(int)
    return summary.sort_values(["top_in_jobs", "median_S_t"], ascending=False).rename_axis("optype").reset_index()


def write_fleet_report(path: str | Path, records: Sequence[JobRecord]) -> Path:
    """Write the fleet page of ``records`` (one per job, in job order) atomically.

    Each record's ``link`` (its job's page) is relative to the folder of ``path``; its
    ``optype_attribution`` (jobs that reached the attribution threshold) feeds the op-type section.
    """
    return write_text(path, render_fleet_html(records))


def render_fleet_html(records: Sequence[JobRecord]) -> str:
    """The fleet page of ``records`` (see :func:`write_fleet_report`)."""
    table = fleet_table(records)
    attribution = {r.name: dict(r.optype_attribution) for r in records if r.optype_attribution}
    summary = fleet_summary(table)
    ok = table[table["status"] == "ok"]
    causes = cause_summary(ok)
    sections = [
        _headline(summary),
        _section("How often: CDF of the slowdown S", _img(_plot_cdf(ok["S"].to_numpy(float)), "CDF of S")),
        _section("How much: wasted GPU hours", _img(_plot_waste(ok), "wasted GPU hours per job")),
        _section("Why: causes", _img(_plot_causes(causes), "causes") + _cause_table(causes)),
        _section(
            "Where: attribution of S by op type across jobs",
            _img(_plot_optypes(optype_table(attribution)), "S_t by op type") + _optype_html(attribution),
        ),
        _section("Jobs", _jobs_html(records)),
    ]
    return PAGE.format(title=f"graphwia fleet: {summary['jobs']} job(s)", body="\n".join(sections))


# -- plots -----------------------------------------------------------------------------------
def _figure(width: float = 7.0, height: float = 3.6):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _empty(fig, ax, text: str):
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#666")
    ax.set_axis_off()
    return fig


def _plot_cdf(s: np.ndarray):
    fig = _figure()
    ax = fig.add_subplot()
    if s.size == 0:
        return _empty(fig, ax, "no analysed jobs")
    x = np.sort(s)
    ax.step(np.concatenate([[x[0]], x]), np.arange(x.size + 1) / x.size, where="post", color="#1f77b4")
    ax.axvline(STRAGGLER_S, color="#d62728", linestyle="--", linewidth=1, label=f"S = {STRAGGLER_S}")
    ax.set_xlabel("slowdown S (mean step time / ideal step time)")
    ax.set_ylabel("share of jobs with slowdown ≤ S")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return fig


def _plot_waste(ok: pd.DataFrame):
    fig = _figure(7.0, 0.6 + 0.28 * max(3, min(len(ok), TOP_JOBS)))
    ax = fig.add_subplot()
    top = ok.sort_values("wasted_gpu_hours", ascending=False).head(TOP_JOBS)[::-1]
    if top.empty:
        return _empty(fig, ax, "no analysed jobs")
    ax.barh(top["name"].astype(str), top["wasted_gpu_hours"], color=[CAUSE_COLOR[c] for c in top["cause"]])
    ax.set_xlabel("wasted GPU hours  ((S − 1)/S × GPU hours)")
    ax.set_title(f"top {len(top)} job(s) by wasted GPU hours", fontsize=10)
    from matplotlib.patches import Patch

    shown = [c for c in LABELS if c in set(top["cause"])]
    ax.legend(handles=[Patch(color=CAUSE_COLOR[c], label=c) for c in shown], loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return fig


def _plot_causes(causes: pd.DataFrame):
    fig = _figure(8.0, 3.6)
    jobs_ax, hours_ax = fig.subplots(1, 2)
    colors = [CAUSE_COLOR[c] for c in LABELS]
    jobs_ax.bar(LABELS, causes["jobs"].to_numpy(int), color=colors)
    jobs_ax.set_title("jobs by first cause", fontsize=10)
    jobs_ax.yaxis.get_major_locator().set_params(integer=True)
    hours_ax.bar(LABELS, causes["wasted"].to_numpy(float), color=colors)
    hours_ax.set_title("wasted GPU hours", fontsize=10)
    for ax in (jobs_ax, hours_ax):
        ax.grid(axis="y", alpha=0.3)
        ax.set_xticks(range(len(LABELS)), LABELS, rotation=40, ha="right", rotation_mode="anchor", fontsize=8)
    return fig


def _plot_optypes(long: pd.DataFrame):
    optypes = long.groupby("optype")["S_t"].median().sort_values().index.tolist() if not long.empty else []
    fig = _figure(7.0, 0.8 + 0.35 * max(3, len(optypes)))
    ax = fig.add_subplot()
    if not optypes:
        return _empty(fig, ax, "no job reached the attribution threshold")
    rng = np.random.default_rng(0)  # jitter only, fixed so the page is reproducible
    for y, optype in enumerate(optypes):
        values = long.loc[long["optype"] == optype, "S_t"].to_numpy(float)
        ax.scatter(values, y + rng.uniform(-0.15, 0.15, values.size), s=14, alpha=0.7, color="#1f77b4")
        ax.plot([np.median(values)] * 2, [y - 0.3, y + 0.3], color="#d62728", linewidth=2)
    ax.set_yticks(range(len(optypes)), optypes)
    ax.axvline(1.0, color="#666", linewidth=0.8)
    ax.set_xlabel("S_t (one dot per job, red bar = median)")
    ax.set_title("slowdown when only this op type keeps its real durations", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return fig


# -- HTML pieces -------------------------------------------------------------------------------
def _img(fig, alt: str) -> str:
    from graphwia.outputs.heatmap import figure_png
    from graphwia.outputs.report import png_img

    return png_img(figure_png(fig), alt)


def _section(title: str, body: str) -> str:
    return f"<section><h2>{html.escape(title)}</h2>\n{body}\n</section>"


def _headline(s: dict) -> str:
    items = [
        ("jobs", f"{s['jobs']}"),
        ("analysed / failed", f"{s['ok']} / {s['failed']}"),
        (f"jobs with S ≥ {STRAGGLER_S}", f"{s['stragglers']} ({_pct(s['straggler_share'])})"),
        ("GPU hours", f"{s['gpu_hours']:,.2f}"),
        ("wasted GPU hours", f"{s['wasted_gpu_hours']:,.2f} ({_pct(s['wasted_share'])})"),
    ]
    cells = "".join(
        f'<div class="kpi"><div class="v">{html.escape(v)}</div><div class="k">{html.escape(k)}</div></div>'
        for k, v in items
    )
    return f'<div class="kpis">{cells}</div>'


def _cause_table(causes: pd.DataFrame) -> str:
    rows = [[CAUSE_LABEL[c], int(r.jobs), f"{r.wasted:,.2f}"] for c, r in zip(LABELS, causes.itertuples())]
    return _table(["cause", "jobs", "wasted GPU hours"], rows)


def _optype_html(attribution: dict) -> str:
    summary = optype_summary(attribution)
    rows = [
        [r.optype, r.top_in_jobs, r.jobs_st_ge_threshold, f"{r.median_S_t:.3f}", f"{r.max_S_t:.3f}"]
        for r in summary.itertuples()
    ]
    return _table(["op type", "top op type in jobs", f"jobs with S_t ≥ {STRAGGLER_S}", "median S_t", "max S_t"], rows)


def _jobs_html(records: Sequence[JobRecord]) -> str:
    """The table of jobs: analysed ones first, the most wasted GPU hours first; then the failed ones."""
    by_waste = sorted(records, key=lambda r: math.inf if r.wasted_gpu_hours is None else -r.wasted_gpu_hours)
    rows = []
    for r in sorted(by_waste, key=lambda r: r.status, reverse=True):
        link = f'<a href="{html.escape(quote(r.link or f"jobs/{r.name}"))}">{html.escape(r.name)}</a>'
        if not r.ok:
            rows.append([link, _raw(f'<span class="err">failed: {html.escape(str(r.error))}</span>')] + [""] * 8)
            continue
        rows.append(
            [
                link,
                r.status,
                f"{r.S:.4f}",
                f"{r.launch_slowdown:.4f}",
                _pct(r.Ms),
                _pct(r.Mw),
                r.cause or "",
                ", ".join(f"{cause} {share:.0%}" for cause, share in r.causes),
                r.top_optype or "",
                f"{r.wasted_gpu_hours:,.2f} / {r.gpu_hours:,.2f}",
            ]
        )
    header = [
        "job",
        "status",
        "S",
        "launch slowdown",
        "M_S",
        "M_W",
        "cause",
        "causes found (share)",
        "top op type",
        "wasted / GPU hours",
    ]
    return _table(header, rows, raw_first=True)


class _raw(str):
    """A cell that is already HTML."""


def _table(header: list[str], rows: list[list], raw_first: bool = False) -> str:
    def cell(i, value):
        if isinstance(value, _raw) or (raw_first and i == 0):
            return f"<td>{value}</td>"
        return f"<td>{html.escape(str(value))}</td>"

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "\n".join("<tr>" + "".join(cell(i, v) for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"


def _pct(value) -> str:
    return "n/a" if value is None or pd.isna(value) else percent(float(value))


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
h1 {{ font-size: 1.5em; }} h2 {{ font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #ddd; }}
.kpis {{ display: flex; gap: 1em; flex-wrap: wrap; }}
.kpi {{ border: 1px solid #ddd; border-radius: 6px; padding: .6em 1em; min-width: 9em; }}
.kpi .v {{ font-size: 1.3em; font-weight: 600; }} .kpi .k {{ color: #666; font-size: .85em; }}
table {{ border-collapse: collapse; font-size: .9em; margin-top: .8em; }}
th, td {{ border-bottom: 1px solid #eee; padding: .25em .7em; text-align: left; }}
.err {{ color: #b00; }} img {{ max-width: 100%; }}
</style></head>
<body><h1>{title}</h1>
{body}
</body></html>
"""


def write_fleet(run: FleetRun, out_dir: str | Path) -> dict[str, Path]:
    """Write ``fleet.csv``, ``fleet.parquet`` and ``fleet.html``, all or none of them; return their paths."""
    out_dir = Path(out_dir)
    table = run.jobs
    paths = {"csv": out_dir / "fleet.csv", "parquet": out_dir / "fleet.parquet", "html": out_dir / "fleet.html"}
    with output_set(out_dir, key="fleet"):
        with atomic_path(paths["csv"]) as tmp:
            table.to_csv(tmp, index=False)
        with atomic_path(paths["parquet"]) as tmp:
            table.to_parquet(tmp, index=False)
        write_fleet_report(paths["html"], run.records)
    return paths

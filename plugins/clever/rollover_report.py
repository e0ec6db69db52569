"""The rollover report: clever_marts.rpt_rollover as one self-contained HTML page per
district, with charts, for the staff preparing a school-year (or term) rollover.

Written by the ``clever_rollover_report`` DAG and ``make report``
(``python -m clever_devkit.commands report``).

pandas and matplotlib are imported here, and this module is imported only by tasks and
the command line, never while Airflow parses DAGs. Charts are PNGs embedded in the page,
so the file can be mailed or attached to a ticket as it is.
"""

from __future__ import annotations

import base64
import html
import io
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a display

import matplotlib.pyplot as plt
import pandas as pd
import psycopg

from clever.dbt_runner import ARTIFACTS_DIR

REPORTS_DIR = Path(os.environ.get("CLEVER_REPORTS_DIR") or ARTIFACTS_DIR / "reports")
COMPARISONS = ("school_year", "term")

# rpt_rollover columns -> labels, in the order the tables show them
COUNT_LABELS = {
    "from_sections": "Sections (from)",
    "to_sections": "Sections (to)",
    "sections_ended": "Sections ended",
    "sections_started": "Sections started",
    "sections_continuing": "Sections continuing",
    "from_students": "Students (from)",
    "to_students": "Students (to)",
    "students_stayed": "Stayed",
    "students_changed_school_out": "Changed school (left)",
    "students_changed_school_in": "Changed school (joined)",
    "students_not_reenrolled": "Not re-enrolled",
    "new_students": "New students",
    "sections_archived": "Sections archived",
    "sections_restored": "Sections restored",
    "students_archived": "Students archived",
    "students_restored": "Students restored",
}
DEFINITIONS = (
    ("Enrolled", "on the roster (active or archived) of a section of the school whose term ran in the period."),
    ("Stayed", "enrolled at the school in both periods."),
    ("Changed school", "enrolled at this school in one period and at another school of the district, "
                       "not this one, in the other."),
    ("Not re-enrolled", "enrolled in the earlier period and nowhere in the district in the later one."),
    ("New students", "enrolled in the later period and nowhere in the district in the earlier one."),
    ("Sections ended / started", "ran in the earlier period only / in the later period only."),
    ("Archived / restored", "current state of the sections and students of the two periods: archived means "
                            "Clever no longer shares the record; restored means it was archived and came back."),
)
PALETTE = {"stayed": "#4c78a8", "changed": "#f58518", "left": "#e45756", "new": "#54a24b",
           "ended": "#9d755d", "started": "#72b7b2", "archived": "#b279a2", "restored": "#eeca3b"}


@dataclass(frozen=True)
class ReportResult:
    district: str
    path: Path
    from_period: str | None
    to_period: str | None
    schools: int


def load_rollover(conninfo: str, district: str, comparison: str) -> pd.DataFrame:
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT * FROM clever_marts.rpt_rollover WHERE district_slug = %s AND comparison = %s "
            "ORDER BY from_start_date, is_district_total, school_name NULLS LAST, school_id",
            (district, comparison))
        columns = [c.name for c in cur.description]
        return pd.DataFrame(cur.fetchall(), columns=columns)


def district_name(conninfo: str, district: str) -> str | None:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT name FROM clever_marts.dim_districts WHERE district_slug = %s "
                           "ORDER BY is_archived, clever_id LIMIT 1", (district,)).fetchone()
    return row[0] if row else None


def choose_pair(rollover: pd.DataFrame, from_period: str | None, today: date) -> tuple[str, str] | None:
    """The pair to report: ``from_period`` if given, else the latest rollover that has
    started by ``today``, else (all in the future) the first one."""
    pairs = (rollover[["from_period", "to_period", "to_start_date"]].drop_duplicates()
             .sort_values("to_start_date"))
    if pairs.empty:
        return None
    if from_period is not None:
        chosen = pairs[pairs["from_period"] == from_period]
        if chosen.empty:
            known = ", ".join(pairs["from_period"])
            raise ValueError(f"no rollover from period {from_period!r}; the warehouse has: {known}")
        row = chosen.iloc[0]
    else:
        started = pairs[pairs["to_start_date"] <= today]
        row = started.iloc[-1] if not started.empty else pairs.iloc[0]
    return str(row["from_period"]), str(row["to_period"])


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _stacked_by_school(schools: pd.DataFrame, parts: list[tuple[str, str, str]], title: str) -> str:
    labels = schools["school_label"].tolist()
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(labels) + 1.6))
    left = [0] * len(labels)
    for column, label, color in parts:
        values = schools[column].astype(int).tolist()
        drawn = ax.barh(labels, values, left=left, label=label, color=color)
        ax.bar_label(drawn, labels=[str(v) if v else "" for v in values], label_type="center",
                     fontsize=8, color="white")
        left = [a + b for a, b in zip(left, values, strict=True)]
    ax.set_xlim(left=0)
    ax.invert_yaxis()
    ax.set_title(title, loc="left", fontsize=11)
    ax.set_xlabel("students")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def _grouped_by_school(schools: pd.DataFrame, bars: list[tuple[str, str, str]], title: str, unit: str) -> str:
    labels = schools["school_label"].tolist()
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(labels) * max(1, len(bars) / 2) + 1.6))
    height = 0.8 / len(bars)
    for i, (column, label, color) in enumerate(bars):
        positions = [y + i * height for y in range(len(labels))]
        values = schools[column].astype(int).tolist()
        drawn = ax.barh(positions, values, height=height, label=label, color=color)
        ax.bar_label(drawn, labels=[str(v) if v else "" for v in values], padding=2, fontsize=8)
    ax.set_xlim(left=0)
    ax.set_yticks([y + height * (len(bars) - 1) / 2 for y in range(len(labels))], labels)
    ax.invert_yaxis()
    ax.set_title(title, loc="left", fontsize=11)
    ax.set_xlabel(unit)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def _table(frame: pd.DataFrame) -> str:
    table = frame.to_html(index=False, escape=True, border=0, classes="counts", na_rep="")
    return f"<div class='scroll'>{table}</div>"


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1100px;
     color:#222;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
.meta{color:#666;font-size:.9rem}.cards{display:flex;flex-wrap:wrap;gap:.6rem;margin:1rem 0}
.card{border:1px solid #ddd;border-radius:6px;padding:.5rem .8rem;min-width:8.5rem}
.card .n{font-size:1.4rem;font-weight:600}.card .l{font-size:.8rem;color:#555}
table.counts{border-collapse:collapse;font-size:.78rem;width:100%}
table.counts th,table.counts td{border-bottom:1px solid #eee;padding:.25rem .3rem;text-align:right}
table.counts th{white-space:normal;vertical-align:bottom;font-weight:600;hyphens:auto}
table.counts td{white-space:nowrap}.note{font-size:.9rem;background:#f6f6f0;padding:.4rem .6rem}
@media print{body{max-width:none;margin:0}.scroll{overflow:visible}table.counts{font-size:.7rem}}
table.counts th:first-child,table.counts td:first-child{text-align:left}
img{max-width:100%}.scroll{overflow-x:auto}dt{font-weight:600}dd{margin:0 0 .4rem 1rem}
"""


def _double_count_note(schools: pd.DataFrame, total: pd.Series) -> str:
    """Why the school rows can add up to more than the whole-district row."""
    sums = [(int(schools[column].sum()), int(total[column]), label)
            for column, label in (("from_students", "earlier"), ("to_students", "later"))]
    here = "; ".join(f"in the {label} period the schools' students add up to {school_sum:,}, the district's are "
                     f"{district_sum:,}" for school_sum, district_sum, label in sums if school_sum > district_sum)
    return ("<p class='note' id='double-count'>A student enrolled in sections at two schools counts at each of "
            "them, so the school rows can add up to more than the whole-district row, which counts every student "
            f"once{': ' + _e(here) if here else ''}.</p>")


def render_html(district: str, name: str | None, comparison: str, rollover: pd.DataFrame,
                pair: tuple[str, str] | None, generated_at: datetime) -> str:
    title = f"Rollover report: {name or district}"
    head = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{_e(title)}</h1>")
    meta = f"district <code>{_e(district)}</code> · generated {_e(generated_at.strftime('%Y-%m-%d %H:%M UTC'))}"
    if pair is None:
        return (f"{head}<p class='meta'>{meta}</p><p>No rollover to report yet: the warehouse has no two "
                f"consecutive {'school years' if comparison == 'school_year' else 'terms'} with sections for "
                "this district. Sync the district, or check that its terms have start and end dates.</p>"
                "</body></html>")

    rows = rollover[(rollover["from_period"] == pair[0]) & (rollover["to_period"] == pair[1])]
    total = rows[rows["is_district_total"]].iloc[0]
    schools = rows[~rows["is_district_total"]].copy()
    schools["school_label"] = schools["school_name"].fillna(schools["school_id"]).astype(str)
    as_of = total["data_as_of"]
    meta += f" · data as of {_e(pd.Timestamp(as_of).strftime('%Y-%m-%d %H:%M UTC'))}" if pd.notna(as_of) else ""
    kind = "School year" if comparison == "school_year" else "Term"
    parts = [head, f"<p class='meta'>{meta}</p>",
             f"<h2>{_e(kind)} {_e(total['from_period_name'])} → {_e(total['to_period_name'])}</h2>",
             f"<p class='meta'>{_e(total['from_start_date'])} – {_e(total['from_end_date'])} compared with "
             f"{_e(total['to_start_date'])} – {_e(total['to_end_date'])}, whole district.</p>"]

    cards = [("from_students", "Students, earlier period"), ("to_students", "Students, later period"),
             ("students_stayed", "Stayed at their school"), ("students_changed_school_out", "Changed school"),
             ("students_not_reenrolled", "Not re-enrolled"), ("new_students", "New students"),
             ("sections_ended", "Sections ended"), ("sections_started", "Sections started"),
             ("sections_archived", "Sections archived"), ("sections_restored", "Sections restored"),
             ("students_archived", "Students archived"), ("students_restored", "Students restored")]
    parts.append("<div class='cards'>" + "".join(
        f"<div class='card' data-metric='{column}'><div class='n'>{int(total[column])}</div>"
        f"<div class='l'>{_e(label)}</div></div>" for column, label in cards) + "</div>")

    if not schools.empty:
        charts = [
            ("Where the earlier period's students went", _stacked_by_school(schools, [
                ("students_stayed", "stayed", PALETTE["stayed"]),
                ("students_changed_school_out", "changed school", PALETTE["changed"]),
                ("students_not_reenrolled", "not re-enrolled", PALETTE["left"])],
                "Earlier period's students, by school")),
            ("Where the later period's students came from", _stacked_by_school(schools, [
                ("students_stayed", "stayed", PALETTE["stayed"]),
                ("students_changed_school_in", "changed school", PALETTE["changed"]),
                ("new_students", "new", PALETTE["new"])],
                "Later period's students, by school")),
            ("Sections ended and started", _grouped_by_school(schools, [
                ("sections_ended", "ended", PALETTE["ended"]),
                ("sections_started", "started", PALETTE["started"])],
                "Sections by school", "sections")),
        ]
        archive_columns = ["sections_archived", "sections_restored", "students_archived", "students_restored"]
        any_archive_activity = bool(schools[archive_columns].to_numpy().any())
        if any_archive_activity:
            charts.append(("Archived and restored", _grouped_by_school(schools, [
                ("sections_archived", "sections archived", PALETTE["archived"]),
                ("sections_restored", "sections restored", PALETTE["restored"]),
                ("students_archived", "students archived", PALETTE["left"]),
                ("students_restored", "students restored", PALETTE["new"])],
                "Archived and restored records by school", "records")))
        for heading, png in charts:
            parts.append(f"<h2>{_e(heading)}</h2><img alt='{_e(heading)}' src='data:image/png;base64,{png}'>")
        if not any_archive_activity:
            parts.append("<h2>Archived and restored</h2><p>None of the sections or students of these two "
                         "periods is archived, and none was ever archived and restored.</p>")

    table = rows.assign(School=rows["school_name"].where(~rows["is_district_total"], "Whole district")
                        .fillna(rows["school_id"]))
    parts.append("<h2>By school</h2>" + _double_count_note(schools, total)
                 + _table(table[["School", *COUNT_LABELS]].rename(columns=COUNT_LABELS)))

    history = rollover[rollover["is_district_total"]].assign(
        Rollover=lambda f: f["from_period_name"] + " → " + f["to_period_name"])
    parts.append(f"<h2>Every {_e(kind.lower())} rollover in the warehouse (whole district)</h2>"
                 + _table(history[["Rollover", *COUNT_LABELS]].rename(columns=COUNT_LABELS)))
    parts.append("<h2>Definitions</h2><dl>" + "".join(
        f"<dt>{_e(term)}</dt><dd>{_e(text)}</dd>" for term, text in DEFINITIONS) + "</dl>")
    parts.append("<p class='meta'>Source: <code>clever_marts.rpt_rollover</code> (readable by the "
                 "<code>clever_bi</code> role).</p></body></html>")
    return "".join(parts)


def write_report(conninfo: str, district: str, comparison: str = "school_year", from_period: str | None = None,
                 out_dir: Path | None = None, today: date | None = None) -> ReportResult:
    """Render one district's report to ``<out_dir>/rollover_<district>[_term].html``."""
    if comparison not in COMPARISONS:
        raise ValueError(f"comparison must be one of {', '.join(COMPARISONS)}, not {comparison!r}")
    generated_at = datetime.now(UTC)
    rollover = load_rollover(conninfo, district, comparison)
    pair = choose_pair(rollover, from_period, today or generated_at.date())
    page = render_html(district, district_name(conninfo, district), comparison, rollover, pair, generated_at)
    out_dir = Path(out_dir or REPORTS_DIR)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"rollover_{district}{'' if comparison == 'school_year' else '_' + comparison}.html"
    staging = path.with_suffix(".html.tmp")
    staging.write_text(page, encoding="utf-8")
    os.replace(staging, path)  # readers never see half a report
    schools = 0 if pair is None else int(((rollover["from_period"] == pair[0]) & ~rollover["is_district_total"]).sum())
    return ReportResult(district, path, pair[0] if pair else None, pair[1] if pair else None, schools)

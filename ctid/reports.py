"""Reports (RP-5): statistics, the monthly agent report and log searches as a terminal table, CSV or HTML.

A report is a title and :class:`Section` s (a table, optionally charted).
:func:`stats_report`, :func:`monthly_report` and :func:`log_report` build
them from :mod:`ctid.stats` results; :func:`render` writes one in a format.
HTML pages are self-contained: inline CSS and inline SVG charts drawn with
pygal (static: no script is loaded, nothing fetched), so they can be mailed
or archived.
Times are stored in UTC and shown in the report's time zone.
"""

from __future__ import annotations

import csv
import html
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from typing import Any

import pygal
from pygal.style import CleanStyle

from ctid.stats import LogSearch, PeriodStats

__all__ = ["FORMATS", "Chart", "Column", "Report", "Section", "as_data", "local_period", "log_report", "monthly_report",
           "render", "stats_report"]

FORMATS = ("table", "csv", "html")


@dataclass(frozen=True)
class Column:
    """A column: its heading and kind (text, int, number, seconds, percent, time)."""

    name: str
    kind: str = "text"


@dataclass(frozen=True)
class Chart:
    """How to chart a section: ``kind`` (bar, pie, line), the label column, the value columns, rows to take."""

    kind: str
    label: str
    values: tuple[str, ...]
    first_rows: int | None = None


@dataclass(frozen=True)
class Section:
    """One table of a report."""

    title: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[Any, ...], ...]
    chart: Chart | None = None


@dataclass(frozen=True)
class Report:
    """A titled list of sections, shown in ``tz``."""

    title: str
    sections: tuple[Section, ...]
    tz: tzinfo = field(default=UTC)


def local_period(start: str, end: str, tz: tzinfo) -> tuple[datetime, datetime]:
    """``[start, end)`` given as ISO dates or times in ``tz`` (``2026-05-04``, ``2026-05-04T09:30``), as naive UTC."""
    bounds = []
    for name, text in (("start", start), ("end", end)):
        try:
            value = datetime.fromisoformat(text.strip())
        except (ValueError, AttributeError):
            raise ValueError(f"{name} must be an ISO date or time such as 2026-05-04 or 2026-05-04T09:30, "
                             f"got {text!r}") from None
        if value.tzinfo is None:
            value = value.replace(tzinfo=tz)
        bounds.append(value.astimezone(UTC).replace(tzinfo=None))
    if bounds[1] <= bounds[0]:
        raise ValueError(f"the period must end after it starts ({start} .. {end})")
    return bounds[0], bounds[1]


def _local(value: datetime, tz: tzinfo) -> datetime:
    return value.replace(tzinfo=UTC).astimezone(tz)


def _shown(value: Any, kind: str, tz: tzinfo) -> str:
    """A value as people read it."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return _local(value, tz).strftime("%Y-%m-%d %H:%M:%S")
    if kind == "percent":
        return f"{value * 100:.1f} %"
    if kind == "seconds":
        return f"{value:.1f} s"
    if kind == "number":
        return f"{value:.2f}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _raw(value: Any, tz: tzinfo) -> Any:
    """A value as a spreadsheet reads it: ISO times with their offset, plain numbers, empty for none."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return _local(value, tz).isoformat()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, Decimal):
        return str(value)
    return value


def _period(stats: PeriodStats, tz: tzinfo) -> str:
    return f"{_shown(stats.start, 'time', tz)} to {_shown(stats.end, 'time', tz)}"


def stats_report(stats: PeriodStats, tz: tzinfo = UTC, target_level: float | None = None) -> Report:
    """RP-2, RP-3, RP-4 and staffing for a period."""
    v, k = stats.volumes, stats.total
    served = (("self-service (IVR)", v.self_service), ("agents", v.manual), ("other (left in the IVR)", v.other))
    volume = Section("Volumes", (Column("served by"), Column("calls", "int")),
                     (*served, ("total", v.total), ("abandoned waiting", v.abandoned)),
                     Chart("pie", "served by", ("calls",), first_rows=len(served)))
    trunks = Section("Lines and trunks", (Column("trunk"), Column("calls", "int"), Column("seconds", "seconds"),
                                          Column("Erlangs", "number")),
                     tuple((t.trunk, t.calls, t.seconds, t.erlangs) for t in v.trunks),
                     Chart("bar", "trunk", ("calls",)))
    columns = (Column("queue"), Column("offered", "int"), Column("answered", "int"), Column("abandoned", "int"),
               Column("short abandons", "int"), Column("service level", "percent"), Column("ASA", "seconds"),
               Column("AHT", "seconds"), Column("abandon rate", "percent"), Column("FCR", "percent"),
               Column("satisfaction", "number"))
    rows = tuple((q.queue or "all queues", q.offered, q.answered, q.abandoned, q.short_abandoned, q.service_level,
                  q.asa, q.aht, q.abandon_rate, q.fcr, q.satisfaction) for q in (*stats.queues, k))
    queues = Section("Queues", columns, rows, Chart("bar", "queue", ("service level", "abandon rate")))
    centre = Section("Centre", (Column("figure"), Column("value", "percent")),
                     (("occupancy", k.occupancy), ("utilisation", k.utilisation), ("first-contact resolution", k.fcr),
                      ("satisfied callers (4-5 of 5)", k.satisfied_share)))
    sections = [volume, trunks, queues, centre, _agents(stats, "Agents")]
    if stats.staffing:
        title = "Staffing" + (f" (agents needed for {target_level * 100:.0f} % target)" if target_level else "")
        sections.append(Section(title, (Column("queue"), Column("from", "time"), Column("Erlangs", "number"),
                                        Column("agents", "int"), Column("expected SL", "percent"),
                                        Column("expected ASA", "seconds"), Column("abandon", "percent")),
                                tuple((s.queue, s.start, s.performance.load, s.agents, s.performance.service_level,
                                       s.performance.asa, s.performance.p_abandon) for s in stats.staffing),
                                Chart("line", "from", ("agents",))))
    return Report(f"Call centre statistics, {_period(stats, tz)}", tuple(sections), tz)


def _agents(stats: PeriodStats, title: str) -> Section:
    columns = (Column("agent"), Column("calls served", "int"), Column("complaints", "int"),
               Column("consultations", "int"), Column("service time", "seconds"), Column("average service", "seconds"),
               Column("waits", "int"), Column("average wait", "seconds"), Column("no answer", "int"),
               Column("not hung up", "int"), Column("occupancy", "percent"))
    rows = tuple((a.agent_id, a.served, a.complaints, a.consultations, a.service_total, a.service_avg, a.waits,
                  a.wait_avg, a.no_answer, a.not_hung_up, a.occupancy) for a in stats.agents)
    return Section(title, columns, rows, Chart("bar", "agent", ("calls served", "complaints", "consultations")))


def monthly_report(stats: PeriodStats, tz: tzinfo = UTC) -> Report:
    """RP-3's monthly agent report: one line per agent."""
    month = _local(stats.start, tz).strftime("%Y-%m")
    return Report(f"Monthly agent report {month}", (_agents(stats, "Agents"),), tz)


def log_report(search: LogSearch, title: str, tz: tzinfo = UTC) -> Report:
    """RP-1: the rows a log search found."""
    columns = tuple(Column(name, "time" if name.endswith("_at") or name == "at" else "text")
                    for name in search.columns)
    note = " (first rows only: narrow the search)" if search.truncated else ""
    return Report(title, (Section(f"{search.log} log: {len(search.rows)} rows{note}", columns, search.rows),), tz)


def _table(report: Report) -> str:
    out = [report.title, "=" * len(report.title)]
    for section in report.sections:
        cells = [[c.name for c in section.columns]]
        cells += [[_shown(v, c.kind, report.tz) for v, c in zip(row, section.columns, strict=True)]
                  for row in section.rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(section.columns))]
        right = [c.kind != "text" for c in section.columns]
        out += ["", section.title, "-" * len(section.title)]
        for n, row in enumerate(cells):
            out.append("  ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(row, widths, right, strict=True))
                       .rstrip())
            if n == 0:
                out.append("  ".join("-" * w for w in widths))
        if not section.rows:
            out.append("(none)")
    return "\n".join(out) + "\n"


def _csv(report: Report) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for n, section in enumerate(report.sections):
        if len(report.sections) > 1:
            if n:
                writer.writerow([])
            writer.writerow([section.title])
        writer.writerow([c.name for c in section.columns])
        writer.writerows([_raw(v, report.tz) for v in row] for row in section.rows)
    return buffer.getvalue()


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}h1{font-size:1.5em}
h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ccc}table{border-collapse:collapse;margin:.5em 0}
th,td{padding:.25em .7em;border-bottom:1px solid #eee}th{background:#f4f4f4;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}.chart{max-width:760px}"""

_CHARTS = {"bar": pygal.Bar, "pie": pygal.Pie, "line": pygal.Line}


def _chart_svg(section: Section, tz: tzinfo) -> str:
    """The section's chart as inline SVG (one series per value column; a line chart per label)."""
    chart_spec = section.chart
    if chart_spec is None or not section.rows:
        return ""
    names = [c.name for c in section.columns]
    rows = section.rows[:chart_spec.first_rows]
    labels = [_shown(row[names.index(chart_spec.label)], "text", tz) for row in rows]
    chart = _CHARTS[chart_spec.kind](style=CleanStyle, disable_xml_declaration=True, js=[], width=760, height=340,
                                     legend_at_bottom=True, x_label_rotation=30 if len(labels) > 6 else 0,
                                     print_values=False, truncate_legend=-1)
    chart.title = section.title
    series = [(name, [row[names.index(name)] for row in rows]) for name in chart_spec.values]
    if chart_spec.kind == "pie":
        for label, value in zip(labels, series[0][1], strict=True):
            chart.add(label, value or 0)
    elif chart_spec.kind == "line" and section.columns[0].name == "queue":
        _lines_per_queue(chart, section, names, chart_spec, tz)
    else:
        chart.x_labels = labels
        for name, values in series:
            percent = section.columns[names.index(name)].kind == "percent"
            chart.add(name, [None if v is None else (v * 100 if percent else v) for v in values])
    return chart.render(is_unicode=True)


def _lines_per_queue(chart, section: Section, names: list[str], spec: Chart, tz: tzinfo) -> None:
    times = sorted({row[names.index(spec.label)] for row in section.rows})
    chart.x_labels = [_shown(t, "time", tz)[5:16] for t in times]
    by_queue: dict[str, dict[datetime, Any]] = {}
    for row in section.rows:
        by_queue.setdefault(row[0], {})[row[names.index(spec.label)]] = row[names.index(spec.values[0])]
    for queue, values in sorted(by_queue.items()):
        chart.add(queue, [values.get(t) for t in times])


def _html_table(section: Section, tz: tzinfo) -> list[str]:
    out = ["<table><thead><tr>" + "".join(f"<th>{html.escape(c.name)}</th>" for c in section.columns)
           + "</tr></thead><tbody>"]
    for row in section.rows:
        cells = "".join(f"<td{' class=n' if c.kind != 'text' else ''}>{html.escape(_shown(v, c.kind, tz))}</td>"
                        for v, c in zip(row, section.columns, strict=True))
        out.append(f"<tr>{cells}</tr>")
    out.append("</tbody></table>" if section.rows else "</tbody></table><p>(none)</p>")
    return out


def _html(report: Report) -> str:
    title = html.escape(report.title)
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{title}</title>",
           f"<style>{_CSS}</style></head><body>", f"<h1>{title}</h1>"]
    for section in report.sections:
        out.append(f"<h2>{html.escape(section.title)}</h2>")
        svg = _chart_svg(section, report.tz)
        if svg:
            out.append(f'<div class="chart">{svg}</div>')
        out += _html_table(section, report.tz)
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def as_data(report: Report, max_rows: int | None = None) -> dict[str, Any]:
    """``report`` as JSON-ready data (raw values as in CSV); sections cut at ``max_rows`` say ``truncated``."""
    return {"title": report.title, "sections": [
        {"title": s.title, "columns": [c.name for c in s.columns],
         "rows": [[_raw(v, report.tz) for v in row] for row in s.rows[:max_rows]],
         "truncated": max_rows is not None and len(s.rows) > max_rows}
        for s in report.sections]}


_RENDERERS = {"table": _table, "csv": _csv, "html": _html}


def render(report: Report, fmt: str) -> str:
    """``report`` as text in ``fmt``: table (terminal), csv, or html."""
    if fmt not in _RENDERERS:
        raise ValueError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    return _RENDERERS[fmt](report)


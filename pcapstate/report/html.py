"""``pcapstate report CAPTURE -o report.html``: one self-contained page about a capture.

Order of the page: the summary (packets, connections, time span, decoder
warnings), the anomalies worst first, the connections counted by final state
pair with the overview pictures (state timelines, census, retry intervals),
the table of connections, and then one section per connection with its ladder
and its transitions.  Pictures are SVG embedded as ``data:`` URIs, so the file
needs nothing else: no script, no stylesheet, no network.

Every string that comes from the capture or its name (addresses, the source
path, decoder warnings that quote the input, anomaly sentences) goes through
:func:`html.escape`.  At most ``max_flows`` connections get a section (those
with anomalies first, worst first, then in flow order); the page says how many
were left out.  The same capture gives the same bytes: no date, stable SVG ids.
"""
from __future__ import annotations

import base64
import io
import itertools
from html import escape

import pandas as pd

from pcapstate import __version__
from pcapstate.report.text import endpoint, seconds

MAX_FLOWS = 50
MAX_TABLE_ROWS = 500

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1250px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 2px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.warning { color: #8a4b00; } .anomaly { color: #b02a00; } .muted { color: #666; }
img { max-width: 100%; height: auto; display: block; margin: 0.6em 0; border: 1px solid #eee; }
section.flow { border-top: 1px solid #ccc; margin-top: 1.5em; }
code { font-size: 12px; }
"""


def render(analysis, max_flows: int = MAX_FLOWS) -> str:
    """The report page as a string."""
    source = str(analysis.table.source)
    parts = [f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
             f"<title>pcapstate report: {escape(source)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>"]
    parts += _summary(analysis, source)
    parts += _anomalies(analysis.anomalies)
    parts += _overview(analysis)
    chosen = chosen_flows(analysis, max_flows)
    parts += _connections(analysis, set(chosen))
    parts += ["<h2>Connections in detail</h2>"]
    left_out = analysis.connection_count - len(chosen)
    if left_out:
        parts.append(f"<p class=\"muted\">{len(chosen)} of {analysis.connection_count} connections are drawn "
                     f"below (those with anomalies first); {left_out} were left out. "
                     f"<code>pcapstate plot ladder CAPTURE --flow ID</code> draws any of them.</p>")
    for flow_id in chosen:
        parts += _flow_section(analysis, flow_id)
    parts.append(f'<p class="muted">Made by pcapstate {escape(__version__)}.</p>\n</body>\n</html>\n')
    return "\n".join(parts)


def write_report(analysis, path, max_flows: int = MAX_FLOWS) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(render(analysis, max_flows))


def chosen_flows(analysis, max_flows: int) -> list[int]:
    """The flows that get a section: those with anomalies (worst first), then the rest in order."""
    anomalies = analysis.anomalies.dropna(subset=["flow"])
    first = list(dict.fromkeys(int(f) for f in anomalies["flow"]))[:max_flows]
    chosen = set(first)  # (once: a set per flow made this quadratic, 1.7 s for 20,000 connections)
    rest = (f for f in range(analysis.connection_count) if f not in chosen)
    return first + list(itertools.islice(rest, max_flows - len(first)))


def _summary(analysis, source: str) -> list[str]:
    flows = analysis.flows
    span = float(flows["end_epoch"].max() - flows["start_epoch"].min()) if len(flows) else 0.0
    count = analysis.connection_count
    lines = [f"<h1>pcapstate report: {escape(source)}</h1>",
             f"<p>{len(analysis.table)} TCP packets, {count} connection{'' if count == 1 else 's'}, "  # (the
             # packet table's length: not the packets DataFrame, made only to be counted, most of the memory)
             f"{escape(seconds(span))}"
             + (f", from {escape(str(flows['start'].min()))} to {escape(str(flows['end'].max()))}" if count else "")
             + ".</p>"]
    if analysis.warnings:
        lines.append("<ul>" + "".join(f'<li class="warning">decoder warning: {escape(w)}</li>'
                                      for w in analysis.warnings) + "</ul>")
    return lines


def _anomalies(anomalies) -> list[str]:
    lines = [f"<h2>Anomalies ({len(anomalies)})</h2>"]
    if anomalies.empty:
        return lines + ["<p>None found.</p>"]
    rows = []
    for a in anomalies.head(MAX_TABLE_ROWS).itertuples(index=False):
        flow = "capture" if pd.isna(a.flow) else f'<a href="#flow-{int(a.flow)}">flow {int(a.flow)}</a>'
        rows.append([(str(a.kind), "anomaly"), (flow, "html"), _text(a.endpoint), _text(a.frame), _text(a.detail)])
    lines.append(_table(("kind", "where", "endpoint", "frame", "what"), rows))
    if len(anomalies) > MAX_TABLE_ROWS:
        lines.append(f"<p class=\"muted\">... and {len(anomalies) - MAX_TABLE_ROWS} more.</p>")
    return lines


def _overview(analysis) -> list[str]:
    from pcapstate.report.summary import census_lines

    lines = ["<h2>Connections by final state</h2>"]
    if not analysis.connection_count:
        return lines + ["<p>No TCP connection in this capture.</p>"]
    pairs = census_lines(analysis.columnar("flows"))[3:]  # the rows of the text table
    rows = [[_text(cell) for cell in line.split()] for line in pairs]
    lines.append(_table(("client", "server", "connections"), rows))
    lines.append(_picture("states", analysis, "each endpoint's state over time"))
    if analysis.connection_count > 1:
        lines.append(_picture("census", analysis, "connections in each state over time"))
    if len(analysis.retries):
        lines.append(_picture("retries", analysis, "retry intervals"))
    return lines


def _connections(analysis, detailed: set[int]) -> list[str]:
    flows = analysis.flows
    rows = []
    for f in flows.head(MAX_TABLE_ROWS).itertuples(index=False):
        name = f'<a href="#flow-{f.flow}">{f.flow}</a>' if f.flow in detailed else str(f.flow)
        rows.append([(name, "html"), _text(endpoint(f.client_addr, f.client_port)),
                     _text(endpoint(f.server_addr, f.server_port)), _text(seconds(f.duration)), _text(f.packets),
                     _text(f.client_state), _text(f.server_state), _text(f.handshake), _text(f.conn_state)])
    lines = ["<h2>Connections</h2>", _table(("flow", "client", "server", "duration", "packets", "client state",
                                             "server state", "handshake", "zeek"), rows)]
    if len(flows) > MAX_TABLE_ROWS:
        lines.append(f"<p class=\"muted\">... and {len(flows) - MAX_TABLE_ROWS} more connections.</p>")
    return lines


def _flow_section(analysis, flow_id: int) -> list[str]:
    parts = analysis.flow(flow_id)
    f = parts["flows"].iloc[0]
    title = (f"flow {flow_id}: client {endpoint(f['client_addr'], f['client_port'])}, "
             f"server {endpoint(f['server_addr'], f['server_port'])}")
    lines = [f'<section class="flow" id="flow-{flow_id}">', f"<h3>{escape(title)}</h3>",
             f"<p>{escape(str(f['handshake']))} handshake, {int(f['packets'])} packets over "
             f"{escape(seconds(float(f['duration'])))}; final states: client {_state(f['client_state'])}, "
             f"server {_state(f['server_state'])}.</p>"]
    for a in parts["anomalies"].itertuples(index=False):
        lines.append(f'<p class="anomaly">{escape(str(a.kind))}: {escape(str(a.detail))}</p>')
    lines.append(_picture("ladder", analysis, f"ladder of flow {flow_id}", flow_id))
    start = float(f["start_epoch"])
    rows = [[_text(f"{t.ts_epoch - start:.6f}"), _text(t.endpoint), _text(_state(t.from_state)),
             _text(_state(t.to_state)), _text(t.cause), _text(t.frame), _text(t.flags)]
            for t in parts["transitions"].itertuples(index=False)]
    lines += ["<h4>Transitions</h4>", _table(("time (s)", "endpoint", "from", "to", "cause", "frame", "flags"), rows),
              "</section>"]
    return lines


def _picture(kind: str, analysis, alt: str, flow_id: int | None = None) -> str:
    from pcapstate.report.plots import figure
    from pcapstate.report.plots.style import save_to

    buffer = io.BytesIO()
    save_to(figure(kind, analysis, flow_id), buffer, "svg")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{escape(alt)}" src="data:image/svg+xml;base64,{data}">'


def _table(headers, rows) -> str:
    """An HTML table; each cell is (content, "html") when already escaped markup, else (text, css class)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for content, kind in row:
            if kind == "html":
                cells.append(f"<td>{content}</td>")
            else:
                cells.append(f'<td class="{kind}">{escape(content)}</td>' if kind else f"<td>{escape(content)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(body) + "\n</tbody></table>"


def _text(value) -> tuple[str, str]:
    """A cell from a value: missing values as a dash, numbers right-aligned."""
    if value is None or pd.isna(value):
        return "-", ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value), "n"
    text = str(value)
    return text, "n" if text.replace(".", "", 1).isdigit() else ""


def _state(value) -> str:
    return "?" if value != value else str(value)

"""Golden expectations of an analysis, and the comparison ``pcapstate check`` runs.

An expectation file (``<capture>.expected.json`` beside the capture) holds what
the analysis of that capture must produce: its flows, transitions,
retransmissions, retry chains and anomalies, with state names rather than
numbers, times as seconds since the capture's first packet (microseconds), one
record per line so a change reads as a one-line diff.

:func:`compare` names every difference: which table, which flow, which field,
expected and got.

A capture set (``pcapstate check --set``) has one expectation file too, beside
its first file in time order; it also lists the set's files (``"files"``, in
set order), its frames are the set's global frame numbers, and its warnings
name files by their base name, so the expectations hold wherever the set lies.
"""
from __future__ import annotations

import difflib
import json
from pathlib import Path

SCHEMA = "pcapstate-expected/1"
TABLES = ("flows", "transitions", "retransmissions", "retries", "anomalies")
_COLUMNS = {
    "flows": ("flow", "client", "server", "packets", "duration", "client_state", "server_state", "handshake",
              "roles_guessed", "conn_state", "history"),
    "transitions": ("flow", "endpoint", "t", "frame", "from_state", "to_state", "flags", "cause", "evidence_frame"),
    "retransmissions": ("flow", "sender", "kind", "class", "frame", "original_frame", "attempt", "interval"),
    "retries": ("flow", "sender", "kind", "first_frame", "sends", "intervals", "pattern", "initial_rto",
                "answered", "answer_frame"),
    "anomalies": ("flow", "kind", "endpoint", "frame", "detail"),
}
EXPECTED_SUFFIX = ".expected.json"
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".pcap.gz", ".pcapng.gz", ".txt")


def expected_path(capture: Path) -> Path:
    """``samples/x.pcap`` -> ``samples/x.expected.json`` (also for .pcapng, .pcap.gz, …)."""
    name = capture.name
    for suffix in sorted(CAPTURE_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return capture.with_name(name + EXPECTED_SUFFIX)


def captures_in(directory: Path) -> list[Path]:
    """The captures of a directory: files with a capture suffix, in name order."""
    return sorted(p for p in directory.iterdir()
                  if p.is_file() and p.name.endswith(CAPTURE_SUFFIXES) and not p.name.endswith(EXPECTED_SUFFIX))


def expectations(analysis, capture_name: str, options: dict) -> dict:
    """The expectation document of an analysis."""
    import numpy as np

    from pcapstate.columns import Table, texts
    from pcapstate.report.jsonout import records
    from pcapstate.report.text import endpoint

    start = float(analysis.table["ts_ns"].min()) / 1e9 if len(analysis.table) else 0.0
    tables = {name: analysis.columnar(name) for name in ("flows", "transitions", "retransmissions", "retries",
                                                          "anomalies")}  # (as columns: no pandas)
    flows = tables["flows"]
    tables["flows"] = Table({**flows.columns, **{side: texts(
        endpoint(a, p) for a, p in zip(flows[f"{side}_addr"].objects().tolist(), flows[f"{side}_port"].tolist()))
        for side in ("client", "server")}})
    transitions = tables["transitions"]
    tables["transitions"] = Table({**transitions.columns, "t": np.round(transitions["ts_epoch"] - start, 6)})
    document = {"schema": SCHEMA, "capture": capture_name}
    warnings = list(analysis.warnings)
    if analysis.is_set:
        names = [f.name for f in analysis.table.files]
        document["files"] = [Path(name).name for name in names]
        warnings = [_base_named(w, names) for w in warnings]
    document.update({"options": options, "warnings": warnings})
    for name, table in tables.items():
        document[name] = records(Table({c: table[c] for c in _COLUMNS[name] if c in table.names}))
    return document


def _base_named(warning: str, names: list[str]) -> str:
    """A set's warning ``path/to/file: …`` as ``file: …`` (files read, and files skipped)."""
    for name in sorted(names, key=len, reverse=True):
        if warning.startswith(name + ": "):
            return Path(name).name + warning[len(name):]
    head, colon, rest = warning.partition(": ")
    if colon and "/" in head and " " not in head:  # a skipped file's path
        return Path(head).name + colon + rest
    return warning


def dumps(document: dict) -> str:
    """JSON with one record per line: small diffs, stable bytes."""
    lines = ["{"]
    keys = list(document)
    for i, key in enumerate(keys):
        comma = "," if i < len(keys) - 1 else ""
        value = document[key]
        if key in TABLES:
            rows = [_record(r) for r in value]
            body = ",\n".join("  " + r for r in rows)
            lines.append(f" {json.dumps(key)}: [\n{body}\n ]{comma}" if rows else f" {json.dumps(key)}: []{comma}")
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _record(record: dict) -> str:
    return "{" + ", ".join(f"{json.dumps(k)}: {_value(v)}" for k, v in record.items()) + "}"


def _value(value) -> str:
    """JSON for one value; floats in fixed notation (0.000045, not 4.5e-05)."""
    if isinstance(value, float):
        text = f"{value:.6f}".rstrip("0")
        return text + "0" if text.endswith(".") else text
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def compare(expected: dict, got: dict) -> list[str]:
    """Readable differences between two expectation documents (empty when equal)."""
    problems = []
    if expected.get("warnings", []) != got.get("warnings", []):
        problems.append(f"decoder warnings: expected {expected.get('warnings')}, got {got.get('warnings')}")
    for table in TABLES:
        problems += _compare_table(table, expected.get(table, []), got.get(table, []))
    return problems


def _compare_table(table: str, expected: list[dict], got: list[dict]) -> list[str]:
    if table == "flows":
        return _compare_flows(expected, got)
    problems = []
    flows = sorted({_flow_key(r) for r in expected + got}, key=lambda f: (f is None, f or 0))
    for flow in flows:
        mine = [r for r in expected if _flow_key(r) == flow]
        theirs = [r for r in got if _flow_key(r) == flow]
        where = f"{table}, flow {flow}" if flow is not None else f"{table}, capture-wide"
        if len(mine) == len(theirs):
            for i, (a, b) in enumerate(zip(mine, theirs)):
                problems += [f"{where}, row {i + 1}: {field}: expected {a.get(field)!r}, got {b.get(field)!r}"
                             for field in _fields(a, b) if a.get(field) != b.get(field)]
            continue
        matcher = difflib.SequenceMatcher(a=[_text(r) for r in mine], b=[_text(r) for r in theirs], autojunk=False)
        for op, i1, i2, j1, j2 in matcher.get_opcodes():
            problems += [f"{where}: missing {_text(r)}" for r in mine[i1:i2] if op in ("delete", "replace")]
            problems += [f"{where}: unexpected {_text(r)}" for r in theirs[j1:j2] if op in ("insert", "replace")]
    return problems


def _compare_flows(expected: list[dict], got: list[dict]) -> list[str]:
    problems = []
    by_id = {r.get("flow"): r for r in got}
    for flow in expected:
        other = by_id.pop(flow.get("flow"), None)
        name = f"flows, flow {flow.get('flow')} ({flow.get('client')} -> {flow.get('server')})"
        if other is None:
            problems.append(f"{name}: missing")
            continue
        problems += [f"{name}: {field}: expected {flow.get(field)!r}, got {other.get(field)!r}"
                     for field in _fields(flow, other) if flow.get(field) != other.get(field)]
    problems += [f"flows, flow {r.get('flow')} ({r.get('client')} -> {r.get('server')}): unexpected"
                 for r in by_id.values()]
    return problems


def _flow_key(record: dict):
    return record.get("flow")


def _fields(a: dict, b: dict) -> list[str]:
    return list(a) + [k for k in b if k not in a]


def _text(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False)


def load(path: Path) -> dict:
    """Read an expectation file; a missing or malformed one is a one-line error."""
    from pcapstate.errors import PcapstateError

    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PcapstateError(f"{path}: no expectations: create them with `pcapstate check --update`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PcapstateError(f"{path}: not an expectation file ({error})") from None
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise PcapstateError(f"{path}: not an expectation file (schema is not {SCHEMA})")
    return document

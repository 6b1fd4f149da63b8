"""`pcapstate analyze`: the summary, the ladder, JSON, and what goes wrong."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from command import run_pcapstate as run

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def test_summary_rows_and_census():
    out = run("analyze", str(SAMPLES / "client_closes_first.pcap")).stdout.splitlines()
    assert out[0].endswith("client_closes_first.pcap: 11 TCP packets, 1 connection, 0.506 s")
    assert out[2].split() == ["flow", "client", "server", "duration", "packets", "client", "state", "server",
                              "state", "handshake", "zeek"]
    assert out[4].split() == ["0", "10.77.0.1:40003", "10.77.0.2:5000", "0.506", "s", "11", "TIME_WAIT",
                              "CLOSED", "complete", "SF"]
    assert out[-1].split() == ["TIME_WAIT", "CLOSED", "1"]


def section(lines: list[str], title: str) -> list[str]:
    """The lines of one titled section of the summary, up to the next blank line."""
    start = lines.index(title)
    end = lines.index("", start) if "" in lines[start:] else len(lines)
    return lines[start + 1:end]


def test_census_counts_the_flood():
    out = run("analyze", str(SAMPLES / "syn_flood.pcap")).stdout.splitlines()
    assert section(out, "connections by final state")[-1].split() == ["SYN_SENT", "SYN_RCVD", "30"]


def test_anomalies_are_grouped_worst_first():
    out = run("analyze", str(SAMPLES / "syn_flood.pcap")).stdout.splitlines()
    anomalies = section(out, "anomalies, worst first")
    assert anomalies[0] == "  half_open_flood (1)"
    assert "30 half-open connections to 10.77.0.2:5000 from 30 sources" in anomalies[1]
    assert anomalies[2] == "  synack_unanswered (30)"
    assert anomalies[-1].startswith("    ... 27 more like these (flows 3, 4, 5")
    assert len(anomalies) == 7  # 30 findings of one kind do not make 30 lines


def test_timeline_ladder_of_one_flow():
    out = run("analyze", str(SAMPLES / "simultaneous_close.pcap"), "--flow", "0").stdout.splitlines()
    fins = [line for line in out if "[F.]" in line]
    assert len(fins) == 2
    assert "ESTABLISHED > FIN_WAIT_1" in fins[0] and "FIN_WAIT_1 > CLOSING*" in fins[0]
    assert "FIN_WAIT_1 > CLOSING*" in fins[1] and "ESTABLISHED > FIN_WAIT_1" in fins[1]
    assert "--[F.]" in fins[0] and "<--" in fins[1]  # client to server, then back
    assert any("CLOSED > LISTEN (assumed)" in line for line in out)
    arrows = [line for line in out if "-->" in line or "<--" in line]
    assert len(arrows) == 11  # one per packet


def test_timeline_for_every_flow_follows_the_summary():
    out = run("analyze", str(SAMPLES / "refused.pcap"), "--timeline").stdout
    assert "flow 0: client 10.77.0.1:40001, server 10.77.0.2:5000, partial handshake" in out
    assert "SYN_SENT > CLOSED*" in out


def test_json_has_flows_and_transitions_and_is_stable(tmp_path):
    first = run("analyze", str(SAMPLES / "fin_dropped.pcap"), "--format", "json").stdout
    assert run("analyze", str(SAMPLES / "fin_dropped.pcap"), "--format", "json").stdout == first
    document = json.loads(first)
    assert document["schema"] == "pcapstate/1"
    assert [f["server_state"] for f in document["flows"]] == ["ESTABLISHED"]
    assert document["transitions"][0] == {
        "flow": 0, "endpoint": "client", "ts": document["flows"][0]["start"],
        "ts_epoch": document["flows"][0]["start_epoch"], "frame": 1, "from_state": "CLOSED",
        "to_state": "SYN_SENT", "flags": "S", "cause": "sent", "evidence_frame": None}


def test_json_to_a_file_for_one_flow(tmp_path):
    target = tmp_path / "out.json"
    run("analyze", str(SAMPLES / "syn_flood.pcap"), "--flow", "3", "--format", "json", "-o", str(target))
    document = json.loads(target.read_text())
    assert [f["flow"] for f in document["flows"]] == [3]
    assert {t["flow"] for t in document["transitions"]} == {3}


def test_tcpdump_text_input(tmp_path):
    text = run("packets", str(SAMPLES / "client_closes_first.pcap")).stdout
    pasted = tmp_path / "pasted.txt"
    pasted.write_text(text)
    from_text = json.loads(run("analyze", str(pasted), "--format", "json").stdout)
    from_pcap = json.loads(run("analyze", str(SAMPLES / "client_closes_first.pcap"), "--format", "json").stdout)
    walk = [(t["endpoint"], t["from_state"], t["to_state"], t["cause"]) for t in from_text["transitions"]]
    assert walk == [(t["endpoint"], t["from_state"], t["to_state"], t["cause"]) for t in from_pcap["transitions"]]


@pytest.mark.parametrize("args, message", [
    (["--flow", "7"], "refused.pcap: no flow 7 (the capture has flows 0 to 0)"),
])
def test_bad_options_are_one_line_errors(args, message):
    result = run("analyze", str(SAMPLES / "refused.pcap"), *args, check=False)
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.splitlines()) == 1


def test_bad_capture_is_one_line_and_status_2(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    result = run("analyze", str(junk), check=False)
    assert result.returncode == 2
    assert result.stderr == f"pcapstate: error: {junk}: not a pcap, pcapng or tcpdump text capture\n"


def test_unwritable_output_is_one_line(tmp_path):
    result = run("analyze", str(SAMPLES / "refused.pcap"), "-o", str(tmp_path / "no" / "such" / "dir.json"),
                 check=False)
    assert result.returncode == 2 and result.stderr.startswith("pcapstate: error:")
    assert len(result.stderr.splitlines()) == 1


def test_console_script_and_module_agree():
    import shutil

    script = shutil.which("pcapstate")
    assert script, "the pcapstate console script is installed"
    direct = subprocess.run([script, "analyze", str(SAMPLES / "refused.pcap")], capture_output=True, text=True)
    assert direct.stdout == run("analyze", str(SAMPLES / "refused.pcap")).stdout


def test_disorder_duplicates_and_garbage_are_visible(tmp_path):
    from builder import Talk, write_pcap

    talk = Talk()
    talk.client("S")
    talk.server("S.")
    talk.client(".")
    talk.client("FS")  # garbage flags
    talk.client("F.")
    talk.server(".")
    frames = talk.frames()
    frames = [frames[0], frames[2], frames[1], frames[3], frames[4], frames[4], frames[5]]  # disorder, a copy
    path = write_pcap(tmp_path / "awkward.pcap", frames)
    result = run("analyze", str(path))
    assert "1 packets are earlier than the packet before them" in result.stderr
    lines = result.stdout.splitlines()
    notes = {tuple(line.split()[:3]) for line in section(
        lines, "packets that repeat a step or make no sense in the state they met")}
    assert ("repeat", "sender", "1") in notes  # the duplicated FIN
    assert "  invalid_flags (1)" in section(lines, "anomalies, worst first")


ZEEK_TRACES = Path(__file__).resolve().parent.parent.parent / "shared" / "conformance" / "zeek" / "traces"


def test_retries_of_data_resent_without_a_timeout_to_measure_show_no_initial_rto():
    """smtp.pcap's data chains have no initial RTO (NaN): it printed a traceback once."""
    result = run("retries", str(ZEEK_TRACES / "smtp.pcap"))
    rows = [line for line in result.stdout.splitlines() if line.lstrip().startswith(("0 ", "3 "))]
    assert len(rows) == 5 and all(row.split()[-3] == "-" for row in rows)
    assert "retransmissions by kind and class: 6 timeout data" in result.stdout


@pytest.mark.parametrize("command", [["analyze"], ["analyze", "--flow", "0"], ["analyze", "--timeline"],
                                     ["retries"], ["retries", "--flow", "0"], ["check"]])
def test_text_commands_never_import_pandas(command):
    """pandas would double their start-up on a small capture (0.2 s against 0.36-0.45 s here)."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "pcapstate", *command,
                             str(SAMPLES / "fin_dropped.pcap")], capture_output=True, text=True)
    assert result.returncode == 0
    assert any(said in result.stdout for said in ("10.77.0.1:40008", "sent more than once", "1 capture checked: 1 ok"))
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "pcapstate.cli" in imported and not {m for m in imported if m.split(".")[0] == "pandas"}

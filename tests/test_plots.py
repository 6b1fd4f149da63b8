"""pcapstate plot ladder|states|retries|census: real images of the stated size, built from the DataFrames.

The figures are inspected through their artists (arrows, lines, texts and the
renderer's bounding boxes of the texts), not their pixels.
"""
from __future__ import annotations

import re
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.patches import FancyArrowPatch
from matplotlib.text import Text

from pcapstate.analysis import analyze
from pcapstate.report import plots
from pcapstate.report.plots.census import COUNTED, census
from command import run_pcapstate as run

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
ALL = sorted(p.stem for p in SAMPLES.glob("*.pcap"))
WITH_FLOWS = [name for name in ALL if name != "listen_no_client"]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "a PNG file"
    return struct.unpack(">II", data[16:24])


def svg_size(path: Path) -> tuple[int, int]:
    root = ET.parse(path).getroot()  # well-formed XML
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    width, height = (float(root.get(k).removesuffix("pt")) for k in ("width", "height"))
    return round(width * 100 / 72), round(height * 100 / 72)  # points at 72/in, pixels at 100/in


def stated_size(stdout: str) -> tuple[int, int]:
    match = re.search(r", (\d+) x (\d+) px$", stdout.strip())
    assert match, stdout
    return int(match[1]), int(match[2])


def arrows(fig) -> list[FancyArrowPatch]:
    return [p for ax in fig.axes for p in ax.patches
            if isinstance(p, FancyArrowPatch) and (p.get_gid() or "").startswith("packet ")]


def overlapping_texts(fig) -> list[tuple[str, str]]:
    """Pairs of visible texts whose rendered bounding boxes overlap; texts that leave the figure."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    hidden = _tick_labels_out_of_view(fig)
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip() and id(t) not in hidden]
    boxes = [(t.get_text(), t.get_window_extent(renderer).expanded(0.98, 0.9)) for t in texts]
    figure_box = fig.bbox
    problems = [(text, "outside the figure") for text, box in boxes
                if box.x0 < figure_box.x0 - 1 or box.x1 > figure_box.x1 + 1 or box.y0 < figure_box.y0 - 1
                or box.y1 > figure_box.y1 + 1]
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1:]:
            if box_a.overlaps(box_b):
                problems.append((a, b))
    return problems


def _tick_labels_out_of_view(fig) -> set[int]:
    """Tick labels matplotlib keeps but does not draw: their tick lies outside the axis' view."""
    hidden = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            slack = (high - low) * 1e-9
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not low - slack <= tick.get_loc() <= high + slack:
                    hidden |= {id(tick.label1), id(tick.label2)}
    return hidden


@pytest.fixture(scope="module")
def analyses():
    return {name: analyze(SAMPLES / f"{name}.pcap") for name in ALL}


# --- every kind, from the samples, as a real file ------------------------------------------


@pytest.mark.parametrize("kind, sample", [("ladder", "simultaneous_close"), ("states", "syn_flood"),
                                          ("retries", "synack_dropped"), ("census", "syn_flood")])
@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_each_kind_is_a_valid_image_of_the_stated_size(tmp_path, kind, sample, suffix):
    target = tmp_path / f"{kind}{suffix}"
    out = run("plot", kind, str(SAMPLES / f"{sample}.pcap"), "-o", str(target)).stdout
    assert out.startswith(f"{target}: {kind}")
    size = png_size(target) if suffix == ".png" else svg_size(target)
    assert size == stated_size(out)
    assert min(size) >= 300


def test_size_option_is_obeyed(tmp_path):
    target = tmp_path / "c.png"
    out = run("plot", "census", str(SAMPLES / "syn_flood.pcap"), "-o", str(target), "--size", "1600x900").stdout
    assert png_size(target) == stated_size(out) == (1600, 900)


_DRAW_ALL = """
import sys
from pcapstate.analysis import analyze
from pcapstate.report import plots
a = analyze(sys.argv[1])
for kind in plots.KINDS:
    for suffix in (".png", ".svg"):
        plots.save(plots.figure(kind, a), f"{sys.argv[2]}/{kind}{suffix}")
"""


def test_pictures_are_byte_stable_across_processes(tmp_path):
    """Every kind, PNG and SVG, drawn in two processes with different hash seeds: the same bytes."""
    import os

    drawn = []
    for seed in ("1", "2"):
        where = tmp_path / seed
        where.mkdir()
        subprocess.run([sys.executable, "-c", _DRAW_ALL, str(SAMPLES / "fin_dropped.pcap"), str(where)], check=True,
                       env=dict(os.environ, PYTHONHASHSEED=seed))
        drawn.append({f.name: f.read_bytes() for f in sorted(where.iterdir())})
    assert len(drawn[0]) == 2 * len(plots.KINDS)
    assert drawn[0] == drawn[1]


# --- ladder ------------------------------------------------------------------------------------


@pytest.mark.parametrize("sample", WITH_FLOWS)
def test_ladder_draws_one_arrow_per_packet_without_overlapping_text(analyses, sample):
    a = analyses[sample]
    for flow in range(min(a.connection_count, 3)):
        packets = a.flow(flow)["packets"]
        fig = plots.figure("ladder", a, flow)
        drawn = arrows(fig)
        if len(packets) <= 60:
            assert len(drawn) == len(packets)
            assert sorted(int(p.get_gid().split()[1]) for p in drawn) == sorted(packets["frame"].tolist())
        else:
            assert len(drawn) == 60
        assert overlapping_texts(fig) == [], (sample, flow)


def test_the_overlap_check_sees_overlapping_text(analyses):
    """The check above can fail: squeezed into 200 pixels, the same ladder's labels collide."""
    squeezed = plots.figure("ladder", analyses["simultaneous_close"], 0, size=(1200, 200))
    assert len(overlapping_texts(squeezed)) > 5


def test_ladder_arrows_go_the_way_the_packets_went(analyses):
    a = analyses["simultaneous_close"]
    fig = plots.figure("ladder", a, 0)
    packets = a.packets.set_index("frame")
    for arrow in arrows(fig):
        (x0, _), (x1, _) = arrow._posA_posB
        sender = packets.loc[int(arrow.get_gid().split()[1]), "sender"]
        assert (x0, x1) == ((0.0, 1.0) if sender == "client" else (1.0, 0.0))


def test_ladder_colours_retransmissions_and_anomalies(analyses):
    a = analyses["fin_dropped"]
    fig = plots.figure("ladder", a, 0)
    colour = {int(p.get_gid().split()[1]): p.get_edgecolor()[:3] for p in arrows(fig)}
    retransmitted = set(a.retransmissions["frame"])
    named = set(a.anomalies["frame"].dropna().astype(int))
    assert retransmitted and named
    plain = set(colour) - retransmitted - named
    assert len({colour[f] for f in plain}) == 1
    for frame in (retransmitted - named) | named:
        assert colour[frame] != colour[min(plain)]
    assert {colour[f] for f in retransmitted - named} != {colour[f] for f in named}
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert sum("retransmission" in t for t in labels) == len(retransmitted)
    assert any("! fin_unacked" in t for t in labels)


def test_ladder_writes_each_sides_state_changes_beside_its_line(analyses):
    a = analyses["simultaneous_close"]
    fig = plots.figure("ladder", a, 0)
    left = [t.get_text() for t in fig.axes[0].texts if t.get_position()[0] < 0]
    right = [t.get_text() for t in fig.axes[0].texts if t.get_position()[0] > 1]
    assert left == ["CLOSED > SYN_SENT", "SYN_SENT > ESTABLISHED*", "ESTABLISHED > FIN_WAIT_1",
                    "FIN_WAIT_1 > CLOSING*", "CLOSING > TIME_WAIT*"]
    assert right == ["CLOSED > LISTEN", "LISTEN > SYN_RCVD*", "SYN_RCVD > ESTABLISHED*", "FIN_WAIT_1 > CLOSING*",
                     "ESTABLISHED > FIN_WAIT_1", "CLOSING > TIME_WAIT*"]
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert ticks[0] == "0.000000 s  assumed" and ticks[-1] == "2.017090 s  #11"


def test_a_long_flow_is_elided_in_the_middle_and_says_so(analyses):
    a = analyses["data_loss"]
    total = len(a.flow(0)["packets"])
    assert total > 60
    fig = plots.figure("ladder", a, 0)
    frames = sorted(int(p.get_gid().split()[1]) for p in arrows(fig))
    assert frames[:30] == list(range(1, 31)) and frames[-30:] == list(range(total - 29, total + 1))
    texts = [t.get_text() for t in fig.findobj(Text)]
    assert f"... {total - 60} packets not shown (frames 31 to {total - 30}) ..." in texts
    assert any(f"({total - 60} in the middle not shown)" in t for t in texts)
    assert overlapping_texts(fig) == []


def test_a_crowded_flow_of_60_packets_has_no_overlapping_text(tmp_path):
    """The worst case allowed without elision: 60 packets, long labels, retransmissions, state chains."""
    from builder import Talk

    talk = Talk(client_addr="fd00:1234:5678:9abc::1", server_addr="fd00:1234:5678:9abc::2", step=0.0001)
    talk.client("S")
    talk.server("S.")
    talk.client(".")
    while len(talk.packets) < 51:
        lost = talk.server("P.", 1448, lost=True)
        talk.resend(lost)
        talk.client(".")
    talk.server("P.", 100)
    talk.client("F.")
    fin = talk.server("F.", lost=True)
    for _ in range(4):
        talk.resend(fin, lost=True)
    talk.resend(fin)
    talk.client(".")
    a = analyze(talk.write(tmp_path))
    assert len(a.packets) == 60 and len(a.retransmissions) > 15
    fig = plots.figure("ladder", a, 0)
    assert len(arrows(fig)) == 60
    assert overlapping_texts(fig) == []


# --- states, retries, census ----------------------------------------------------------------


def test_states_draws_two_bars_per_flow_coloured_by_state(tmp_path):
    from builder import Talk, write_talks

    talks = []
    for i in range(61):  # one more than is drawn
        talk = Talk(client_port=30000 + i, start=1_700_000_000.0 + i * 0.05)
        talk.client("S")
        talk.server("S.")
        talk.client(".")
        if i % 2:
            talk.client("F.")
            talk.server(".")
        talks.append(talk)
    a = analyze(write_talks(tmp_path / "many.pcap", *talks))
    fig = plots.figure("states", a)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) == 120 and labels[:2] == ["flow 0 client", "flow 0 server"]
    assert "(first 60 of 61 flows)" in ax.get_title(loc="left")
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"SYN_SENT", "ESTABLISHED", "FIN_WAIT_1", "CLOSE_WAIT"} <= set(legend)
    assert overlapping_texts(fig) == []


def test_states_of_one_flow(analyses):
    fig = plots.figure("states", analyses["syn_flood"], 5)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["flow 5 client", "flow 5 server"]


def test_retries_plots_every_chain_on_a_log2_axis_with_a_doubling_line(analyses):
    a = analyses["syn_flood"]
    fig = plots.figure("retries", a)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and ax.yaxis.get_transform().base == 2
    chains = [line for line in ax.get_lines() if line.get_linestyle() == "-"]
    assert len(chains) == len(a.retries) == 30
    for line, chain in zip(chains, a.retries.itertuples()):
        assert list(line.get_xdata()) == [1, 2, 3] and list(line.get_ydata()) == list(chain.intervals)
    (reference,) = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    y = reference.get_ydata()
    assert all(abs(b / a_ - 2) < 1e-9 for a_, b in zip(y, y[1:]))
    assert ax.get_xlabel().startswith("attempt") and "interval" in ax.get_ylabel()
    assert "SYN-ACK (30 chains)" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert overlapping_texts(fig) == []


def test_retries_of_one_flow_from_the_command_line(tmp_path):
    out = run("plot", "retries", str(SAMPLES / "syn_flood.pcap"), "--flow", "3", "-o", str(tmp_path / "r.png")).stdout
    assert png_size(tmp_path / "r.png") == stated_size(out)
    fig = plots.figure("retries", analyze(SAMPLES / "syn_flood.pcap"), 3)
    assert "SYN-ACK (1 chain)" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def test_the_tshark_decoder_draws_the_same_picture(tmp_path):
    for decoder in ("dpkt", "pyshark"):
        run("plot", "ladder", str(SAMPLES / "half_close.pcap"), "--decoder", decoder, "-o", str(tmp_path / f"{decoder}.png"))
    assert (tmp_path / "dpkt.png").read_bytes() == (tmp_path / "pyshark.png").read_bytes()


def test_retries_with_no_chain_says_so(analyses):
    fig = plots.figure("retries", analyses["client_closes_first"])
    assert "no segment was sent more than once" in [t.get_text() for t in fig.axes[0].texts]


@pytest.mark.parametrize("sample", ["syn_flood", "close_wait_leak", "simultaneous_open", "data_loss"])
def test_census_agrees_with_states_at_at_every_change(analyses, sample):
    a = analyses[sample]
    table = census(a)
    for row in table.itertuples(index=False):
        now = a.states_at(row.ts_epoch)
        counts = now[f"{row.endpoint}_state"].value_counts()
        for state in COUNTED:
            assert getattr(row, state) == counts.get(state, 0), (sample, row.ts_epoch, row.endpoint, state)


def test_census_picture_shows_the_flood(analyses):
    fig = plots.figure("census", analyses["syn_flood"])
    client, server = fig.axes[:2]
    (syn_rcvd,) = [line for line in server.get_lines() if line.get_label() == "SYN_RCVD"]
    assert max(syn_rcvd.get_ydata()) == 30 and syn_rcvd.get_ydata()[-1] == 30
    assert server.get_ylabel() == "server endpoints" and client.get_ylabel() == "client endpoints"
    assert "seconds" in server.get_xlabel()
    assert overlapping_texts(fig) == []


def test_census_of_a_close_wait_leak(analyses):
    fig = plots.figure("census", analyses["close_wait_leak"])
    client = fig.axes[0]
    (close_wait,) = [line for line in client.get_lines() if line.get_label() == "CLOSE_WAIT"]
    assert close_wait.get_ydata()[-1] == 1


def test_an_empty_capture_gives_pictures_that_say_so(tmp_path, analyses):
    empty = analyses["listen_no_client"]
    said = {kind: [t.get_text() for t in plots.figure(kind, empty).findobj(Text)] for kind in ("states", "retries",
                                                                                               "census")}
    assert "no TCP connection in this capture" in said["states"]
    assert "no segment was sent more than once" in said["retries"]
    assert "no server endpoint in a counted state" in said["census"]


# --- the command line -------------------------------------------------------------------------


def test_unknown_kind_is_a_usage_error(tmp_path):
    result = run("plot", "pie", str(SAMPLES / "refused.pcap"), "-o", str(tmp_path / "x.png"), check=False)
    assert result.returncode == 2 and "Invalid value for 'KIND'" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["ladder", "refused", "--flow", "4"], "refused.pcap: no flow 4 (the capture has flows 0 to 0)"),
    (["states", "syn_flood", "--flow", "30"], "syn_flood.pcap: no flow 30 (the capture has flows 0 to 29)"),
    (["ladder", "listen_no_client"], "listen_no_client.pcap: no flow 0 (the capture has no connections)"),
])
def test_bad_flows_are_one_line_errors_and_write_nothing(tmp_path, args, message):
    kind, sample, *rest = args
    result = run("plot", kind, str(SAMPLES / f"{sample}.pcap"), "-o", str(tmp_path / "x.png"), *rest, check=False)
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["-o", "x.jpg"], "a picture is .png or .svg"),
    (["-o", "x.png", "--size", "big"], "WIDTHxHEIGHT in pixels"),
    (["-o", "x.png", "--flow", "0", "--kind-census"], None),
])
def test_bad_options_are_usage_errors(tmp_path, args, message):
    if message is None:  # census counts every flow: --flow makes no sense there
        args, message = ["-o", "x.png", "--flow", "0"], "--flow is for ladder, states and retries"
        kind = "census"
    else:
        kind = "ladder"
    result = run("plot", kind, str(SAMPLES / "refused.pcap"), *args, check=False, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_output_is_required(tmp_path):
    result = run("plot", "ladder", str(SAMPLES / "refused.pcap"), check=False, cwd=tmp_path)
    assert result.returncode == 2 and "Missing option '-o'" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_plot_writes_only_the_named_file(tmp_path):
    run("plot", "ladder", str(SAMPLES / "refused.pcap"), "-o", "pic.svg", cwd=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["pic.svg"]


def test_matplotlib_is_imported_only_for_pictures():
    code = ("import sys, pcapstate; a = pcapstate.analyze('samples/fin_dropped.pcap'); a.flows; a.anomalies; "
            "import pcapstate.report.plots, pcapstate.report.formats; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'matplotlib', 'pyarrow'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=SAMPLES.parent)
    assert result.returncode == 0, result.stderr
    assert "matplotlib" not in result.stdout
    for command in (["analyze", "samples/fin_dropped.pcap"], ["retries", "samples/fin_dropped.pcap"]):
        timed = subprocess.run([sys.executable, "-X", "importtime", "-m", "pcapstate", *command],
                               capture_output=True, text=True, cwd=SAMPLES.parent)
        imported = {line.rsplit("|", 1)[-1].strip() for line in timed.stderr.splitlines() if "|" in line}
        assert "pcapstate.analysis" in imported and "matplotlib" not in imported, command

"""pcapstate report: one self-contained HTML page, escaped, checked in a real headless Chromium."""
from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from PIL import Image

from pcapstate.analysis import analyze
from pcapstate.report.html import render
from command import run_pcapstate as run

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
INJECTED = [
    '<script>console.error("pcapstate-injected-1")</script>',  # a line of the text capture, quoted in a warning
    "<img src=x onerror=console.error(2)>",  # a host field of the text capture, quoted in a warning
    "<b onmouseover=console.error(3)>",  # the capture's own file name
]


@pytest.fixture(scope="module")
def flood_page(tmp_path_factory):
    target = tmp_path_factory.mktemp("report") / "flood.html"
    out = run("report", str(SAMPLES / "syn_flood.pcap"), "-o", str(target), "--max-flows", "12").stdout
    assert out == f"{target}: 30 connections, 31 anomalies, 12 drawn in detail\n"
    return target


@pytest.fixture(scope="module")
def hostile_page(tmp_path_factory):
    """A tcpdump text capture whose shown strings carry markup and scripts."""
    where = tmp_path_factory.mktemp("hostile")
    text = run("packets", str(SAMPLES / "fin_dropped.pcap")).stdout
    text += INJECTED[0] + "\n"
    text += f"15:49:09.901666 IP {INJECTED[1]}.5000 > host.40008: Flags [R], seq 1, win 0, length 0\n"
    capture = where / f"x{INJECTED[2]}.txt"
    capture.write_text(text)
    target = where / "hostile.html"
    run("report", str(capture), "-o", str(target))
    return target


def images(page: str) -> list[str]:
    return re.findall(r'<img alt="([^"]*)" src="data:image/svg\+xml;base64,', page)


def test_anomalies_come_first_then_the_summary_then_each_flow(flood_page):
    page = flood_page.read_text()
    order = [page.index(h) for h in ("<h1>pcapstate report:", "<h2>Anomalies (31)</h2>",
                                     "<h2>Connections by final state</h2>", "<h2>Connections</h2>",
                                     "<h2>Connections in detail</h2>", 'id="flow-0"', "Made by pcapstate")]
    assert order == sorted(order)
    assert "150 TCP packets, 30 connections" in page
    assert "half_open_flood" in page and page.index("half_open_flood") < page.index("synack_unanswered")


def test_pictures_are_embedded_and_nothing_is_fetched(flood_page):
    page = flood_page.read_text()
    assert images(page)[:3] == ["each endpoint&#x27;s state over time", "connections in each state over time",
                                "retry intervals"]
    assert images(page)[3:] == [f"ladder of flow {i}" for i in range(12)]
    sources = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert sources and all(s.startswith(("data:image/svg+xml;base64,", "#flow-")) for s in sources)
    assert "<script" not in page and "<link" not in page and "http://" not in page.replace(
        "http://www.w3.org", "")


def test_at_most_max_flows_ladders_and_the_page_says_how_many_were_left_out(flood_page):
    page = flood_page.read_text()
    assert len(re.findall(r'<section class="flow"', page)) == 12
    assert "12 of 30 connections are drawn below (those with anomalies first); 18 were left out." in page


def test_flows_with_anomalies_come_first(tmp_path, monkeypatch):
    from builder import Talk, write_talks

    talks = []
    for i in range(55):
        talk = Talk(client_port=20000 + i, start=1_700_000_000.0 + i)
        talk.client("S")
        if i == 53:
            talk.server("R.")  # refused: the only anomaly
        else:
            for sender, flags in (("server", "S."), ("client", "."), ("client", "F."), ("server", "F."),
                                  ("client", ".")):
                getattr(talk, sender)(flags)
        talks.append(talk)
    a = analyze(write_talks(tmp_path / "many.pcap", *talks))
    assert set(a.anomalies["flow"].dropna()) == {53}
    import pcapstate.report.html as html

    drawn = []
    monkeypatch.setattr(html, "_picture", lambda kind, analysis, alt, flow_id=None: drawn.append(kind) or "")
    page = render(a)  # the default cap: 50 (pictures are checked elsewhere; here only which flows get one)
    assert drawn.count("ladder") == 50
    sections = [int(n) for n in re.findall(r'<section class="flow" id="flow-(\d+)">', page)]
    assert sections == [53] + list(range(49))
    assert "50 of 55 connections are drawn below (those with anomalies first); 5 were left out." in page


def test_every_string_from_the_capture_is_escaped(hostile_page):
    page = hostile_page.read_text()
    for raw in INJECTED:
        assert raw not in page
    assert "&lt;script&gt;console.error(&quot;pcapstate-injected-1&quot;)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=console.error(2)&gt;" in page
    assert "x&lt;b onmouseover=console.error(3)&gt;.txt" in page  # in the title and the heading
    assert page.count("x&lt;b onmouseover=console.error(3)&gt;.txt") >= 2


def test_threshold_and_time_wait_options_reach_the_report(tmp_path):
    out = run("report", str(SAMPLES / "syn_flood.pcap"), "-o", str(tmp_path / "f.html"), "--max-flows", "0",
              "--flood-connections", "40").stdout
    assert out.endswith(": 30 connections, 30 anomalies, 0 drawn in detail\n")  # no half_open_flood below 40
    page = (tmp_path / "f.html").read_text()
    assert "half_open_flood" not in page and images(page)[-1] == "retry intervals"
    assert "0 of 30 connections are drawn below (those with anomalies first); 30 were left out." in page
    run("report", str(SAMPLES / "client_closes_first.pcap"), "-o", str(tmp_path / "t.html"), "--time-wait", "0")
    page = (tmp_path / "t.html").read_text()
    assert "<td>TIME_WAIT</td><td>CLOSED</td><td>timer</td>" in page


def test_same_capture_same_bytes(tmp_path):
    for name in ("a.html", "b.html"):
        run("report", str(SAMPLES / "fin_dropped.pcap"), "-o", str(tmp_path / name))
    assert (tmp_path / "a.html").read_bytes() == (tmp_path / "b.html").read_bytes()


def test_an_empty_capture_still_makes_a_page(tmp_path):
    run("report", str(SAMPLES / "listen_no_client.pcap"), "-o", str(tmp_path / "empty.html"))
    page = (tmp_path / "empty.html").read_text()
    assert "No TCP connection in this capture." in page and "<h2>Anomalies (0)</h2>" in page


def test_report_writes_only_the_named_file_and_errors_are_one_line(tmp_path):
    run("report", str(SAMPLES / "refused.pcap"), "-o", "r.html", cwd=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(100))
    bad = run("report", str(junk), "-o", str(tmp_path / "x.html"), check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("pcapstate: error:") and len(bad.stderr.splitlines()) == 1
    assert not (tmp_path / "x.html").exists()
    missing = run("report", str(SAMPLES / "refused.pcap"), check=False)
    assert missing.returncode == 2 and "Missing option '-o'" in missing.stderr


# --- in a real browser ----------------------------------------------------------------------


def browse(path: Path):
    from chromium import visit

    return visit(path.resolve().as_uri())


def colours(png: bytes) -> set[tuple[int, int, int]]:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    assert image.width >= 1000 and image.height >= 900
    return {colour for _, colour in image.getcolors(maxcolors=1 << 24)}


def test_the_console_check_catches_errors(tmp_path):
    """The browser checks below can fail: a page with errors shows every one of them."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><p>x</p><img src="missing.png">'
                   '<script>console.error("deliberate"); throw new Error("uncaught-deliberate")</script>')
    messages = browse(bad).messages()
    assert any("console.error: deliberate" in m for m in messages)
    assert any("uncaught-deliberate" in m for m in messages)
    assert any("missing.png" in m for m in messages)


def test_the_report_renders_in_chromium_without_console_errors(flood_page):
    visit = browse(flood_page)
    assert visit.messages() == []
    seen = colours(visit.screenshot)
    assert len(seen) > 50  # text, tables and pictures, not a blank page
    assert (253, 174, 107) in seen  # SYN_RCVD's colour: the embedded SVG pictures were drawn


def test_hostile_strings_stay_text_in_the_browser(hostile_page):
    visit = browse(hostile_page)
    assert visit.messages() == []  # none of the injected console.error calls ran
    assert len(colours(visit.screenshot)) > 50


@pytest.mark.parametrize("max_flows", [0, 1, 5, 299, 1000])
def test_flows_with_anomalies_get_a_section_first_worst_first_then_the_rest_in_order(max_flows, tmp_path):
    from pcapstate.report.html import chosen_flows
    from synthetic import write_synthetic

    a = analyze(write_synthetic(tmp_path / "synth.pcap", 300))
    worst_first = list(dict.fromkeys(int(f) for f in a.anomalies["flow"].dropna()))
    assert 0 < len(worst_first) < 300
    expected = (worst_first + [f for f in range(300) if f not in worst_first])[:max_flows]
    assert chosen_flows(a, max_flows) == expected


def test_the_report_never_makes_the_whole_packet_table():
    """Only each drawn connection's packets (Analysis.flow): the whole table would be most of the memory
    of a long capture's report (synth-100k: 2.3 GiB with it, 1.9 without)."""
    a = analyze(str(SAMPLES / "syn_flood.pcap"))
    page = render(a)
    assert f"<p>{len(a.table)} TCP packets, 30 connections" in page
    assert "packets" not in a.__dict__ and "packets" not in a._columnar

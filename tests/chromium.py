"""Open a page in a real headless Chromium and report what its console saw, with a screenshot.

Drives Debian's ``chromium`` through the DevTools protocol (``--remote-debugging-port``
and a websocket): Runtime and Log events catch console messages, uncaught
exceptions and resources that failed to load, which ``--screenshot`` alone would
not show.  :func:`ensure_chromium` installs the package when it is missing and
the tests run as root with apt-get (tests/run.sh installs it too).
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ERROR_EVENTS = ("Runtime.consoleAPICalled", "Runtime.exceptionThrown", "Log.entryAdded")


@dataclass
class PageVisit:
    screenshot: bytes  # PNG of the whole page
    console: list[dict] = field(default_factory=list)  # every console, exception and log event

    def messages(self) -> list[str]:
        """One line per console message, uncaught exception or log entry (failed loads included)."""
        lines = []
        for event in self.console:
            params = event["params"]
            if event["method"] == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                lines.append(f"exception: {details.get('text')} {details.get('exception', {}).get('description', '')}")
            elif event["method"] == "Runtime.consoleAPICalled":
                lines.append(f"console.{params['type']}: " + " ".join(str(a.get("value")) for a in params["args"]))
            else:
                entry = params["entry"]
                lines.append(f"log {entry['level']}: {entry['text']} {entry.get('url', '')}")
        return lines


def ensure_chromium() -> str:
    path = shutil.which("chromium")
    if path is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"], check=True, env=env,
                       capture_output=True)
        path = shutil.which("chromium")
    assert path, "chromium is installed by tests/run.sh (apt-get install chromium)"
    return path


def visit(url: str, width: int = 1200, height: int = 900, timeout: float = 60.0) -> PageVisit:
    """Load ``url``, wait for its load event, and take a full-page screenshot."""
    import websocket

    port = _free_port()
    # Chromium's helper processes (zygote, crashpad) may outlive the browser and still write to the
    # profile while it is removed: the browser gets a process group of its own, ended as a whole, and
    # a file they leave behind in the profile fails no test.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        browser = subprocess.Popen([ensure_chromium(), *FLAGS, f"--user-data-dir={profile}",
                                    f"--remote-debugging-port={port}", f"--window-size={width},{height}",
                                    "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
        try:
            target = _page_target(port, timeout)
            ws = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=timeout, suppress_origin=True)
            try:
                return _load(_Session(ws), url, timeout)
            finally:
                ws.close()
        finally:
            _end_group(browser)


def _end_group(browser: subprocess.Popen) -> None:
    """Terminate the browser and every process of its group; kill what is left after 10 s."""
    try:
        os.killpg(browser.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        browser.wait(10)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(browser.pid, signal.SIGKILL)  # helpers that ignored SIGTERM, and a hung browser
    except ProcessLookupError:
        pass
    browser.wait()


class _Session:
    def __init__(self, ws) -> None:
        self.ws = ws
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            assert time.monotonic() < deadline, f"no {method} within {timeout} s"
            self.events.append(json.loads(self.ws.recv()))


def _load(session: _Session, url: str, timeout: float) -> PageVisit:
    for domain in ("Runtime", "Log", "Page"):
        session.call(f"{domain}.enable")
    session.call("Page.navigate", url=url)
    session.wait_for("Page.loadEventFired", timeout)
    session.call("Runtime.evaluate", expression="new Promise(r => requestAnimationFrame(() => r(1)))",
                 awaitPromise=True)
    size = session.call("Page.getLayoutMetrics")["cssContentSize"]
    shot = session.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                        clip={"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 16000),
                              "scale": 1})
    console = [e for e in session.events if e.get("method") in ERROR_EVENTS]
    return PageVisit(base64.b64decode(shot["data"]), console)


def _page_target(port: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy
            with direct.open(f"http://127.0.0.1:{port}/json", timeout=5) as response:
                pages = [t for t in json.load(response) if t.get("type") == "page"]
            if pages:
                return pages[0]
        except OSError:
            pass
        assert time.monotonic() < deadline, "chromium did not open its DevTools port"
        time.sleep(0.1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

#!/usr/bin/env python3
"""Time pcapstate against tcptrace and tshark, side by side, and write BENCHMARKS.md.

    python3 benchmarks/run.py                 # the synthetic captures, 3 alternating rounds
    python3 benchmarks/run.py --rounds 5 --quick

Measured, on captures made by benchmarks/generate.py (made when missing):

* wall time and peak RSS of ``pcapstate analyze F --format json -o /dev/null``,
  ``tcptrace -n F`` and ``tshark -r F -T fields -e frame.number -e
  tcp.analysis.flags``, the three run one after the other in each round so a
  noisy machine hits them alike; medians and ratios; in the same rounds, the
  terminal summary (``pcapstate analyze F``, the default format) against tcptrace;
* the core (decode + both endpoints' replay) in one process, warm: packets/s;
* the start-up: ``pcapstate analyze`` on a 10-packet capture;
* ``--jobs 1`` against ``--jobs 2`` on the large capture, alternating (threads, and
  for a capture analyzed in parts, a forked process per job);
* memory at constant concurrency: a capture 4x longer with the same number of
  connections open at once.

``pcapstate`` in the main table runs as a user runs it: its default ``--jobs``
(a job per core on a large capture).

tcptrace and tshark are installed with apt-get when missing (as root).
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = HERE / "data"
CAPTURES = {  # name: (connections, duration in seconds or None for the default concurrency)
    "synth-20k": (20_000, None),
    "synth-100k": (100_000, None),
}
FLATNESS = {"steady-1x": (20_000, 60.0), "steady-4x": (80_000, 240.0)}


def ensure_tools() -> None:
    missing = [tool for tool in ("tcptrace", "tshark") if shutil.which(tool) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        sys.exit(f"benchmarks/run.py: install {' '.join(missing)} first")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env, stdout=subprocess.DEVNULL)


def compile_bytecode() -> None:
    """The package's modules compiled to bytecode, as ``pip install`` leaves them: with an editable install
    and PYTHONDONTWRITEBYTECODE set (as on these machines), every run would compile them again (30 ms)."""
    import compileall

    compileall.compile_dir(str(ROOT / "pcapstate"), quiet=1)


def capture(name: str, connections: int, duration: float | None) -> Path:
    path = DATA / f"{name}.pcap"
    if not path.exists():
        command = [sys.executable, str(HERE / "generate.py"), "--connections", str(connections), "-o", str(path)]
        if duration is not None:
            command += ["--duration", str(duration)]
        subprocess.run(command, check=True)
    return path


LIMIT_S = 300.0  # a run this long is stopped and counted as this long (tshark once spun for 15 minutes in
# wmem_map_lookup on a file it reads in 33 s other times; the median of the rounds absorbs one such run)


def measure(command: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one run of ``command`` (at most LIMIT_S seconds).

    The peak is the larger of ``wait4``'s (the largest single process's) and
    the peak of the RSS summed over the process and every process it forked
    (``--jobs`` forks helpers), sampled every :data:`SAMPLE_S` seconds.  The
    sum counts pages the processes share once per process: it errs high.
    """
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    timer = threading.Timer(LIMIT_S, process.kill)
    timer.start()
    tree = TreePeak(process.pid)
    _, status, usage = os.wait4(process.pid, 0)
    timer.cancel()
    wall = time.perf_counter() - start
    peak = max(usage.ru_maxrss, tree.stop())
    if wall >= LIMIT_S:
        print(f"benchmarks/run.py: stopped after {LIMIT_S:.0f} s: {' '.join(command)}", file=sys.stderr)
        return LIMIT_S, peak
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"benchmarks/run.py: failed: {' '.join(command)}")
    return wall, peak


SAMPLE_S = 0.02


class TreePeak:
    """The peak of a process tree's summed RSS (KiB), sampled on a thread until :meth:`stop`."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def stop(self) -> int:
        self.done.set()
        self.thread.join()
        return self.peak

    def _sample(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, sum(_rss_kib(pid) for pid in _tree(self.pid)))
            self.done.wait(SAMPLE_S)


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from /proc's children lists."""
    found, at = [pid], 0
    while at < len(found):
        try:
            for task in os.listdir(f"/proc/{found[at]}/task"):
                with open(f"/proc/{found[at]}/task/{task}/children") as children:
                    found += [int(child) for child in children.read().split()]
        except OSError:  # (it ended meanwhile)
            pass
        at += 1
    return found


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except (OSError, IndexError, ValueError):  # (it ended, or is a zombie)
        return 0


def tools(path: Path, jobs: int | None = None) -> dict[str, list[str]]:
    pcapstate = [sys.executable, "-m", "pcapstate", "analyze", str(path), "--format", "json", "-o", os.devnull]
    if jobs is not None:
        pcapstate += ["--jobs", str(jobs)]
    return {
        "pcapstate": pcapstate,
        "summary": [sys.executable, "-m", "pcapstate", "analyze", str(path)],  # the terminal's, what people run
        "tcptrace": ["tcptrace", "-n", str(path)],
        "tshark": ["tshark", "-r", str(path), "-T", "fields", "-e", "frame.number", "-e", "tcp.analysis.flags"],
    }


def side_by_side(path: Path, rounds: int, skip: set[str]) -> dict[str, tuple[float, int]]:
    """Median wall time and peak RSS per tool, alternating the tools in every round."""
    runs: dict[str, list[tuple[float, int]]] = {}
    measure(tools(path)["pcapstate"])  # the very first run compiles: not timed
    for _ in range(rounds):
        for name, command in tools(path).items():
            if name not in skip:
                runs.setdefault(name, []).append(measure(command))
    return {name: (statistics.median(w for w, _ in r), int(statistics.median(m for _, m in r)))
            for name, r in runs.items()}


CORE_RATE = """
import sys, time
from pcapstate.decode import read_capture
from pcapstate.tracker import track

track(read_capture(sys.argv[1]))  # warm: load the compiled code
best = float("inf")
for _ in range(3):
    start = time.perf_counter()
    table = read_capture(sys.argv[1])
    track(table)
    best = min(best, time.perf_counter() - start)
print(len(table), best)
"""


def core_rate(path: Path) -> tuple[int, float]:
    """Packets and seconds of decode + replay, warm, in one process.

    A child process of its own: a child forked from a parent that grew to hold
    a large capture reports the parent's size as its own peak RSS, so this
    process stays small for the measurements that follow.
    """
    out = subprocess.run([sys.executable, "-c", CORE_RATE, str(path)], check=True, capture_output=True, text=True,
                         cwd=ROOT).stdout.split()
    return int(out[0]), float(out[1])


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB, {platform.system()} {platform.release()}, " \
           f"Python {platform.python_version()}"


def jobs_scaling(path: Path, rounds: int) -> dict[int, float]:
    """Median wall time of ``--jobs 1`` and ``--jobs 2``, alternating."""
    runs: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(rounds):
        for jobs in runs:
            runs[jobs].append(measure(tools(path, jobs)["pcapstate"])[0])
    return {jobs: statistics.median(times) for jobs, times in runs.items()}


def report(results: dict, core: dict, startup: float, flat: dict, rounds: int, scaling: dict | None = None) -> str:
    lines = [f"# Benchmarks\n\nMeasured {time.strftime('%Y-%m-%d')} on {machine()}, by `python3 benchmarks/run.py`",
             f"(medians of {rounds} alternating rounds; peak RSS: of the process and the helpers it forks,\n"
             "summed, sampled every 20 ms, or `wait4`'s if larger).\n",
             "| capture | packets | pcapstate | tcptrace | tshark | pcapstate / tcptrace | pcapstate / tshark |"
             " RSS pcapstate | RSS tcptrace | RSS tshark |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        packets = core[name][0]
        row = [name, f"{packets:,}"]
        row += [f"{r[t][0]:.2f} s" if t in r else "-" for t in ("pcapstate", "tcptrace", "tshark")]
        row += [f"{r['pcapstate'][0] / r[t][0]:.2f}" if t in r else "-" for t in ("tcptrace", "tshark")]
        row += [f"{r[t][1] / 1024:.0f} MiB" if t in r else "-" for t in ("pcapstate", "tcptrace", "tshark")]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("\nThe terminal summary (`pcapstate analyze F`, the default format), in the same rounds:\n")
    for name, r in results.items():
        if "summary" in r and "tcptrace" in r:
            (took, peak), (theirs, their_peak) = r["summary"], r["tcptrace"]
            lines.append(f"- {name}: {took:.2f} s, {peak / 1024:.0f} MiB: {took / theirs:.2f} of tcptrace's time, "
                         f"{peak / their_peak:.2f} of its memory")
    lines.append("\nCore (decode + replay, one process, warm, best of 3):\n")
    for name, (packets, seconds) in core.items():
        lines.append(f"- {name}: {packets:,} packets in {seconds:.3f} s = {packets / seconds / 1e6:.2f} M packets/s")
    lines.append(f"\nStart-up: `pcapstate analyze` on a 10-packet capture: {startup:.2f} s wall (median).\n")
    if scaling:
        name, times = scaling
        lines.append(f"Jobs on {name}: `--jobs 1` {times[1]:.2f} s, `--jobs 2` {times[2]:.2f} s: "
                     f"{times[1] / times[2]:.2f}x (medians of alternating rounds).\n")
    if flat:
        one, four = flat["steady-1x"], flat["steady-4x"]
        lines.append(f"Memory at constant concurrency: {one / 1024:.0f} MiB for the 1x capture, {four / 1024:.0f} MiB "
                     f"for one 4x as long: {four / one:.2f}x.")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="only the 20k capture, no flatness run")
    parser.add_argument("--skip", action="append", default=[], help="a tool not to run (e.g. tshark)")
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    ensure_tools()
    compile_bytecode()
    DATA.mkdir(parents=True, exist_ok=True)
    names = ["synth-20k"] if args.quick else list(CAPTURES)
    results, core = {}, {}
    for name in names:
        path = capture(name, *CAPTURES[name])
        results[name] = side_by_side(path, args.rounds, set(args.skip))
        core[name] = core_rate(path)
        print(name, results[name], core[name], flush=True)
    small = ROOT / "samples" / "client_closes_first.pcap"
    startup = statistics.median(measure(tools(small)["pcapstate"])[0] for _ in range(5))
    large = names[-1]
    scaling = (large, jobs_scaling(capture(large, *CAPTURES[large]), max(args.rounds, 3)))
    flat = {}
    if not args.quick:
        for name, spec in FLATNESS.items():
            path = capture(name, *spec)
            measure(tools(path)["pcapstate"])
            flat[name] = statistics.median(measure(tools(path)["pcapstate"])[1] for _ in range(args.rounds))
    text = report(results, core, startup, flat, args.rounds, scaling)
    args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""Single process vs ``--engine dask`` on a rotated capture set (issue 9, item 3).

    python3 benchmarks/dask_split.py                # synth-100k split into 20 files, 3 rounds
    python3 benchmarks/dask_split.py --rounds 1 --workers 2

1. Splits benchmarks/data/synth-100k.pcap (made by generate.py when missing)
   into ``--files`` files with ``editcap -c`` (a rotated set).
2. Times ``pcapstate analyze SET --format json -o /dev/null`` in one process
   with one thread (``--jobs 1``), with its default jobs (one per core: for
   a set analyzed in parts, a forked helper process per extra job), with
   ``--engine dask`` (which starts a local cluster of ``--workers``
   single-threaded worker processes: its start-up is in the time), and with ``--scheduler`` pointing at a running cluster of as many
   workers (started by this script and warmed once); then ``--format parquet
   -o DIR`` in one process and on the running cluster (whose workers write
   the parts themselves).  Rounds alternate; prints the medians and the
   ratios (target for dask against one thread: >= 1.7x).
3. Runs the dask engine once more in this process, on a cluster of the same
   size, to measure the shuffle (bytes of packet columns moved between
   workers, of all bytes cut into partitions), each partition's replay rate
   and the client's stages; from those, prints an estimate of N machines.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = HERE / "data"


def capture(connections: int) -> Path:
    path = DATA / f"synth-{connections // 1000}k.pcap"
    if not path.exists():
        DATA.mkdir(exist_ok=True)
        subprocess.run([sys.executable, str(HERE / "generate.py"), "--connections", str(connections),
                        "-o", str(path)], check=True)
    return path


def split(source: Path, files: int) -> Path:
    directory = DATA / f"{source.stem}-split{files}"
    if directory.is_dir() and len(list(directory.iterdir())) == files:
        return directory
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    records = int(subprocess.run(["capinfos", "-c", "-M", "-T", "-r", str(source)], capture_output=True,
                                 text=True, check=True).stdout.split()[-1])
    per_file = -(-records // files)
    subprocess.run(["editcap", "-c", str(per_file), str(source), str(directory / "part.pcap")], check=True)
    return directory


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def measure_inside(directory: Path, workers: int) -> None:
    from pcapstate import dask_engine
    from pcapstate.cli import OUTPUT_TABLES
    from pcapstate.report.formats import write_tables

    asked = {"tables": OUTPUT_TABLES, "keep_table": False, "options": False}  # what the command line asks for
    started = time.perf_counter()
    with dask_engine.connect(workers=workers) as client:
        up = time.perf_counter() - started
        dask_engine.analyze(str(directory), client=client, **asked)  # warms the workers (imports, page cache)
        began = time.perf_counter()
        analysis = dask_engine.analyze(str(directory), client=client, **asked)
        engine = time.perf_counter() - began
    stats = dask_engine.last_stats
    began = time.perf_counter()
    write_tables("json", {name: analysis.columnar(name) for name in OUTPUT_TABLES}, "/dev/null", jobs=workers)
    printing = time.perf_counter() - began
    packets = len(analysis.table)
    print(f"\ninside one run (warm workers; cluster start-up {up:.2f} s):")
    print(f"  {stats.files} files, {packets:,} packets, {analysis.connection_count:,} connections, "
          f"{stats.partitions} partitions on {stats.workers} workers")
    print(f"  decode on workers (to first sizes back): {stats.decode_s:.2f} s; client stages (cumulative): "
          + ", ".join(f"{k} {v:.2f} s" for k, v in stats.wall_s.items()))
    print(f"  engine total {engine:.2f} s, then on the client: JSON printed in {printing:.2f} s")
    print(f"  shuffle: {stats.shuffle_bytes / 1e6:.1f} MB moved between workers of "
          f"{stats.shuffle_total_bytes / 1e6:.1f} MB cut into partitions "
          f"({stats.shuffle_total_bytes / max(packets, 1):.0f} bytes/packet)")
    for p, (count, seconds) in enumerate(zip(stats.partition_packets, stats.partition_replay_s)):
        print(f"  partition {p}: {count:,} packets replayed in {seconds:.2f} s = {count / seconds / 1e6:.2f} M packets/s")
    rate = sum(stats.partition_packets) / max(sum(stats.partition_replay_s), 1e-9)
    # on the workers: decode, then per partition replay, findings and tables (from the numbering to the tables)
    tables_s = stats.wall_s["tables"] - stats.wall_s["replay"]
    parallel_total = stats.decode_s * workers + sum(stats.partition_replay_s) + tables_s * workers
    serial = stats.wall_s["gather"] - stats.wall_s["tables"] + printing
    print("\nestimate for N machines (from these measurements):")
    print(f"  per-partition replay {rate / 1e6:.2f} M packets/s per core; shuffle "
          f"{stats.shuffle_total_bytes / max(packets, 1):.0f} bytes/packet, of which (N-1)/N crosses the network")
    print(f"  worker time (decode, replay, findings and tables) {parallel_total:.1f} core-seconds; "
          f"client serial work (gathering the tables, printing JSON) {serial:.1f} s")
    for n in (2, 4, 8, 16):
        parallel = parallel_total / n
        network = stats.shuffle_total_bytes * (n - 1) / n / 1.25e8  # 1 Gbit/s per machine link
        print(f"  N={n:2d}: parallel part ~{parallel:.1f} s + shuffle at 1 Gbit/s ~{network:.2f} s "
              f"+ serial ~{serial:.1f} s = ~{parallel + network + serial:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=100_000)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    directory = split(capture(args.connections), args.files)
    base = [sys.executable, "-m", "pcapstate", "analyze", str(directory), "--format", "json", "-o", "/dev/null"]
    parquet = [sys.executable, "-m", "pcapstate", "analyze", str(directory), "--format", "parquet", "-o",
               str(DATA / "dask-split-parquet")]  # written by the workers themselves, a part each, with dask
    from pcapstate import dask_engine

    # an existing cluster (--scheduler), as a user with one would run: its workers started and warm
    with dask_engine.connect(workers=args.workers) as running:
        address = running.scheduler.address
        variants = {"one process, --jobs 1": base + ["--jobs", "1"], "one process, default jobs": base,
                    f"--engine dask, {args.workers} workers": base + ["--engine", "dask"],
                    f"--engine dask --scheduler (running, {args.workers} workers)": base + ["--scheduler", address],
                    "one process, --format parquet -o DIR": parquet + ["--jobs", "1"],
                    f"--engine dask --scheduler (running), --format parquet -o DIR": parquet + ["--scheduler", address]}
        times: dict[str, list[float]] = {name: [] for name in variants}
        timed(base)  # warm the page cache
        timed(variants[f"--engine dask --scheduler (running, {args.workers} workers)"])  # and the running workers
        for _ in range(args.rounds):
            for name, command in variants.items():
                times[name].append(timed(command))
    print(f"{directory}: {args.files} files; {args.rounds} rounds, alternating")
    one = statistics.median(times["one process, --jobs 1"])
    for name, runs in times.items():
        median = statistics.median(runs)
        print(f"  {name + ':':50s} median {median:.2f} s  ({', '.join(f'{t:.2f}' for t in runs)})  "
              f"{one / median:.2f}x of --jobs 1")
    print("  target: dask >= 1.7x of one process with one thread (the parquet lines: against the parquet "
          "one, whose own ratio they print after)")
    alone = statistics.median(times["one process, --format parquet -o DIR"])
    dask_parquet = statistics.median(times["--engine dask --scheduler (running), --format parquet -o DIR"])
    print(f"  parquet: dask on a running cluster {alone / dask_parquet:.2f}x of one process with one thread")
    measure_inside(directory, args.workers)


if __name__ == "__main__":
    main()

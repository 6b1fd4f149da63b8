#!/usr/bin/env python3
"""Decoding speed and memory of one capture: the fast path or the dpkt reference.

    python3 benchmarks/decode_speed.py benchmarks/data/synth-20k.pcap
    python3 benchmarks/decode_speed.py benchmarks/data/synth-100k.pcap --decoder dpkt-reference --repeat 1

Decodes the file ``--repeat`` + 1 times in this process and prints the first
decode (compiling, or loading numba's cache, and paging the file in), then the
best of the others, as wall time and CPU time (this process only, so other
load on the machine shows in the wall time), in records per second, and the
peak resident memory.  Run it once with ``NUMBA_CACHE_DIR`` set to an empty
directory to see the first-run compile time.
"""
from __future__ import annotations

import argparse
import resource
import sys
import time


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("capture")
    parser.add_argument("--decoder", default="dpkt", choices=("dpkt", "dpkt-reference"))
    parser.add_argument("--repeat", type=int, default=3, help="warm decodes after the first")
    args = parser.parse_args(argv)
    from pcapstate.decode import read_capture

    runs = []
    for _ in range(args.repeat + 1):
        wall, cpu = time.perf_counter(), time.process_time()
        table = read_capture(args.capture, decoder=args.decoder)
        runs.append((time.perf_counter() - wall, time.process_time() - cpu))
        records = table.stats.records
        del table
    (first_wall, first_cpu), warm = runs[0], runs[1:] or runs
    wall, cpu = min(w for w, _ in warm), min(c for _, c in warm)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.capture} ({args.decoder}): {records:,} records")
    print(f"  first decode: {first_wall:.3f} s wall, {first_cpu:.3f} s CPU")
    print(f"  warm (best of {len(warm)}): {wall:.3f} s wall = {records / wall / 1e6:.2f} M records/s, "
          f"{cpu:.3f} s CPU = {records / cpu / 1e6:.2f} M records/s")
    print(f"  peak resident memory: {peak:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""Fuzzing pcapstate: mutated real captures must analyze, or fail with a PcapstateError.

    python3 tests/fuzz.py --cases 1000000           # a long run (crashes saved to tests/data/fuzz/)
    python3 tests/fuzz.py --minutes 30 --seed 7

The property (:func:`check`) runs the whole analysis a user runs, from bytes to
findings: decoding (the fast path and the dpkt reference it falls back to), both
endpoints' replay, retransmissions, retry chains, anomalies and the Zeek
summary.  Any exception other than a :class:`pcapstate.errors.PcapstateError`
is a crash.  Inputs start from the samples, the Zeek traces and the format
files, and are mutated the way files break: bytes flipped, runs overwritten with
boundary values, lengths rewritten, cut short, spliced, repeated.

``tests/test_fuzz.py`` runs a bounded number of cases in CI (hypothesis) and
replays every input saved under ``tests/data/fuzz/``.
"""
from __future__ import annotations

import argparse
import hashlib
import random
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's pcapstate, whatever is installed
CRASHES = ROOT / "tests" / "data" / "fuzz"
INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 20, 24, 40, 65535, 65536)


def seeds() -> list[bytes]:
    """Real captures to start from: small ones, so each case is quick."""
    places = [ROOT / "samples", ROOT / "tests" / "data" / "formats", ROOT.parent / "shared" / "conformance" / "zeek"
              / "traces"]
    found = []
    for place in places:
        if place.is_dir():
            for path in sorted(place.iterdir()):
                if path.is_file() and path.stat().st_size < 64_000:
                    data = path.read_bytes()
                    if data[:4] in _MAGICS or data[:2] == b"\x1f\x8b":
                        found.append(data)
    return found


_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d", b"\x0a\x0d\x0d\x0a")


def check(data: bytes) -> None:
    """Analyze ``data``; raise only if pcapstate fails with something other than its own error."""
    from pcapstate.decode import decode_bytes
    from pcapstate.errors import PcapstateError
    from pcapstate.findings import compute
    from pcapstate.tracker import track
    from pcapstate.zeek import zeek_summary

    try:
        table = decode_bytes(data, "fuzz")
    except PcapstateError:
        return
    tracking = track(table)
    names = [("a:1", "b:2")] * len(tracking.result.connections)
    compute(tracking, names)
    zeek_summary(tracking)


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to four mutations of the kinds broken captures show."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not buf:
            break
        kind = rng.randrange(7)
        at = rng.randrange(len(buf))
        if kind == 0:  # flip bits
            buf[at] ^= 1 << rng.randrange(8)
        elif kind == 1:  # a boundary value in a 16- or 32-bit field, either byte order
            size = rng.choice((2, 4))
            value = rng.choice(INTERESTING) & ((1 << (8 * size)) - 1)
            buf[at:at + size] = value.to_bytes(size, rng.choice(("little", "big")))
        elif kind == 2:  # cut short
            del buf[at:]
        elif kind == 3:  # a run of random bytes
            buf[at:at + rng.randint(1, 32)] = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 32)))
        elif kind == 4:  # repeat a slice (a duplicated record, a resent packet)
            end = min(len(buf), at + rng.randint(1, 200))
            buf[end:end] = buf[at:end]
        elif kind == 5:  # delete a slice (a lost piece of a file)
            del buf[at:at + rng.randint(1, 200)]
        else:  # zero a run (a sparse file, a torn write)
            buf[at:at + rng.randint(1, 64)] = bytes(rng.randint(1, 64))
    return bytes(buf)


def crash_signature(error: BaseException) -> str:
    """The exception type and the innermost line it came from: one bug, one signature."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    return f"{type(error).__name__} at {where}"


def save_crash(data: bytes) -> Path:
    CRASHES.mkdir(parents=True, exist_ok=True)
    path = CRASHES / f"crash-{hashlib.sha256(data).hexdigest()[:16]}.bin"
    path.write_bytes(data)
    return path


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=None, help="stop after this many cases")
    parser.add_argument("--minutes", type=float, default=None, help="stop after this long")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.cases is None and args.minutes is None:
        args.cases = 10_000
    import pcapstate.analysis  # noqa: F401 - a broken installation is no crash of the fuzzed code

    rng = random.Random(args.seed)
    pool = seeds()
    start, cases, crashes = time.monotonic(), 0, 0
    seen: dict[str, int] = {}  # crash signature -> times hit
    deadline = start + args.minutes * 60 if args.minutes else float("inf")
    while (args.cases is None or cases < args.cases) and time.monotonic() < deadline:
        data = mutate(rng.choice(pool), rng)
        cases += 1
        try:
            check(data)
        except Exception as error:  # noqa: BLE001 - any escape is what we are looking for
            crashes += 1
            signature = crash_signature(error)
            seen[signature] = seen.get(signature, 0) + 1
            if seen[signature] <= 3:  # a few inputs per distinct bug, not one file per case
                path = save_crash(data)
                print(f"crash {crashes} at case {cases}, saved {path}:\n{traceback.format_exc()}", flush=True)
        if cases % 10_000 == 0:
            print(f"{cases} cases, {crashes} crashes, {time.monotonic() - start:.0f} s", flush=True)
    print(f"done: {cases} cases in {time.monotonic() - start:.0f} s, {crashes} crashes (seed {args.seed})")
    for signature, times in seen.items():
        print(f"  {times} x {signature}")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

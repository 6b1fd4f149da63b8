"""Shared test material: benchmarks/generate.py's synthetic captures, and a classic pcap cut into records."""
from __future__ import annotations

import importlib.util
import struct
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def generator():
    """benchmarks/generate.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("generate", REPO / "benchmarks" / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    return generate


def write_synthetic(path: Path, connections: int) -> Path:
    """A deterministic capture of ``connections`` connections of every kind the benchmark mixes."""
    generate = generator()
    generate.write_pcap(path, generate.generate(connections))
    return path


def pcap_records(data: bytes) -> list[bytes]:
    """The records (header and data) of a classic pcap, after its 24-byte file header."""
    order = "<" if struct.unpack("<I", data[:4])[0] in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    records, pos = [], 24
    while pos + 16 <= len(data):
        length = struct.unpack_from(order + "I", data, pos + 8)[0]
        records.append(data[pos:pos + 16 + length])
        pos += 16 + length
    return records


def with_swapped_records(source: Path, path: Path, swaps: int, seed: int) -> Path:
    """``source`` (a classic pcap) with ``swaps`` random pairs of neighbouring records exchanged: records out
    of timestamp order, as a capture merged or written by several threads has them."""
    import numpy as np

    data = source.read_bytes()
    records = pcap_records(data)
    rng = np.random.default_rng(seed)
    for i in rng.choice(len(records) - 1, size=swaps, replace=False).tolist():
        records[i], records[i + 1] = records[i + 1], records[i]
    path.write_bytes(data[:24] + b"".join(records))
    return path

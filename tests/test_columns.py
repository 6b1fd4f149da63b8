"""Result columns (pcapstate.columns): tables put together from parts, and packed for the wire."""
from __future__ import annotations

import numpy as np
import pandas as pd

import pcapstate
from pcapstate.columns import (Categories, Nullable, Objects, Table, Texts, Times, compacted, concat, dump_table,
                               load_table, packed, unpacked)

SAMPLE = "samples/fin_dropped.pcap"


def a_table(offset: int = 0, names=("x", "y")) -> Table:
    objects = np.empty(2, dtype=object)
    objects[:] = [(0.5, 1.0), None]
    return Table({
        "flow": np.array([offset, offset + 70_000], dtype=np.int64),
        "port": np.array([80, 443], dtype=np.uint16),
        "seconds": np.array([0.25, np.nan]),
        "state": Categories(np.array([0, -1]), ("CLOSED", "LISTEN"), ordered=True),
        "ts": Times(np.array([1_700_000_000_123_456_789, 0]), np.array([False, True])),
        "frame": Nullable(np.array([3, 0]), np.array([False, True])),
        "addr": Texts(np.array([1, -1]), names),
        "intervals": Objects(objects),
    })


def test_concat_puts_rows_after_each_other_and_unions_texts():
    joined = concat([a_table(0, ("a", "b")), a_table(10, ("b", "c"))])
    frame = joined.to_pandas()
    assert frame["flow"].tolist() == [0, 70_000, 10, 70_010]
    assert joined["addr"].objects().tolist() == ["b", None, "c", None]
    assert frame["ts"].isna().tolist() == [False, True, False, True]
    assert frame["frame"].tolist() == [3, pd.NA, 3, pd.NA]
    assert frame["state"].cat.ordered and frame["state"].isna().tolist() == [False, True] * 2


def test_packed_tables_come_back_identical():
    table = a_table()
    wire = packed(table)
    assert wire[0][1][0].dtype == np.int32  # 70,000 needs 32 bits, not 64
    back = unpacked(wire)
    pd.testing.assert_frame_equal(back.to_pandas(), table.to_pandas())
    for name in table.names:
        column, again = table[name], back[name]
        if isinstance(column, np.ndarray):
            assert again.dtype == column.dtype


def test_every_table_of_an_analysis_survives_packing():
    analysis = pcapstate.analyze(SAMPLE)
    for name in ("flows", "transitions", "packets", "retransmissions", "retries", "anomalies"):
        table = analysis.columnar(name)
        pd.testing.assert_frame_equal(unpacked(packed(table)).to_pandas(), table.to_pandas(), obj=name)


def test_dumped_tables_load_back_identical_one_after_another(tmp_path):
    path = tmp_path / "tables.columns"
    first, second = a_table(), compacted(a_table(5, ("p", "q")).take(np.array([1, 0])))
    with open(path, "wb") as handle:
        dump_table(first, handle)
        dump_table(second, handle)
    with open(path, "rb") as handle:
        back = [load_table(handle), load_table(handle), load_table(handle)]
    assert back[2] is None
    for table, again in zip((first, second), back):
        pd.testing.assert_frame_equal(again.to_pandas(), table.to_pandas())
        assert again["intervals"].values.tolist() == table["intervals"].values.tolist()  # tuples stay tuples
        assert again["port"].dtype == np.uint16
    assert back[1]["addr"].values == ("q",)  # compacted: only the strings its rows use


def test_every_table_of_an_analysis_survives_dumping(tmp_path):
    analysis = pcapstate.analyze(SAMPLE)
    for name in ("flows", "transitions", "packets", "retransmissions", "retries", "anomalies"):
        table = analysis.columnar(name)
        with open(tmp_path / name, "wb") as handle:
            dump_table(table, handle)
        with open(tmp_path / name, "rb") as handle:
            pd.testing.assert_frame_equal(load_table(handle).to_pandas(), table.to_pandas(), obj=name)


def test_texts_objects_of_a_few_rows_of_many_strings_are_looked_up_row_by_row_alike():
    many = tuple(f"10.0.{i // 256}.{i % 256}" for i in range(1000))
    for codes in ([3, -1, 999, 3], list(range(1000)) + [-1] * 5):  # fewer rows than strings, then more
        got = Texts(np.array(codes), many).objects()
        assert got.dtype == object and got.tolist() == [many[c] if c >= 0 else None for c in codes]

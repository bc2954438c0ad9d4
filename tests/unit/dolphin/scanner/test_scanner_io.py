"""Scan files: schema, daily Parquet, per-scan Arrow (atomic), readers, the `dolphin scan` command."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dolphin.scanner import (
    WINDOWS,
    LiveScanner,
    read_scan_arrow,
    read_scans,
    read_scans_table,
    scan,
    write_day_parquet,
    write_scan_arrow,
)
from tests.support.scanner import T0, make_panel, one_factor_close, write_one_factor_set

FIELDS = ("open_time", "lam", "velocity", "instability", "valid", "loadings", "close", "fallbacks", "vel_div")


def same(a, b):
    assert a.symbols == b.symbols and a.bar_ms == b.bar_ms and a.windows == b.windows
    for f in FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), f


@pytest.fixture(scope="module")
def two_days():
    close = one_factor_close(751 + 2 * 288, 5, seed=2)
    panel = make_panel(close, t0=T0 - 751 * 300_000)
    return panel, scan(panel, start_ms=T0)


def test_daily_parquet_roundtrip(two_days, tmp_path):
    panel, res = two_days
    paths = write_day_parquet(res, tmp_path)
    assert [p.name for p in paths] == ["scans_2024-01-01.parquet", "scans_2024-01-02.parquet"]
    assert sorted(x.name for x in tmp_path.iterdir()) == [p.name for p in paths]  # no temp files left
    t = pq.read_table(paths[0])
    assert t.num_rows == 288
    md = t.schema.metadata
    assert json.loads(md[b"symbols"]) == panel.symbols and int(md[b"bar_ms"]) == 300_000
    assert json.loads(md[b"windows"]) == list(WINDOWS)
    assert t.schema.field("loadings_w750").type == pa.list_(pa.float64(), 5)
    assert t.schema.field("bar_open_time").type == pa.timestamp("ms", tz="UTC")
    assert t.column("timestamp")[0].as_py() == T0 + 300_000  # scan time = bar close
    assert t.column("n_assets")[0].as_py() == 5
    assert t.column("fallbacks").type == pa.int8()
    same(read_scans(tmp_path), res)
    day2 = read_scans(tmp_path, start="2024-01-02", end="2024-01-02")
    same(day2, res[288:])
    few = read_scans_table(tmp_path, start=T0 + 10 * 300_000, end=T0 + 12 * 300_000)
    assert few.num_rows == 3
    lam = few.column("lambda_norm_w50").to_numpy()
    assert np.array_equal(lam, res.lam[10:13, 0] / 5)


def test_scan_arrow_files_are_atomic_and_complete(two_days, tmp_path):
    panel, res = two_days
    p = write_scan_arrow(res[287], tmp_path)
    assert p == tmp_path / "2024-01-01" / f"scan_{T0 + 288 * 300_000}.arrow"  # close 00:00 next day, filed by open
    same(read_scan_arrow(p), res[287])
    assert [x.name for x in p.parent.iterdir()] == [p.name]
    write_scan_arrow(res[288], tmp_path)
    same(read_scans(tmp_path), res[287:289])
    with pytest.raises(ValueError):
        write_scan_arrow(res[0:2], tmp_path)


def test_live_rows_write_like_batch_rows(two_days, tmp_path):
    panel, res = two_days
    live = LiveScanner.from_panel(panel, upto_ms=T0 + 99 * 300_000)
    row = live.push(T0 + 100 * 300_000, panel.close[751 + 100])
    same(row, res[100])
    same(read_scan_arrow(write_scan_arrow(row, tmp_path)), res[100])
    d = row.row_dict()
    assert d["timestamp"] == T0 + 101 * 300_000 and len(d["loadings_w50"]) == 5 and d["valid_w750"]


def main(argv):
    """`dolphin scan ...` through this package's own subparser (independent of other command families)."""
    import argparse

    from dolphin.scanner.cli import register

    parser = argparse.ArgumentParser(prog="dolphin")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_scan(tmp_path, capsys):

    src = tmp_path / "set"
    src.mkdir()
    write_one_factor_set(src)
    out = tmp_path / "out"
    assert main(["scan", "--data", str(src), "--out", str(out), "--no-progress"]) == 0
    res = read_scans(out)
    assert len(res) == 3 * 288 and res.symbols == ["AAAUSDT", "BBBUSDT", "CCCUSDT"]
    assert res.valid[:, 0].sum() == 3 * 288 - 50 and res.valid[:, 3].sum() == 3 * 288 - 750
    # a sub-range re-scan with per-scan Arrow files reproduces the full-run rows bit for bit
    out2 = tmp_path / "out2"
    assert main(["scan", "--data", str(src), "--out", str(out2), "--start", "2024-01-03T10:00",
                 "--end", "2024-01-03T10:20", "--arrow-files", str(out2 / "arrow"), "--no-progress"]) == 0
    part = read_scans(out2)
    assert len(part) == 5
    k = int(np.searchsorted(res.open_time, part.open_time[0]))
    same(part, res[k:k + 5])
    assert len(list((out2 / "arrow" / "2024-01-03").glob("scan_*.arrow"))) == 5
    assert "exact fallbacks" in capsys.readouterr().out

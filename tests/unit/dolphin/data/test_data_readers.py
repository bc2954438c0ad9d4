"""Readers: every format round-trips REAL candles exactly; every malformed input is a DataError naming the file."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dolphin.data import DataError, read_candles
from dolphin.data.readers import CandleSet, normalize_symbol
from tests.support.data import (
    BAR_1H, BAR_5M, HEADER, T0, assert_rows_equal, binance_csv_lines, binance_csv_text, concat, json_rows,
    real_rows, set_dir, take, write_binance_csv, write_binance_zip, write_feather, write_json, write_parquet,
    zip_bytes,
)


# --- Parquet sets --------------------------------------------------------------------------------


def test_parquet_set_matches_pyarrow_exactly():
    cs = read_candles(set_dir(), symbols=["BTCUSDT", "ETHUSDT"])
    assert isinstance(cs, CandleSet) and sorted(cs) == ["BTCUSDT", "ETHUSDT"]
    for sym in cs:
        t = pq.read_table(set_dir() / f"{sym}.parquet")
        assert cs[sym].symbol == sym
        np.testing.assert_array_equal(cs[sym].open_time, t.column("open_time").cast(pa.int64()).to_numpy())
        for c in ("open", "high", "low", "close", "volume"):
            np.testing.assert_array_equal(getattr(cs[sym], c), t.column(c).to_numpy())
        assert cs[sym].source.endswith(f"{sym}.parquet")
        assert cs.formats[sym] == ("parquet",)


def test_whole_spot_set_reads_50_symbols():
    cs = read_candles(set_dir())
    assert len(cs) == 50
    assert len(cs["BTCUSDT"]) == 71769 and cs["BTCUSDT"].open_time[0] == T0
    assert "BNBUSDT" not in cs  # README: BNB, ADA, DOT are not in the set
    assert set(cs.file_formats.values()) == {"parquet"} and len(cs.file_formats) == 50
    assert cs.skipped == []


def test_parquet_time_filter_inclusive_and_symbol_spellings():
    start, end = T0 + 10 * BAR_5M, T0 + 20 * BAR_5M
    cs = read_candles(set_dir(), symbols=["btc/usdt", "ETH_USDT:USDT"], start_ms=start, end_ms=end)
    assert sorted(cs) == ["BTCUSDT", "ETHUSDT"]
    np.testing.assert_array_equal(cs["BTCUSDT"].open_time, T0 + BAR_5M * np.arange(10, 21))
    np.testing.assert_array_equal(cs["ETHUSDT"].close, real_rows("ETHUSDT", 11, start=10)["close"])


def test_parquet_filter_outside_data_gives_empty_symbol_not_silence():
    cs = read_candles(set_dir(), symbols=["BTCUSDT"], start_ms=T0 + 400 * 86_400_000)
    assert len(cs["BTCUSDT"]) == 0  # kept (empty) so the aligner reports it


def test_missing_symbol_is_named():
    with pytest.raises(DataError, match=r"symbol\(s\) not found: XYZUSDT"):
        read_candles(set_dir(), symbols=["BTCUSDT", "XYZUSDT"])


def test_parquet_without_candle_columns_names_file_and_columns():
    funding = set_dir().parent.parent / "funding" / "usdtm-8h-2023" / "BTCUSDT.parquet"
    with pytest.raises(DataError, match=r"BTCUSDT\.parquet: not a candle file: missing column\(s\) open_time/date, open"):
        read_candles(funding)


def test_parquet_with_date_column_and_us_timestamps(tmp_path, btc):
    pq.write_table(pa.table({
        "date": pa.array(btc["open_time"] * 1000, pa.timestamp("us", tz="UTC")),
        **{c: btc[c] for c in ("open", "high", "low", "close", "volume")},
    }), tmp_path / "BTC_USDT-5m.parquet")
    cs = read_candles(tmp_path / "BTC_USDT-5m.parquet")
    assert_rows_equal(cs["BTCUSDT"], btc)


def test_corrupt_parquet_names_file(tmp_path):
    (tmp_path / "BTCUSDT.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataError, match=r"BTCUSDT\.parquet: unreadable Parquet file"):
        read_candles(tmp_path)


# --- freqtrade feather / JSON ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["BTC_USDT-5m.feather", "BTC_USDT_USDT-5m-futures.feather"])
def test_feather_round_trip(tmp_path, btc, name):
    cs = read_candles(write_feather(tmp_path / name, btc))
    assert list(cs) == ["BTCUSDT"]
    assert_rows_equal(cs["BTCUSDT"], btc)
    assert cs.formats["BTCUSDT"] == ("feather",)


def test_feather_time_filter(tmp_path, btc):
    write_feather(tmp_path / "BTC_USDT-5m.feather", btc)
    cs = read_candles(tmp_path, start_ms=int(btc["open_time"][5]), end_ms=int(btc["open_time"][9]))
    assert_rows_equal(cs["BTCUSDT"], take(btc, slice(5, 10)))


@pytest.mark.parametrize("name", ["ETH_USDT-5m.json", "ETH_USDT_USDT-5m-futures.json", "ETH_USDT-5m.json.gz"])
def test_json_round_trip(tmp_path, eth, name):
    cs = read_candles(write_json(tmp_path / name, eth))
    assert list(cs) == ["ETHUSDT"]
    assert_rows_equal(cs["ETHUSDT"], eth)


def test_json_row_with_wrong_length_names_row_and_time(tmp_path, eth):
    rows = json_rows(eth)
    rows[7] = rows[7][:5]
    (tmp_path / "ETH_USDT-5m.json").write_text(json.dumps(rows))
    with pytest.raises(DataError, match=r"ETH_USDT-5m\.json: row 7 \(timestamp 1704069300000 = 2024-01-01 00:35:00 UTC\): "
                                         r"expected 6 values"):
        read_candles(tmp_path)


def test_json_non_numeric_value_names_row_and_column(tmp_path, eth):
    rows = json_rows(eth)
    rows[3][4] = "n/a"
    (tmp_path / "ETH_USDT-5m.json").write_text(json.dumps(rows))
    with pytest.raises(DataError, match=r"row 3 \(timestamp 1704068100000 = 2024-01-01 00:15:00 UTC\): close value 'n/a' "
                                         r"is not a number"):
        read_candles(tmp_path)


def test_json_not_a_list_and_invalid_json(tmp_path):
    (tmp_path / "A_USDT-5m.json").write_text('{"date": 1}')
    with pytest.raises(DataError, match=r"A_USDT-5m\.json: expected a JSON list"):
        read_candles(tmp_path / "A_USDT-5m.json")
    (tmp_path / "B_USDT-5m.json").write_text("[[1704067200000, 1, 2")
    with pytest.raises(DataError, match=r"B_USDT-5m\.json: unreadable JSON"):
        read_candles(tmp_path / "B_USDT-5m.json")


def test_json_seconds_timestamps_rejected(tmp_path, eth):
    rows = json_rows(eth)
    for r in rows:
        r[0] //= 1000
    (tmp_path / "ETH_USDT-5m.json").write_text(json.dumps(rows))
    with pytest.raises(DataError, match=r"row 0: open_time 1704067200 is neither epoch milliseconds nor microseconds"):
        read_candles(tmp_path)


def test_freqtrade_non_trade_files_are_skipped_and_listed(tmp_path, btc):
    write_feather(tmp_path / "BTC_USDT_USDT-5m-futures.feather", btc)
    write_feather(tmp_path / "BTC_USDT_USDT-1h-mark.feather", btc)
    write_feather(tmp_path / "BTC_USDT_USDT-8h-funding_rate.feather", btc)
    cs = read_candles(tmp_path)
    assert list(cs) == ["BTCUSDT"] and cs["BTCUSDT"].source.endswith("-5m-futures.feather")
    reasons = {p.split("/")[-1]: r for p, r in cs.skipped}
    assert reasons == {"BTC_USDT_USDT-1h-mark.feather": "freqtrade 'mark' candles, not trades",
                       "BTC_USDT_USDT-8h-funding_rate.feather": "freqtrade 'funding_rate' candles, not trades"}
    with pytest.raises(DataError, match=r"funding_rate\.feather: not a candle file \(freqtrade 'funding_rate'"):
        read_candles(tmp_path / "BTC_USDT_USDT-8h-funding_rate.feather")


def test_spot_and_futures_of_one_symbol_refused(tmp_path, btc):
    write_feather(tmp_path / "BTC_USDT-5m.feather", btc)
    write_feather(tmp_path / "BTC_USDT_USDT-5m-futures.feather", btc)
    with pytest.raises(DataError, match=r"BTCUSDT: both spot and futures freqtrade files"):
        read_candles(tmp_path)


def test_two_timeframes_of_one_symbol_need_timeframe(tmp_path, btc):
    write_feather(tmp_path / "BTC_USDT-5m.feather", btc)
    h = real_rows("BTCUSDT", 50, set_name="mixed-1h-2022-2026")
    write_feather(tmp_path / "BTC_USDT-1h.feather", h)
    with pytest.raises(DataError, match=r"BTCUSDT: files with different timeframes \(1h: BTC_USDT-1h\.feather; "
                                         r"5m: BTC_USDT-5m\.feather\)"):
        read_candles(tmp_path)
    cs = read_candles(tmp_path, timeframe="1h")
    assert_rows_equal(cs["BTCUSDT"], h)
    assert cs.skipped == [(str(tmp_path / "BTC_USDT-5m.feather"), "timeframe 5m (asked for 1h)")]


def test_corrupt_feather_names_file(tmp_path):
    (tmp_path / "BTC_USDT-5m.feather").write_bytes(b"ARROW1 garbage")
    with pytest.raises(DataError, match=r"BTC_USDT-5m\.feather: unreadable feather file"):
        read_candles(tmp_path)


# --- Binance archive CSV / zip ---------------------------------------------------------------------


@pytest.mark.parametrize("us", [False, True], ids=["ms", "us"])
@pytest.mark.parametrize("header", [False, True], ids=["headerless", "header"])
def test_binance_csv_round_trip(tmp_path, btc, us, header):
    path = write_binance_csv(tmp_path / "BTCUSDT-5m-2024-01-01.csv", btc, us=us, header=header)
    cs = read_candles(path)
    assert list(cs) == ["BTCUSDT"] and cs.formats["BTCUSDT"] == ("binance-csv",)
    assert_rows_equal(cs["BTCUSDT"], btc)


@pytest.mark.parametrize("us", [False, True], ids=["ms", "us"])
@pytest.mark.parametrize("header", [False, True], ids=["headerless", "header"])
def test_binance_zip_round_trip(tmp_path, eth, us, header):
    cs = read_candles(write_binance_zip(tmp_path / "ETHUSDT-5m-2024-01-01.zip", eth, us=us, header=header))
    assert list(cs) == ["ETHUSDT"] and cs.formats["ETHUSDT"] == ("binance-zip",)
    assert_rows_equal(cs["ETHUSDT"], eth)


def test_binance_daily_files_concatenate_in_name_order(tmp_path):
    rows = real_rows("BTCUSDT", 288 * 3)  # three real UTC days
    days = [take(rows, slice(288 * d, 288 * (d + 1))) for d in range(3)]
    # written newest first, one of them µs (Binance switched spot files to µs in 2025): order comes from names
    write_binance_zip(tmp_path / "BTCUSDT-5m-2024-01-03.zip", days[2])
    write_binance_csv(tmp_path / "BTCUSDT-5m-2024-01-02.csv", days[1], us=True, header=True)
    write_binance_zip(tmp_path / "BTCUSDT-5m-2024-01-01.zip", days[0])
    (tmp_path / "BTCUSDT-5m-2024-01-01.zip.CHECKSUM").write_text("abc  BTCUSDT-5m-2024-01-01.zip\n")
    cs = read_candles(tmp_path)
    c = cs["BTCUSDT"]
    assert_rows_equal(c, rows)
    assert [f.split("/")[-1] for f in c.files] == ["BTCUSDT-5m-2024-01-01.zip", "BTCUSDT-5m-2024-01-02.csv",
                                                   "BTCUSDT-5m-2024-01-03.zip"]
    np.testing.assert_array_equal(c.file_index, np.repeat([0, 1, 2], 288))
    assert c.sources_of([0, 300]) == f"{tmp_path}/BTCUSDT-5m-2024-01-01.zip, {tmp_path}/BTCUSDT-5m-2024-01-02.csv"
    assert cs.formats["BTCUSDT"] == ("binance-csv", "binance-zip")
    assert cs.skipped == [(str(tmp_path / "BTCUSDT-5m-2024-01-01.zip.CHECKSUM"), "not a candle file extension")]


def test_binance_csv_time_filter(tmp_path, btc):
    write_binance_csv(tmp_path / "BTCUSDT-5m-2024-01.csv", btc, us=True)
    cs = read_candles(tmp_path, start_ms=int(btc["open_time"][100]), end_ms=int(btc["open_time"][149]))
    assert_rows_equal(cs["BTCUSDT"], take(btc, slice(100, 150)))


def test_binance_csv_wrong_column_count_names_line_and_time(tmp_path, btc):
    lines = binance_csv_lines(btc)
    lines[41] = ",".join(lines[41].split(",")[:11])
    (tmp_path / "BTCUSDT-5m-2024-01-01.csv").write_text(HEADER + "\n" + "\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"BTCUSDT-5m-2024-01-01\.csv: line 43 \(open_time 1704079500000 = "
                                         r"2024-01-01 03:25:00 UTC\): expected 12 columns, got 11"):
        read_candles(tmp_path)


def test_binance_csv_non_numeric_names_line_column_and_time(tmp_path, btc):
    lines = binance_csv_lines(btc, us=True)
    f = lines[9].split(",")
    f[2] = "abc"
    lines[9] = ",".join(f)
    (tmp_path / "BTCUSDT-5m-2025-01-01.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"line 10 \(open_time 1704069900000000 = 2024-01-01 00:45:00 UTC\): "
                                         r"high value 'abc' is not a number"):
        read_candles(tmp_path)


def test_binance_csv_non_integer_time_names_line(tmp_path, btc):
    lines = binance_csv_lines(btc)
    lines[4] = "2024-01-01 00:20:00" + lines[4][lines[4].index(","):]
    (tmp_path / "BTCUSDT-5m-2024-01-01.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"line 5: open_time '2024-01-01 00:20:00' is not an integer epoch time"):
        read_candles(tmp_path)


def test_binance_csv_us_not_whole_ms(tmp_path, btc):
    lines = binance_csv_lines(btc, us=True)
    lines[2] = "1704067800000500" + lines[2][lines[2].index(","):]
    (tmp_path / "BTCUSDT-5m-2024-01-01.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"line 3: open_time 1704067800000500 µs is not a whole millisecond"):
        read_candles(tmp_path)


def test_binance_csv_empty_price_is_nan_not_invented(tmp_path, btc):
    lines = binance_csv_lines(btc)
    f = lines[6].split(",")
    f[4] = ""
    lines[6] = ",".join(f)
    (tmp_path / "BTCUSDT-5m-2024-01-01.csv").write_text("\n".join(lines) + "\n")
    c = read_candles(tmp_path)["BTCUSDT"]
    assert np.isnan(c.close[6]) and np.isnan(c.close).sum() == 1
    np.testing.assert_array_equal(np.delete(c.close, 6), np.delete(btc["close"], 6))


def test_binance_header_with_wrong_column_count(tmp_path, btc):
    text = "open_time,open,high,low,close,volume\n" + "\n".join(binance_csv_lines(btc)[:3])
    (tmp_path / "BTCUSDT-5m-2024-01-01.csv").write_text(text)
    with pytest.raises(DataError, match=r"line 1 \(header\): expected the 12 Binance kline columns, got 6"):
        read_candles(tmp_path)


def test_empty_csv(tmp_path):
    (tmp_path / "BTCUSDT-5m-2024-01-01.csv").write_text("")
    with pytest.raises(DataError, match=r"BTCUSDT-5m-2024-01-01\.csv: empty file"):
        read_candles(tmp_path)


def test_header_only_csv_gives_zero_rows(tmp_path):
    (tmp_path / "BTCUSDT-5m-2024-01-01.csv").write_text(HEADER + "\n")
    assert len(read_candles(tmp_path)["BTCUSDT"]) == 0


def test_zip_errors_name_the_file(tmp_path, btc):
    bad = tmp_path / "BTCUSDT-5m-2024-01-01.zip"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError, match=r"BTCUSDT-5m-2024-01-01\.zip: not a readable zip archive"):
        read_candles(bad)
    two = tmp_path / "ETHUSDT-5m-2024-01-01.zip"
    two.write_bytes(zip_bytes({"a.csv": binance_csv_text(btc), "b.csv": binance_csv_text(btc)}))
    with pytest.raises(DataError, match=r"ETHUSDT-5m-2024-01-01\.zip: expected one CSV inside the zip, found 2"):
        read_candles(two)


def test_malformed_row_inside_zip_names_member_and_line(tmp_path, btc):
    lines = binance_csv_lines(btc)
    lines[0] = lines[0] + ",extra"
    p = tmp_path / "BTCUSDT-5m-2024-01-01.zip"
    p.write_bytes(zip_bytes({"BTCUSDT-5m-2024-01-01.csv": "\n".join(lines)}))
    with pytest.raises(DataError, match=r"BTCUSDT-5m-2024-01-01\.zip:BTCUSDT-5m-2024-01-01\.csv: line 1 "
                                         r"\(open_time 1704067200000 = 2024-01-01 00:00:00 UTC\): expected 12 columns, got 13"):
        read_candles(p)


# --- dispatch -----------------------------------------------------------------------------------------


def test_mixed_format_folder(tmp_path, btc, eth):
    sol = real_rows("SOLUSDT", 300)
    xrp = real_rows("XRPUSDT", 300)
    write_parquet(tmp_path / "ETHUSDT.parquet", eth)
    write_feather(tmp_path / "BTC_USDT-5m.feather", btc)
    write_binance_zip(tmp_path / "SOLUSDT-5m-2024-01-01.zip", sol, us=True)
    write_json(tmp_path / "XRP_USDT-5m.json", xrp)
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "sub").mkdir()
    cs = read_candles(tmp_path)
    assert sorted(cs) == ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]
    for sym, rows in (("BTCUSDT", btc), ("ETHUSDT", eth), ("SOLUSDT", sol), ("XRPUSDT", xrp)):
        assert_rows_equal(cs[sym], rows)
    assert cs.formats == {"BTCUSDT": ("feather",), "ETHUSDT": ("parquet",), "SOLUSDT": ("binance-zip",),
                          "XRPUSDT": ("json",)}
    assert sorted(r for _, r in cs.skipped) == ["not a candle file extension", "sub-folder (not searched)"]
    only = read_candles(tmp_path, symbols="SOLUSDT")
    assert list(only) == ["SOLUSDT"]


def test_unknown_and_missing_paths(tmp_path):
    (tmp_path / "readme.md").write_text("x")
    with pytest.raises(DataError, match=r"readme\.md: not a candle file"):
        read_candles(tmp_path / "readme.md")
    with pytest.raises(DataError, match=r"no candle files found .*skipped 1 other file"):
        read_candles(tmp_path)
    with pytest.raises(DataError, match=r"nope: no such file or directory"):
        read_candles(tmp_path / "nope")
    (tmp_path / "what is this.csv").write_text("1,2,3\n")
    with pytest.raises(DataError, match=r"what is this\.csv: cannot tell the symbol from the file name"):
        read_candles(tmp_path / "what is this.csv")


def test_normalize_symbol():
    assert normalize_symbol("btc/usdt") == "BTCUSDT"
    assert normalize_symbol("BTC/USDT:USDT") == "BTCUSDT"
    assert normalize_symbol("1000SHIB_USDT") == "1000SHIBUSDT"
    assert normalize_symbol(" eth-usdt ") == "ETHUSDT"


def test_candles_are_not_altered_by_reader_sorting(tmp_path, btc):
    """The reader keeps file order (sorting is the aligner's job, and it reports it)."""
    order = np.random.default_rng(7).permutation(300)
    write_binance_csv(tmp_path / "BTCUSDT-5m-2024-01-01.csv", take(btc, order))
    assert_rows_equal(read_candles(tmp_path)["BTCUSDT"], take(btc, order))


def test_1h_real_rows_round_trip_through_feather(tmp_path):
    h = real_rows("ETHUSDT", 200, set_name="mixed-1h-2022-2026")
    assert np.all(np.diff(h["open_time"]) == BAR_1H)
    assert_rows_equal(read_candles(write_feather(tmp_path / "ETH_USDT-1h.feather", h))["ETHUSDT"], h)
    both = concat(take(h, slice(0, 100)), take(h, slice(100, 200)))
    assert_rows_equal(read_candles(write_json(tmp_path / "ETH_USDT-1h.json", both))["ETHUSDT"], h)


def test_parquet_row_groups_pruned_by_time_filter_exactly(tmp_path):
    rows = real_rows("BTCUSDT", 1000)
    table = pa.table({"open_time": pa.array(rows["open_time"], pa.timestamp("ms", tz="UTC")),
                      **{c: rows[c] for c in ("open", "high", "low", "close", "volume")}})
    pq.write_table(table, tmp_path / "BTCUSDT.parquet", row_group_size=64)
    assert pq.ParquetFile(tmp_path / "BTCUSDT.parquet").num_row_groups == 16
    for a, b in ((0, 999), (63, 64), (100, 611), (640, 640), (900, 999)):
        cs = read_candles(tmp_path, start_ms=int(rows["open_time"][a]), end_ms=int(rows["open_time"][b]))
        assert_rows_equal(cs["BTCUSDT"], take(rows, slice(a, b + 1)))
    assert len(read_candles(tmp_path, start_ms=int(rows["open_time"][-1]) + 1)["BTCUSDT"]) == 0

"""Binance archive downloader against a loopback HTTP server.

The server holds an archive tree built here from REAL candles of the shared data (12-column Binance CSVs,
zipped, with ``.CHECKSUM`` siblings) and can be programmed per path to misbehave: wrong checksum, 404,
truncated body, dropped connection, stalled body, HTTP 500, slow headers, ignored or wrong Range.
Every socket the tests open must go to 127.0.0.1 (enforced by ``_loopback_only``).
"""

import argparse
import csv
import functools
import hashlib
import io
import time
import zipfile
from datetime import date, timedelta

import numpy as np
import pyarrow.parquet as pq
import pytest

from dolphin.adapters import binance_archive as ba
from dolphin.adapters.binance_archive import ArchiveError, archive_path, archive_url, download_klines, plan_periods
from dolphin.data.contracts import DataError
from dolphin.paths import data_root
from tests.support.archive import _loopback_only, server  # noqa: F401

DAY_MS = 86_400_000
COLS = ("open", "high", "low", "close", "volume")
DAYS = [date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 4)]
BAR = {"5m": 300_000, "1h": 3_600_000}


# --- real candles -> archive files ---------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _parquet(set_name, sym):
    t = pq.read_table(data_root() / "klines" / set_name / f"{sym}.parquet")
    return t.column("open_time").cast("int64").to_numpy(), {k: t.column(k).to_numpy() for k in COLS}


def _rows(set_name, sym, first: date, last: date):
    """Real rows with first <= open day <= last, straight from the parquet (the test's ground truth)."""
    ot, cols = _parquet(set_name, sym)
    lo = int(np.datetime64(first, "ms").astype(np.int64))
    hi = int(np.datetime64(last, "ms").astype(np.int64)) + DAY_MS
    m = (ot >= lo) & (ot < hi)
    assert m.any(), f"{set_name}/{sym} has no rows {first}..{last}"
    return ot[m], {k: v[m] for k, v in cols.items()}


def _kline_zip(name, ot, cols, bar_ms, us=False, header=False):
    """A zip as the archive publishes it: one headerless (spot) 12-column CSV, prices as %.8f strings,
    open/close time in ms (µs for spot from 2025)."""
    mult = 1000 if us else 1
    lines = ["open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
             "taker_buy_quote_volume,ignore"] if header else []
    for i, o in enumerate(ot):
        v = [f"{float(cols[k][i]):.8f}" for k in COLS]
        qv = f"{float(cols['close'][i]) * float(cols['volume'][i]):.8f}"
        lines.append(",".join([str(int(o) * mult), *v, str((int(o) + bar_ms) * mult - 1), qv, str(1000 + i),
                               "0.00000000", "0.00000000", "0"]))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name.replace(".zip", ".csv"), "\n".join(lines) + "\n")
    return buf.getvalue()


def _period_zip(set_name, market, g, sym, interval, period, **kw):
    if g == "daily":
        first = last = date.fromisoformat(period)
    else:
        first = date.fromisoformat(period + "-01")
        last = (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
    rel = archive_path(market, g, sym, interval, period)
    ot, cols = _rows(set_name, sym, first, last)
    return rel, _kline_zip(rel.rsplit("/", 1)[1], ot, cols, BAR[interval], **kw)


def _parse_zip(path):
    """(open_time, {col: float64}, raw rows) of the one CSV in a downloaded zip, parsed with csv."""
    with zipfile.ZipFile(path) as z:
        (member,) = z.namelist()
        text = z.read(member).decode()
    rows = [r for r in csv.reader(io.StringIO(text)) if r and r[0].isdigit()]
    assert rows and all(len(r) == 12 for r in rows)
    ot = np.array([int(r[0]) for r in rows], np.int64)
    return ot, {k: np.array([float(r[1 + j]) for r in rows]) for j, k in enumerate(COLS)}, rows


# --- loopback archive server ---------------------------------------------------------------------


@pytest.fixture
def spot(server):
    """BTCUSDT and ETHUSDT, daily 5m files for DAYS."""
    for sym in ("BTCUSDT", "ETHUSDT"):
        for d in DAYS:
            server.add(*_period_zip("spot-5m-2024", "spot", "daily", sym, "5m", d.isoformat()))
    return server


def _dl(arch, tmp_path, syms=("BTCUSDT", "ETHUSDT"), **kw):
    kw.setdefault("retries", 3)
    kw.setdefault("timeout_s", 5.0)
    return download_klines(list(syms), "5m", DAYS[0], DAYS[-1], market="spot", cache_dir=tmp_path,
                           base_url=arch.base, granularity="daily", backoff_s=0.01, **kw)


def _rel(sym="BTCUSDT", day=DAYS[0]):
    return archive_path("spot", "daily", sym, "5m", day.isoformat())


def _range_start(req):
    return int(req[2].split("=")[1].rstrip("-"))


# --- happy path, cache ---------------------------------------------------------------------------


def test_download_verifies_caches_and_reuses(spot, tmp_path):
    res = _dl(spot, tmp_path)
    assert res.downloaded == 6 and res.cached == 0 and res.missing == {}
    assert [p.name for p in res.files["BTCUSDT"]] == [f"BTCUSDT-5m-{d}.zip" for d in DAYS]
    for p in res.all_files():
        rel = "/" + p.relative_to(tmp_path).as_posix()
        assert p.read_bytes() == spot.files[rel]  # byte-identical, at the archive's own path
        assert hashlib.sha256(p.read_bytes()).hexdigest() == spot.files[rel + ".CHECKSUM"].split()[0].decode()
    assert not list(tmp_path.rglob("*.part"))
    assert len(spot.gets()) == 6 and len(spot.gets(suffix=".CHECKSUM")) == 6

    spot.requests.clear()
    again = _dl(spot, tmp_path)
    assert again.cached == 6 and again.downloaded == 0
    assert again.files == res.files
    assert spot.gets() == []  # only the CHECKSUM files were asked for
    assert len(spot.gets(suffix=".CHECKSUM")) == 6


def test_csv_in_downloaded_zip_matches_the_parquet_exactly(spot, tmp_path):
    res = _dl(spot, tmp_path, syms=("BTCUSDT", "ETHUSDT"))
    for sym in ("BTCUSDT", "ETHUSDT"):
        parsed = [_parse_zip(p) for p in res.files[sym]]
        ot = np.concatenate([p[0] for p in parsed])
        want_ot, want = _rows("spot-5m-2024", sym, DAYS[0], DAYS[-1])
        assert len(ot) == 3 * 288
        np.testing.assert_array_equal(ot, want_ot)
        for k in COLS:
            got = np.concatenate([p[1][k] for p in parsed])
            assert np.array_equal(got, want[k]), (sym, k)  # bit-exact
        close_time = np.array([int(r[6]) for p in parsed for r in p[2]])
        np.testing.assert_array_equal(close_time, want_ot + 299_999)


def test_downloaded_zips_read_back_with_the_readers(server, tmp_path):
    """Spot 2024 (ms) and spot 2025 (µs) zips, as the archive has them, read by read_candles as ms."""
    from dolphin.data import read_candles

    server.add(*_period_zip("spot-5m-2024", "spot", "daily", "BTCUSDT", "5m", "2024-03-05"))
    server.add(*_period_zip("mixed-1h-2022-2026", "spot", "daily", "BTCUSDT", "1h", "2025-02-10", us=True))
    a = download_klines(["BTCUSDT"], "5m", date(2024, 3, 5), date(2024, 3, 5), cache_dir=tmp_path,
                        base_url=server.base, backoff_s=0.01)
    b = download_klines(["BTCUSDT"], "1h", date(2025, 2, 10), date(2025, 2, 10), cache_dir=tmp_path,
                        base_url=server.base, backoff_s=0.01)
    for res, set_name, day in ((a, "spot-5m-2024", date(2024, 3, 5)), (b, "mixed-1h-2022-2026", date(2025, 2, 10))):
        (path,) = res.files["BTCUSDT"]
        c = read_candles(path)["BTCUSDT"]
        want_ot, want = _rows(set_name, "BTCUSDT", day, day)
        np.testing.assert_array_equal(c.open_time, want_ot)
        for k in COLS:
            np.testing.assert_array_equal(getattr(c, k), want[k])
    assert _parse_zip(b.files["BTCUSDT"][0])[0][0] == _rows("mixed-1h-2022-2026", "BTCUSDT", date(2025, 2, 10),
                                                            date(2025, 2, 10))[0][0] * 1000  # µs in the file


def test_usdt_m_futures_layout(server, tmp_path):
    rel, body = _period_zip("usdtm-5m-2023", "um", "daily", "BTCUSDT", "5m", "2023-07-10", header=True)
    assert rel.startswith("data/futures/um/daily/klines/BTCUSDT/5m/")
    server.add(rel, body)
    res = download_klines(["BTCUSDT"], "5m", date(2023, 7, 10), date(2023, 7, 10), market="um",
                          cache_dir=tmp_path, base_url=server.base, backoff_s=0.01)
    assert res.files["BTCUSDT"] == [tmp_path / rel]
    assert (tmp_path / rel).read_bytes() == body


def test_corrupt_cache_entry_is_detected_and_replaced(spot, tmp_path):
    _dl(spot, tmp_path, syms=("BTCUSDT",))
    bad, short = _rel(day=DAYS[2]), _rel(day=DAYS[1])
    (tmp_path / bad).write_bytes(b"garbage")
    (tmp_path / short).write_bytes(spot.files["/" + short][:-10])  # a valid prefix is still wrong
    spot.requests.clear()
    res = _dl(spot, tmp_path, syms=("BTCUSDT",))
    assert res.downloaded == 2 and res.cached == 1
    assert sorted(r[1] for r in spot.gets()) == sorted(["/" + short, "/" + bad])
    for rel in (bad, short):
        assert (tmp_path / rel).read_bytes() == spot.files["/" + rel]


def test_part_file_from_an_interrupted_run_is_resumed(spot, tmp_path):
    rel = _rel()
    body = spot.files["/" + rel]
    part = tmp_path / (rel + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(body[:1000])
    _dl(spot, tmp_path, syms=("BTCUSDT",))
    (get,) = spot.gets(rel)
    assert _range_start(get) == 1000
    assert (tmp_path / rel).read_bytes() == body and not part.exists()


def test_stale_part_file_is_discarded_after_its_checksum_fails(spot, tmp_path):
    rel = _rel()
    part = tmp_path / (rel + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 1000)  # not a prefix of the file: the resumed result cannot verify
    res = _dl(spot, tmp_path, syms=("BTCUSDT",))
    gets = spot.gets(rel)
    assert len(gets) == 2 and _range_start(gets[0]) == 1000 and gets[1][2] is None
    assert res.downloaded == 3 and (tmp_path / rel).read_bytes() == spot.files["/" + rel]


# --- archive gaps and verification failures ------------------------------------------------------


def test_404_day_is_reported_missing_and_not_retried(spot, tmp_path):
    rel = "/" + _rel("ETHUSDT", DAYS[1])
    del spot.files[rel], spot.files[rel + ".CHECKSUM"]
    res = _dl(spot, tmp_path)
    assert res.missing == {"ETHUSDT": [DAYS[1].isoformat()]}
    assert len(res.files["ETHUSDT"]) == 2 and len(res.files["BTCUSDT"]) == 3
    assert not (tmp_path / rel[1:]).exists()
    # one CHECKSUM GET, one HEAD to tell "not published" from "published without a checksum"
    assert [r[:2] for r in spot.requests if r[1].startswith(rel)] == [("GET", rel + ".CHECKSUM"), ("HEAD", rel)]


def test_missing_checksum_for_an_existing_zip_is_an_error(spot, tmp_path):
    rel = "/" + _rel()
    del spot.files[rel + ".CHECKSUM"]
    with pytest.raises(ArchiveError, match="cannot verify") as e:
        _dl(spot, tmp_path, syms=("BTCUSDT",))
    assert spot.base + rel in str(e.value)
    assert not (tmp_path / rel[1:]).exists()


def test_wrong_checksum_raises_with_url_and_hashes_and_leaves_nothing(spot, tmp_path):
    rel = "/" + _rel()
    spot.add(rel[1:], spot.files[rel], checksum="0" * 64)
    with pytest.raises(ArchiveError) as e:
        _dl(spot, tmp_path, syms=("BTCUSDT",), retries=2)
    msg = str(e.value)
    assert spot.base + rel in msg and "0" * 64 in msg and hashlib.sha256(spot.files[rel]).hexdigest() in msg
    assert not (tmp_path / rel[1:]).exists()
    assert not list(tmp_path.rglob("*.part"))
    assert len(spot.gets(rel[1:])) == 3  # the download plus `retries` more


def test_checksum_mismatch_once_is_downloaded_again(spot, tmp_path):
    rel = _rel(day=DAYS[2])
    spot.program(rel, corrupt=1)
    res = _dl(spot, tmp_path, syms=("BTCUSDT",))
    assert res.downloaded == 3
    assert [g[2] for g in spot.gets(rel)] == [None, None]  # the bad bytes were not resumed from
    assert (tmp_path / rel).read_bytes() == spot.files["/" + rel]


@pytest.mark.parametrize("damage", ["truncated", "flipped"])
def test_published_file_that_is_not_a_valid_zip_is_rejected(spot, tmp_path, damage):
    """The checksum matches (the archive published a broken file): testzip still keeps it out of the cache."""
    rel = _rel()
    good = spot.files["/" + rel]
    broken = good[:-30] if damage == "truncated" else good[:60] + bytes([good[60] ^ 0x55]) + good[61:]
    spot.add(rel, broken)
    with pytest.raises(ArchiveError, match="not a valid zip") as e:
        _dl(spot, tmp_path, syms=("BTCUSDT",), retries=1)
    assert spot.base + "/" + rel in str(e.value)
    assert not (tmp_path / rel).exists() and not list(tmp_path.rglob("*.part"))


# --- transient failures --------------------------------------------------------------------------


def test_truncated_body_is_retried_from_scratch_when_range_is_ignored(spot, tmp_path):
    rel = _rel()
    spot.program(rel, drop=1, ignore_range=True)
    res = _dl(spot, tmp_path, syms=("BTCUSDT",))
    assert res.downloaded == 3
    gets = spot.gets(rel)
    assert len(gets) == 2 and _range_start(gets[1]) > 0  # asked to resume, got the whole file (200)
    assert (tmp_path / rel).read_bytes() == spot.files["/" + rel]


def test_dropped_connection_resumes_with_range(spot, tmp_path):
    rel = _rel("ETHUSDT", DAYS[1])
    spot.program(rel, drop=2)
    _dl(spot, tmp_path, syms=("ETHUSDT",))
    gets = spot.gets(rel)
    assert len(gets) == 3 and gets[0][2] is None
    starts = [_range_start(g) for g in gets[1:]]
    assert 0 < starts[0] < starts[1] < len(spot.files["/" + rel])  # each attempt continued where the last stopped
    assert (tmp_path / rel).read_bytes() == spot.files["/" + rel]


def test_wrong_content_range_restarts_instead_of_splicing(spot, tmp_path, caplog):
    rel = _rel()
    spot.program(rel, drop=1, bad_range=True)
    _dl(spot, tmp_path, syms=("BTCUSDT",))
    gets = spot.gets(rel)
    assert len(gets) == 3 and _range_start(gets[1]) > 0 and gets[2][2] is None
    assert "bad Content-Range" in caplog.text
    assert "checksum mismatch" not in caplog.text  # the misplaced bytes were never appended
    assert (tmp_path / rel).read_bytes() == spot.files["/" + rel]


def test_stalled_body_times_out_and_resumes(spot, tmp_path):
    rel = _rel()
    spot.program(rel, stall=1)
    t0 = time.monotonic()
    _dl(spot, tmp_path, syms=("BTCUSDT",), timeout_s=1.0)
    assert time.monotonic() - t0 < spot.stall_s  # gave up on the stalled read, did not wait it out
    gets = spot.gets(rel)
    assert len(gets) == 2 and _range_start(gets[1]) > 0
    assert (tmp_path / rel).read_bytes() == spot.files["/" + rel]


def test_http_500_and_slow_headers_are_retried(spot, tmp_path):
    rel = _rel(day=DAYS[1])
    spot.program(rel, status500=2)
    spot.program(rel + ".CHECKSUM", slow=1)
    res = _dl(spot, tmp_path, syms=("BTCUSDT",), timeout_s=1.0)
    assert res.downloaded == 3
    assert len(spot.gets(rel, suffix="")) == 3
    assert len(spot.gets(rel + ".CHECKSUM", suffix="")) == 2  # the first timed out
    assert (tmp_path / rel).read_bytes() == spot.files["/" + rel]


def test_persistent_500_backs_off_exponentially_then_fails_clearly(spot, tmp_path, monkeypatch):
    rel = _rel()
    spot.program(rel + ".CHECKSUM", status500=True)
    sleeps = []
    monkeypatch.setattr(ba.time, "sleep", sleeps.append)
    with pytest.raises(ArchiveError, match=r"failed after 4 attempts.*HTTP 500") as e:
        _dl(spot, tmp_path, syms=("BTCUSDT",), retries=3)
    assert spot.base + "/" + rel + ".CHECKSUM" in str(e.value)
    assert sleeps == [0.01, 0.02, 0.04]
    assert not (tmp_path / rel).exists()


# --- granularity ---------------------------------------------------------------------------------


def test_auto_uses_monthly_files_for_whole_past_months(server, tmp_path):
    plan = [("daily", "2024-01-30"), ("daily", "2024-01-31"), ("monthly", "2024-02"),
            ("daily", "2024-03-01"), ("daily", "2024-03-02")]
    for g, p in plan:
        server.add(*_period_zip("spot-5m-2024", "spot", g, "BTCUSDT", "5m", p))
    res = download_klines(["BTCUSDT"], "5m", date(2024, 1, 30), date(2024, 3, 2), cache_dir=tmp_path,
                          base_url=server.base, today=date(2024, 3, 10), backoff_s=0.01)
    assert [p.relative_to(tmp_path).as_posix() for p in res.files["BTCUSDT"]] == \
        [archive_path("spot", g, "BTCUSDT", "5m", p) for g, p in plan]
    assert len(server.gets()) == 5
    ot = np.concatenate([_parse_zip(p)[0] for p in res.files["BTCUSDT"]])
    want_ot, _ = _rows("spot-5m-2024", "BTCUSDT", date(2024, 1, 30), date(2024, 3, 2))
    np.testing.assert_array_equal(ot, want_ot)  # 33 whole days, no gap, no overlap


def test_auto_falls_back_to_daily_files_when_the_month_is_not_published(server, tmp_path, capsys):
    days = [date(2024, 2, 1) + timedelta(days=i) for i in range(29)]
    for d in days:
        if d != date(2024, 2, 10):
            server.add(*_period_zip("spot-5m-2024", "spot", "daily", "BTCUSDT", "5m", d.isoformat()))
    res = download_klines(["BTCUSDT"], "5m", days[0], days[-1], cache_dir=tmp_path, base_url=server.base,
                          today=date(2024, 3, 1), backoff_s=0.01, progress=True)
    assert "30/30" in capsys.readouterr().err  # tqdm bar grew from 1 file (the month) to 1 + 29 days
    monthly = "/" + archive_path("spot", "monthly", "BTCUSDT", "5m", "2024-02")
    assert ("GET", monthly + ".CHECKSUM") in [r[:2] for r in server.requests]
    assert res.missing == {"BTCUSDT": ["2024-02-10"]}
    assert [p.name for p in res.files["BTCUSDT"]] == [f"BTCUSDT-5m-{d}.zip" for d in days if d.day != 10]


def test_plan_periods_and_urls():
    assert plan_periods(date(2024, 1, 30), date(2024, 3, 2), "auto", today=date(2024, 3, 10)) == [
        ("daily", "2024-01-30"), ("daily", "2024-01-31"), ("monthly", "2024-02"),
        ("daily", "2024-03-01"), ("daily", "2024-03-02")]
    # the current month is never monthly (not published yet)
    assert plan_periods(date(2024, 3, 1), date(2024, 3, 31), "auto", today=date(2024, 3, 31))[0] == \
        ("daily", "2024-03-01")
    assert plan_periods(date(2024, 1, 15), date(2024, 2, 3), "monthly") == [("monthly", "2024-01"), ("monthly", "2024-02")]
    assert len(plan_periods(date(2024, 1, 1), date(2024, 2, 29), "daily")) == 60
    assert archive_url("um", "monthly", "BTCUSDT", "1h", "2023-07") == \
        "https://data.binance.vision/data/futures/um/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2023-07.zip"
    assert archive_url("spot", "daily", "ETHUSDT", "5m", "2024-01-02", base_url="http://h/") == \
        "http://h/data/spot/daily/klines/ETHUSDT/5m/ETHUSDT-5m-2024-01-02.zip"
    with pytest.raises(DataError, match="before start"):
        plan_periods(date(2024, 2, 1), date(2024, 1, 1))


@pytest.mark.parametrize("kw", [{"symbols": ["../etc"]}, {"interval": "7m"}, {"market": "coin"},
                                {"granularity": "weekly"}, {"symbols": []}])
def test_bad_arguments_fail_before_any_request(spot, tmp_path, kw):
    args = {"symbols": ["BTCUSDT"], "interval": "5m", "market": "spot", "granularity": "daily", **kw}
    with pytest.raises(DataError):
        download_klines(args["symbols"], args["interval"], DAYS[0], DAYS[-1], market=args["market"],
                        granularity=args["granularity"], cache_dir=tmp_path, base_url=spot.base)
    assert spot.requests == [] and list(tmp_path.iterdir()) == []


# --- command line --------------------------------------------------------------------------------


def _cli(argv):
    parser = argparse.ArgumentParser()
    ba.register(parser.add_subparsers())
    args = parser.parse_args(["download", *argv])
    return args.func(args)


def test_cli_download_reports_downloaded_cached_missing(spot, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DOLPHIN_HOME", str(tmp_path / "home"))
    rel = "/" + _rel("ETHUSDT", DAYS[2])
    del spot.files[rel], spot.files[rel + ".CHECKSUM"]
    argv = ["--symbols", "btcusdt,ETHUSDT", "--interval", "5m", "--start", "2024-01-02", "--end", "2024-01-04",
            "--base-url", spot.base]
    assert _cli(argv) == 0
    out = capsys.readouterr().out
    assert "5 downloaded, 0 already cached" in out
    assert "missing in the archive: ETHUSDT 2024-01-04" in out
    cache = tmp_path / "home" / "binance-archive"  # the default cache under DOLPHIN_HOME
    assert (cache / _rel()).read_bytes() == spot.files["/" + _rel()]

    assert _cli([*argv, "--cache", str(cache)]) == 0
    assert "0 downloaded, 5 already cached" in capsys.readouterr().out

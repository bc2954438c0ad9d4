"""Order-book history for backtests: bookDepth download (loopback), reader, features on the bar grid, engine.

Every bookDepth file here is SYNTHETIC, written in Binance's format (header ``timestamp,percentage,depth,
notional``, ``YYYY-MM-DD HH:MM:SS`` UTC, signed percentage bands, cumulative depth/notional); no real
bookDepth data exists offline. The downloader tests serve them from the loopback archive server of
tests/unit/dolphin/adapters/test_binance_archive.py (every socket must go to 127.0.0.1)."""

import argparse
import hashlib
import io
import math
import zipfile
from datetime import date

import numpy as np
import pytest

from dolphin.book import features as F
from dolphin.book.history import (MAX_AGE_S, BookFlowProvider, book_for_panel, features_from_rows,
                                  load_book_history)
from dolphin.adapters import binance_archive as ba
from dolphin.adapters.binance_archive import ArchiveError, bookdepth_path, download_bookdepth
from dolphin.data.bookdepth import find_bookdepth_files, read_bookdepth_file, write_bookdepth_zip
from dolphin.data.contracts import DataError
from dolphin.engine.backtest import run_backtest
from dolphin.engine.config import BLUE
from dolphin.engine.risklayer import RiskLayers, run_risk_backtest
from tests.support.engine import handmade_scans, real_panel
from tests.support.archive import Archive, _handler, _loopback_only, _Server, server  # noqa: F401

DAY_MS = 86_400_000
BANDS = (-5, -4, -3, -2, -1, 1, 2, 3, 4, 5)


def _snapshot_rows(t_ms, bid1, ask1, mid=100.0, bands=BANDS):
    """Cumulative rows of one synthetic snapshot: notional at k % = k x (bid1 | ask1), depth = notional /
    (mid x (1 -+ k/200))."""
    out = []
    for k in bands:
        n = abs(k) * (bid1 if k < 0 else ask1)
        px = mid * (1 - abs(k) / 200) if k < 0 else mid * (1 + k / 200)
        out.append((t_ms, float(k), n / px, n))
    return out


def _write_day(folder, sym, day: str, snaps):
    """snaps: list of (t_ms, bid1, ask1[, mid]) -> one Binance-format zip in ``folder/sym``."""
    rows = [r for s in snaps for r in _snapshot_rows(*s)]
    t, p, d, n = (np.array(c) for c in zip(*rows))
    return write_bookdepth_zip(folder / sym / f"{sym}-bookDepth-{day}.zip", t, p, d, n)


def _csv_zip(name, text):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name.replace(".zip", ".csv"), text)
    return buf.getvalue()


# --- format / reader ------------------------------------------------------------------------------

SAMPLE = """timestamp,percentage,depth,notional
2025-05-19 11:07:31,-5,7885.27500000,647368074.36920000
2025-05-19 11:07:31,-4,7178.45300000,590768470.27090000
2025-05-19 11:07:31,-3,5443.14900000,450287742.99870000
2025-05-19 11:07:31,-2,3989.69900000,331452387.75030000
2025-05-19 11:07:31,-1,2294.32400000,191369991.21780000
2025-05-19 11:07:31,1,2097.41000000,176607765.20950000
2025-05-19 11:07:31,2,3485.14100000,294629128.47080000
2025-05-19 11:07:31,3,4813.86500000,408742768.20550000
2025-05-19 11:07:31,4,5699.71200000,485628858.29740000
2025-05-19 11:07:31,5,6491.51500000,555012399.28440000
"""


def test_synthetic_file_in_binance_layout_reads_exactly(tmp_path):
    """The layout quoted in binance-public-data issue #431 (values typed in here, a synthetic file)."""
    f = tmp_path / "BTCUSDT-bookDepth-2025-05-19.zip"
    f.write_bytes(_csv_zip(f.name, SAMPLE))
    r = read_bookdepth_file(f)
    assert r.symbol == "BTCUSDT" and len(r) == 10 and r.n_snapshots == 1
    assert (r.ts == 1747652851000).all()  # 2025-05-19 11:07:31 UTC
    assert r.percentage.tolist() == [-5, -4, -3, -2, -1, 1, 2, 3, 4, 5]
    assert r.depth[4] == 2294.324 and r.notional[5] == 176607765.2095
    band = F.band_from_cumulative([(-1, r.notional[4]), (1, r.notional[5])])
    assert F.imbalance(band) == pytest.approx((191369991.2178 - 176607765.2095) / (191369991.2178 + 176607765.2095))


def test_headerless_csv_and_02_bands_and_epoch_ms(tmp_path):
    text = ("1747652851000,-0.2,1.5,150\n1747652851000,0.2,2.5,250\n"
            "2025-05-19 11:08:01,-1,3,300\n2025-05-19 11:08:01,1,4,400\n")
    f = tmp_path / "ETHUSDT-bookDepth-2025-05-19.csv"
    f.write_text(text)
    r = read_bookdepth_file(f)
    assert r.ts.tolist() == [1747652851000] * 2 + [1747652881000] * 2
    assert r.percentage.tolist() == [-0.2, 0.2, -1, 1]


BAD_ROWS = [
    ("2025-05-19 11:07:31,-1,abc,1", "depth 'abc' is not a number"),
    ("2025-05-19 11:07:31,-1,1", "expected 4 fields"),
    ("2025-05-19 11:07:31,-1,1,2,3", "expected 4 fields"),
    ("2025-05-19 11:7:31,-1,1,1", "is not 'YYYY-MM-DD HH:MM:SS'"),
    ("2025-02-30 11:07:31,-1,1,1", "not a valid date/time"),
    ("2025-05-19 11:07:31,0,1,1", "percentage 0"),
    ("2025-05-19 11:07:31,-1,-2,1", "negative depth/notional"),
    ("2025-05-19 11:07:31,-1,1,inf", "notional 'inf' is not finite"),
]


@pytest.mark.parametrize("bad,why", BAD_ROWS)
def test_malformed_row_names_file_and_line(tmp_path, bad, why):
    lines = SAMPLE.splitlines()
    lines[7] = bad  # line 8 of the file (line 1 is the header)
    f = tmp_path / "BTCUSDT-bookDepth-2025-05-19.zip"
    f.write_bytes(_csv_zip(f.name, "\n".join(lines) + "\n"))
    with pytest.raises(DataError) as e:
        read_bookdepth_file(f)
    msg = str(e.value)
    assert str(f) in msg and "line 8" in msg and why in msg


def test_damaged_zip_wrong_header_and_bad_names_are_errors(tmp_path):
    f = tmp_path / "BTCUSDT-bookDepth-2025-05-19.zip"
    good = _csv_zip(f.name, SAMPLE)
    f.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="BTCUSDT-bookDepth-2025-05-19.zip: cannot read the zip"):
        read_bookdepth_file(f)
    f.write_bytes(_csv_zip(f.name, SAMPLE.replace("notional", "quote", 1)))
    with pytest.raises(DataError, match="line 1: header"):
        read_bookdepth_file(f)
    g = tmp_path / "BTCUSDT-bookDepth-2025-5-19.zip"
    g.write_bytes(good)
    with pytest.raises(DataError, match="not a bookDepth file name"):
        read_bookdepth_file(g)


def test_repeated_rows_later_wins_and_counted(tmp_path):
    text = SAMPLE + "2025-05-19 11:07:31,-1,9,900\n"
    f = tmp_path / "BTCUSDT-bookDepth-2025-05-19.csv"
    f.write_text(text)
    r = read_bookdepth_file(f)
    assert len(r) == 10 and r.duplicates == 1 and r.notional[r.percentage == -1][0] == 900


# --- downloader (loopback) --------------------------------------------------------------------------

BD_DAYS = ["2024-01-02", "2024-01-03"]


@pytest.fixture
def bd_archive(server):  # noqa: F811
    for sym in ("BTCUSDT", "ETHUSDT"):
        for day in BD_DAYS:
            t0 = int(np.datetime64(day, "ms").astype(np.int64))
            rows = [r for i in range(40) for r in _snapshot_rows(t0 + i * 30_000, 1e6 + i, 9e5)]
            text = "timestamp,percentage,depth,notional\n" + "".join(
                f"{np.datetime_as_string(np.datetime64(t // 1000, 's')).replace('T', ' ')},{int(p)},{d:.8f},{n:.8f}\n"
                for t, p, d, n in rows)
            rel = bookdepth_path(sym, day)
            server.add(rel, _csv_zip(rel.rsplit("/", 1)[1], text))
    return server


def _dl(arch, tmp_path, **kw):
    kw.setdefault("retries", 2)
    return download_bookdepth(["BTCUSDT", "ETHUSDT"], date(2024, 1, 2), date(2024, 1, 4), cache_dir=tmp_path,
                              base_url=arch.base, backoff_s=0.01, timeout_s=5.0, **kw)


def test_synthetic_bookdepth_download_verified_cached_and_missing_day(bd_archive, tmp_path):
    res = _dl(bd_archive, tmp_path)
    assert res.downloaded == 4 and res.cached == 0
    assert res.missing == {"BTCUSDT": ["2024-01-04"], "ETHUSDT": ["2024-01-04"]}
    for p in res.all_files():
        rel = "/" + p.relative_to(tmp_path).as_posix()
        assert rel.startswith("/data/futures/um/daily/bookDepth/")
        assert p.read_bytes() == bd_archive.files[rel]
        assert hashlib.sha256(p.read_bytes()).hexdigest() == bd_archive.files[rel + ".CHECKSUM"].split()[0].decode()
        assert read_bookdepth_file(p).n_snapshots == 40
    assert not list(tmp_path.rglob("*.part"))
    bd_archive.requests.clear()
    again = _dl(bd_archive, tmp_path)
    assert again.cached == 4 and again.downloaded == 0 and bd_archive.gets() == []
    # the download cache is a valid --book folder
    assert sorted(find_bookdepth_files(tmp_path)) == ["BTCUSDT", "ETHUSDT"]


def test_synthetic_bookdepth_wrong_checksum_stores_nothing(bd_archive, tmp_path):
    rel = bookdepth_path("BTCUSDT", BD_DAYS[0])
    bd_archive.add(rel, bd_archive.files["/" + rel], checksum="0" * 64)
    with pytest.raises(ArchiveError, match="checksum mismatch.*expected 0{64}"):
        _dl(bd_archive, tmp_path, retries=1)
    assert not (tmp_path / rel).exists() and not list(tmp_path.rglob("*.part"))


def test_synthetic_bookdepth_dropped_connection_resumes(bd_archive, tmp_path):
    rel = bookdepth_path("ETHUSDT", BD_DAYS[1])
    bd_archive.program(rel, drop=1)
    res = _dl(bd_archive, tmp_path)
    assert res.downloaded == 4
    assert (tmp_path / rel).read_bytes() == bd_archive.files["/" + rel]
    ranged = [r for r in bd_archive.gets(rel) if r[2]]
    assert len(ranged) == 1 and int(ranged[0][2].split("=")[1].rstrip("-")) > 0


def _cli(argv):
    parser = argparse.ArgumentParser()
    ba.register(parser.add_subparsers())
    args = parser.parse_args(["download", *argv])
    return args.func(args)


def test_cli_download_kind_bookdepth(bd_archive, tmp_path, capsys):
    argv = ["--kind", "bookDepth", "--symbols", "btcusdt", "--start", "2024-01-02", "--end", "2024-01-03",
            "--base-url", bd_archive.base, "--cache", str(tmp_path)]
    assert _cli(argv) == 0
    out = capsys.readouterr().out
    assert "2 downloaded, 0 already cached" in out and "BTCUSDT-bookDepth-2024-01-02.zip" in out
    with pytest.raises(DataError, match="USD-M futures only"):
        _cli([*argv, "--market", "spot"])
    with pytest.raises(DataError, match="daily bookDepth files only"):
        _cli([*argv, "--granularity", "monthly"])
    with pytest.raises(DataError, match="YYYY-MM-DD"):
        bookdepth_path("BTCUSDT", "2024-01")


# --- features on the bar grid -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def panel():
    return real_panel(("BTCUSDT", "ETHUSDT", "SOLUSDT"), start=0, n=600)  # 2024-01-01 00:00 .. 02:00 next day


def _synthetic_set(folder, panel, every_s=30, gap=None, lag_s=0):
    """Snapshots every ``every_s`` seconds over the panel's span, bid/ask notional from a deterministic
    function of the snapshot's own index (not of the candles); ``gap`` = (t0, t1): none in [t0, t1)."""
    t0, t1 = int(panel.open_time[0]) - 2 * 3_600_000, int(panel.close_time[-1])
    ts = np.arange(t0 + lag_s * 1000, t1 + 1, every_s * 1000)
    if gap is not None:
        ts = ts[(ts < gap[0]) | (ts >= gap[1])]
    for j, sym in enumerate(panel.symbols):
        i = np.arange(ts.size)
        bid = 2e5 * (1 + j) * (1.5 + np.sin(i / 17.0 + j))
        ask = 2e5 * (1 + j) * (1.5 + np.cos(i / 11.0 - j))
        mid = 100.0 * (1 + 0.01 * np.sin(i / 50.0))
        for d in np.unique(ts // DAY_MS):
            m = (ts // DAY_MS) == d
            _write_day(folder, sym, str(np.datetime64(int(d) * DAY_MS, "ms"))[:10],
                       list(zip(ts[m].tolist(), bid[m], ask[m], mid[m])))
    return ts


def test_features_are_the_formula_functions_step_by_step(tmp_path):
    snaps = [(1_700_000_000_000 + 30_000 * i, 1e6 * (1 + 0.1 * i), 8e5, 100 + i) for i in range(6)]
    f = _write_day(tmp_path, "BTCUSDT", "2023-11-14", snaps)
    fs = features_from_rows(read_bookdepth_file(f))
    state = F.BookState()
    for k, (t, b, a, mid) in enumerate(snaps):
        rows = _snapshot_rows(t, b, a, mid)
        band = F.band_from_cumulative([(r[1], r[3]) for r in rows])
        m = F.mid_from_cumulative([(r[1], r[2], r[3]) for r in rows])
        feats, state = F.step(state, band, m, t)
        assert fs.ts[k] == t
        for name in ("imbalance", "depth_quality", "fill_prob", "agreement"):
            assert getattr(fs, name)[k] == pytest.approx(getattr(feats, name), rel=1e-12, abs=1e-15), (k, name)


def test_snapshot_without_the_band_is_skipped_and_named(tmp_path):
    rows = _snapshot_rows(1_700_000_000_000, 1e6, 1e6) + [
        r for r in _snapshot_rows(1_700_000_030_000, 1e6, 1e6) if abs(r[1]) != 1]
    t, p, d, n = (np.array(c) for c in zip(*rows))
    f = write_bookdepth_zip(tmp_path / "BTCUSDT-bookDepth-2023-11-14.zip", t, p, d, n)
    fs = features_from_rows(read_bookdepth_file(f))
    assert len(fs) == 1 and fs.skipped == 1 and "2023-11-14 22:13:50" in fs.skipped_examples[0]
    assert "no +/-1 % band" in fs.skipped_examples[0]


def test_no_look_ahead_truncated_files_give_the_same_past(tmp_path, panel):
    """Features of every bar closing at or before a cut are the same whether the files end at the cut or go on;
    a snapshot stamped exactly at a bar close is used by that bar, one a second later is not."""
    full, cut_dir = tmp_path / "full", tmp_path / "cut"
    _synthetic_set(full, panel, every_s=30, lag_s=0)
    cut = int(panel.close_time[300])
    for f in full.rglob("*.zip"):
        r = read_bookdepth_file(f)
        keep = r.ts <= cut
        if keep.any():
            write_bookdepth_zip(cut_dir / f.parent.name / f.name, r.ts[keep], r.percentage[keep], r.depth[keep],
                                r.notional[keep])
    g_full = load_book_history(full, panel.symbols, cache_dir=tmp_path / "c1").on_grid(
        panel.symbols, panel.open_time, panel.close_time)
    g_cut = load_book_history(cut_dir, panel.symbols, cache_dir=tmp_path / "c2").on_grid(
        panel.symbols, panel.open_time, panel.close_time)
    upto = panel.close_time <= cut
    assert upto.sum() == 301
    for k in ("imbalance", "depth_quality", "fill_prob", "agreement", "age_s"):
        a, b = getattr(g_full, k)[upto], getattr(g_cut, k)[upto]
        assert np.array_equal(a, b, equal_nan=True), k
    assert (g_full.age_s[upto] == 0).all()  # snapshots every 30 s, one exactly at each 5-min close
    assert not np.array_equal(g_full.imbalance[~upto], g_cut.imbalance[~upto], equal_nan=True)
    # shifted by one second: each close uses the snapshot 29 s before it, never the one 1 s after
    late = tmp_path / "late"
    _synthetic_set(late, panel, every_s=30, lag_s=1)
    g_late = load_book_history(late, panel.symbols, cache_dir=tmp_path / "c3").on_grid(
        panel.symbols, panel.open_time, panel.close_time)
    assert (g_late.age_s[2 * 12:] == 29.0).all()


def test_gap_is_stale_neutral_flow_and_cat3_absent(tmp_path, panel):
    gap = (int(panel.close_time[200]) - 60_000, int(panel.close_time[260]))
    _synthetic_set(tmp_path / "b", panel, gap=gap)
    g = load_book_history(tmp_path / "b", panel.symbols, cache_dir=tmp_path / "c").on_grid(
        panel.symbols, panel.open_time, panel.close_time)
    stale = np.flatnonzero(~g.fresh[:, 0])
    # the last snapshot before the gap is 90 s before close 200 (gap starts 60 s before it, 30 s cadence)
    assert stale.min() == 200 and stale.max() == 259
    assert g.age_s[200, 0] == 90.0 and g.age_s[259, 0] > MAX_AGE_S and g.age_s[260, 0] == 0.0
    fl = BookFlowProvider(g).features(panel.open_time, panel.symbols)
    assert (fl.imbalance[200:260] == 0).all() and (fl.fill_prob[200:260] == 0.5).all()
    assert np.array_equal(fl.imbalance[100], np.nan_to_num(g.imbalance[100])) and not fl.stale_safe
    assert g.cat3_inputs(230) == (None, None, None)
    dq, fp, age = g.cat3_inputs(100)
    # medians over the assets (3 fresh books here), not the thinnest one
    assert dq == np.median(g.depth_quality[100]) and fp == np.median(g.fill_prob[100]) and age == 0.0
    assert dq > g.depth_quality[100].min()
    # a non-tradable asset does not count
    assert g.cat3_inputs(230, np.array([False, False, False])) == (None, None, None)
    with pytest.raises(ValueError, match="other bars or symbols"):
        BookFlowProvider(g).features(panel.open_time[1:], panel.symbols)


def test_malformed_file_in_a_set_names_file_and_line_and_caches_nothing(tmp_path, panel):
    _synthetic_set(tmp_path / "b", panel)
    f = sorted((tmp_path / "b" / "ETHUSDT").glob("*.zip"))[-1]
    lines = zipfile.ZipFile(f).read(f.name.replace(".zip", ".csv")).decode().splitlines()
    lines[42] = lines[42].rsplit(",", 1)[0] + ",12x"
    f.write_bytes(_csv_zip(f.name, "\n".join(lines) + "\n"))
    with pytest.raises(DataError, match=rf"{f.name}: line 43: notional '12x' is not a number"):
        load_book_history(tmp_path / "b", panel.symbols, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())


def test_cache_is_reused_and_invalidated_by_a_changed_file(tmp_path, panel):
    _synthetic_set(tmp_path / "b", panel)
    h1 = load_book_history(tmp_path / "b", panel.symbols, cache_dir=tmp_path / "c")
    h2 = load_book_history(tmp_path / "b", panel.symbols, cache_dir=tmp_path / "c")
    assert not h1.cache_hit and h2.cache_hit
    for s in panel.symbols:
        assert np.array_equal(h1.series[s].ts, h2.series[s].ts)
        assert np.array_equal(h1.series[s].imbalance, h2.series[s].imbalance)
    f = sorted((tmp_path / "b" / "BTCUSDT").glob("*.zip"))[0]
    r = read_bookdepth_file(f)
    write_bookdepth_zip(f, r.ts, r.percentage, r.depth, r.notional * 2)
    h3 = load_book_history(tmp_path / "b", panel.symbols, cache_dir=tmp_path / "c")
    assert not h3.cache_hit


def test_window_not_covered_is_an_error_and_partial_coverage_is_reported(tmp_path, panel):
    other = tmp_path / "other"
    _write_day(other, "BTCUSDT", "2023-06-01", [(int(np.datetime64("2023-06-01", "ms").astype(np.int64)), 1e6, 1e6)])
    with pytest.raises(DataError, match="no bookDepth file"):
        book_for_panel(other, panel, cache_dir=tmp_path / "c")
    part = tmp_path / "part"
    _synthetic_set(part, panel)
    for f in (part / "SOLUSDT").glob("*.zip"):
        f.unlink()
    (part / "SYNTHETIC.md").write_text("# SYNTHETIC test set\n")
    grid, notes = book_for_panel(part, panel, cache_dir=tmp_path / "c")
    text = "\n".join(notes)
    assert "SYNTHETIC book history (SYNTHETIC test set)" in text
    assert "coverage PARTIAL" in text and "SOLUSDT 0.0 %" in text and "no file at all for SOLUSDT" in text
    # SOLUSDT has no book: 2 of 3 fresh is a majority (the medians of those two); 1 of 2 or 0 of 1 is stale
    dq, fp, _ = grid.cat3_inputs(100)
    assert dq == np.median(grid.depth_quality[100, :2]) and fp == np.median(grid.fill_prob[100, :2])
    assert grid.cat3_inputs(100, np.array([False, True, True])) == (None, None, None)  # 1 of 2
    assert grid.cat3_inputs(100, np.array([False, False, True])) == (None, None, None)  # 0 of 1
    assert grid.cat3_inputs(100, np.array([True, True, False]))[0] is not None


# --- the engine ----------------------------------------------------------------------------------------


def _signals(panel):
    T = panel.n_bars
    vd = np.zeros(T)
    vd[np.arange(40, T, 30)] = -0.09
    return handmade_scans(panel, vd)


def test_flow_from_the_book_changes_the_ranking_and_neutral_is_todays_behaviour(tmp_path, panel):
    """Imbalance enters the ranking as w_flow * side * imbalance: with a strong book tilt the SHORT goes to the
    ask-heavy asset; the neutral provider is exactly the run without any flow argument."""
    from dataclasses import replace

    from dolphin.engine.inputs import NeutralFlowProvider

    scans = _signals(panel)
    cfg = replace(BLUE, vol_gate=False, w_flow=50.0)
    base = run_backtest(panel, scans, cfg)
    neutral = run_backtest(panel, scans, cfg, flow=NeutralFlowProvider())
    assert base.trades.equals(neutral.trades) and np.array_equal(base.decision_asset, neutral.decision_asset)
    assert "order-book/flow: neutral (no order-book data)" in base.notes
    # SOLUSDT's book is strongly ask-heavy (imbalance -0.8), the others balanced
    t0, t1 = int(panel.open_time[0]) - 3_600_000, int(panel.close_time[-1])
    ts = np.arange(t0, t1 + 1, 30_000)
    book = tmp_path / "tilt"
    for sym in panel.symbols:
        bid, ask = (1e5, 9e5) if sym == "SOLUSDT" else (5e5, 5e5)
        for d in np.unique(ts // DAY_MS):
            m = ts[(ts // DAY_MS) == d]
            _write_day(book, sym, str(np.datetime64(int(d) * DAY_MS, "ms"))[:10], [(t, bid, ask) for t in m])
    grid = load_book_history(book, panel.symbols, cache_dir=tmp_path / "c").on_grid(
        panel.symbols, panel.open_time, panel.close_time)
    with_book = run_backtest(panel, scans, cfg, flow=BookFlowProvider(grid))
    entries = with_book.decision_asset[np.isin(with_book.decision, (1, 2))]
    assert entries.size >= 3 and (entries == panel.symbols.index("SOLUSDT")).all()
    assert any("from " + str(book) in n for n in with_book.notes)


def test_cat3_from_the_book_in_the_risk_layer_and_stale_without(tmp_path, panel):
    scans = _signals(panel)
    cfg = BLUE
    layers = RiskLayers(survival=True, check_every_bars=2)
    no_dvol = (np.zeros(0, np.int64), np.zeros(0))
    plain = run_risk_backtest(panel, scans, cfg, layers=layers, exf=None, dvol=no_dvol)
    assert (plain.cats[plain.check_bars[0] + 1:, 2] == 0.5).all()
    gap = (int(panel.close_time[300]), int(panel.close_time[360]))
    _synthetic_set(tmp_path / "b", panel, gap=gap)
    grid = load_book_history(tmp_path / "b", panel.symbols, cache_dir=tmp_path / "c").on_grid(
        panel.symbols, panel.open_time, panel.close_time)
    rr = run_risk_backtest(panel, scans, cfg, layers=layers, exf=None, dvol=no_dvol, book=grid)
    cfgs = F.DEFAULT_PARAMS
    assert cfgs.band_pct == 1.0
    checks = rr.check_bars[rr.check_bars < panel.n_bars - 1]
    seen_fresh = seen_stale = 0
    for c in checks:
        dq, fp, age = grid.cat3_inputs(int(c))
        want = 0.5 if dq is None else min(1.0, max(0.3, 0.3 + 0.7 * min(dq, fp)))
        assert rr.cats[c + 1, 2] == pytest.approx(want, abs=1e-12), c
        seen_fresh += dq is not None
        seen_stale += dq is None
    assert seen_fresh > 100 and seen_stale >= 25
    assert "Cat3 from" in rr.description and "median depth quality" in rr.description
    assert not math.isclose(float(rr.cats[checks[5] + 1, 2]), 0.5)

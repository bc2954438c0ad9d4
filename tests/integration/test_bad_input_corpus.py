"""Bad-input corpus (issue 13): every case builds its broken input inside the test from REAL candles of
../shared/data (3 spot-5m-2024 assets x 2 days), runs it through the code a user would run, and asserts the
exact outcome -- a clear error naming the input, or reported and handled, or refused -- and that no stored
state changed (the ledger, warehouse, feature store and scan files of a populated data home, byte for byte,
and the input files themselves).

The corpus list with outcomes is in the module-level ``CORPUS`` names below and in notes/issue-13.md.
"""

import hashlib
import json
import os
import sqlite3

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dolphin.cli import main
from dolphin.data import AlignRules, DataError, load_panel
from dolphin.engine.backtest import run_backtest
from dolphin.engine.config import BLUE, ConfigError, load_config
from dolphin.engine.configcheck import defaults_are_valid
from dolphin.engine.config import EngineConfig
from dolphin.scanner.core import scan
from dolphin.timeutil import parse_time
from tests.support.data import BAR_5M, COLS, real_rows, write_parquet
from tests.support.engine import handmade_scans

SYMS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
N_BARS = 576  # 2 UTC days of 5m bars from 2024-01-01
BTC, ETH, SOL = 0, 1, 2


# ----------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def real():
    return {s: real_rows(s, N_BARS) for s in SYMS}


def _copy(real):
    return {s: {k: v.copy() for k, v in r.items()} for s, r in real.items()}


def _write_set(folder, rows_by_sym):
    folder.mkdir(parents=True, exist_ok=True)
    for s, r in rows_by_sym.items():
        write_parquet(folder / f"{s}.parquet", r)
    return folder


def _drop_row(rows, i):
    return {k: np.delete(v, i) for k, v in rows.items()}


def _tree_digest(root):
    """{relative path: sha256} of every file under ``root`` -- but SQLite's shared-memory index (-shm) and an
    empty write-ahead log, which a read-only reader leaves behind, hold no data."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            if f.endswith("-shm") or (f.endswith("-wal") and os.path.getsize(p) == 0):
                continue
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def populated_home(tmp_path_factory):
    """A populated data home, built once -- ledger (2 BLUE days, the second in 2 versions), warehouse rebuilt
    from it, embedded feature store with a record, one scan file -- copied for each case."""
    from dolphin.engine.state import EngineState
    from dolphin.ledger import CapitalLedger, DayRecord
    from dolphin.store import FEATURES, SCAN_LATEST, Record
    from dolphin.adapters.sqlite_store import EmbeddedStore
    from dolphin.adapters.duckdb_warehouse import rebuild

    home = tmp_path_factory.mktemp("template") / "home"
    home.mkdir()
    book = CapitalLedger(home / "ledger" / "ledger.sqlite")
    s0 = EngineState.fresh(10_000.0).to_dict()
    s1 = EngineState(capital=10_250.0, as_of_ms=parse_time("2024-01-02") - 1).to_dict()
    book.record_day("BLUE", "2024-01-01", DayRecord(10_000.0, 10_250.0, 10_250.0, s0, s1, [{"pnl": 250.0}], 288),
                    start_day="2024-01-01")
    s2 = EngineState(capital=10_100.0, as_of_ms=parse_time("2024-01-03") - 1).to_dict()
    book.record_day("BLUE", "2024-01-02", DayRecord(10_250.0, 10_100.0, 10_100.0, s1, s2, [], 288),
                    start_day="2024-01-01")
    s2b = EngineState(capital=10_150.0, as_of_ms=parse_time("2024-01-03") - 1).to_dict()
    book.record_day("BLUE", "2024-01-02", DayRecord(10_250.0, 10_150.0, 10_150.0, s1, s2b, [], 288),
                    start_day="2024-01-01", rebase=True)
    rebuild(home / "warehouse.duckdb", home / "ledger" / "ledger.sqlite")
    store = EmbeddedStore(home / "store" / "features.sqlite")
    store.put(FEATURES, SCAN_LATEST, Record({"vel_div": -0.01, "asset_count": 3}, "2024-01-02T23:55:00Z"))
    store.close()
    (home / "scans" / "2024-01-02").mkdir(parents=True)
    (home / "scans" / "2024-01-02" / "scan_1704239700000.arrow").write_bytes(b"a scan file")
    return home, _tree_digest(home)


@pytest.fixture
def state(tmp_path, monkeypatch, populated_home):
    """This case's copy of the populated data home, and a guard asserting none of it changed."""
    import shutil

    template, before = populated_home
    home = tmp_path / "home"
    shutil.copytree(template, home)
    monkeypatch.setenv("DOLPHIN_HOME", str(home))
    for k in ("DOLPHIN_FEATURE_STORE", "DOLPHIN_HZ_MEMBERS", "DOLPHIN_HZ_CLUSTER", "DOLPHIN_WAREHOUSE"):
        monkeypatch.delenv(k, raising=False)
    assert _tree_digest(home) == before

    class Guard:
        root = home

        def unchanged(self, *extra_dirs, allow=()):
            after = _tree_digest(home)
            for a in allow:
                after.pop(a, None)
            assert after == before, "stored state changed"
            for d, digest in extra_dirs:
                assert _tree_digest(d) == digest, f"input files under {d} changed"

    return Guard()


def _cli(capsys, *argv):
    """(exit code, stdout, stderr) of `dolphin <argv>` in this process; argparse errors exit 2."""
    try:
        rc = main(list(argv))
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out
    return rc, out, err


def _one(panel, rule, symbol=None):
    found = [i for i in panel.issues if i.rule == rule and (symbol is None or i.symbol == symbol)]
    assert len(found) == 1, (rule, symbol, [i.describe() for i in panel.issues])
    return found[0]


def _same_panel(a, b):
    assert a.symbols == b.symbols
    np.testing.assert_array_equal(a.open_time, b.open_time)
    for k in ("open", "high", "low", "close", "volume", "filled", "excluded"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k), err_msg=k)


# --------------------------------------------------------------------------------- market data: bad rows
# Each case: (id, symbol, row, mutation, expected rule). The bar must come out as missing (filled from the
# previous close), exactly as if the row had not been in the file: the engine sees the same panel.

def _all_prices(x):
    def f(r, i):
        for c in ("open", "high", "low", "close"):
            r[c][i] = x if not callable(x) else x(r[c][i])
    return f


def _set(**vals):
    def f(r, i):
        for c, v in vals.items():
            r[c][i] = v(r, i) if callable(v) else v
    return f


ROW_CASES = [
    ("all_prices_1e300", "BTCUSDT", 200, _all_prices(1e300), "bad_tick"),
    ("close_only_1e300", "BTCUSDT", 200, _set(close=1e300), "ohlc_inconsistent"),
    ("high_wick_1e300", "BTCUSDT", 201, _set(high=1e300), "bad_tick"),
    ("low_wick_1e-300", "ETHUSDT", 150, _set(low=1e-300), "bad_tick"),
    ("spike_x50_reverts", "SOLUSDT", 333, _all_prices(lambda v: v * 50), "bad_tick"),
    ("spike_div50_reverts", "SOLUSDT", 334, _all_prices(lambda v: v / 50), "bad_tick"),
    ("high_below_low", "ETHUSDT", 77, _set(high=lambda r, i: r["low"][i] * 0.99), "ohlc_inconsistent"),
    ("open_above_high", "ETHUSDT", 78, _set(open=lambda r, i: r["high"][i] * 1.01), "ohlc_inconsistent"),
    ("close_below_low", "BTCUSDT", 400, _set(close=lambda r, i: r["low"][i] * 0.98), "ohlc_inconsistent"),
    ("nan_close", "BTCUSDT", 123, _set(close=np.nan), "bad_price"),
    ("inf_high", "SOLUSDT", 99, _set(high=np.inf), "bad_price"),
    ("zero_open", "ETHUSDT", 250, _set(open=0.0), "bad_price"),
    ("negative_low", "SOLUSDT", 260, _set(low=-1.0), "bad_price"),
    ("negative_volume", "BTCUSDT", 270, _set(volume=-5.0), "bad_price"),
]


@pytest.mark.parametrize("case,sym,i,mutate,rule", ROW_CASES, ids=[c[0] for c in ROW_CASES])
def test_bad_row_reported_and_same_as_missing(real, tmp_path, state, case, sym, i, mutate, rule):
    bad = _copy(real)
    mutate(bad[sym], i)
    folder = _write_set(tmp_path / "bad", bad)
    digest = _tree_digest(folder)
    p = load_panel(folder)
    issue = _one(p, rule, sym)
    assert issue.count == 1 and issue.timestamps == (int(real[sym]["open_time"][i]),)
    assert issue.source == str(folder / f"{sym}.parquet")
    j = p.symbols.index(sym)
    assert p.filled[i, j] and p.close[i, j] == real[sym]["close"][i - 1]
    ref = _copy(real)
    ref[sym] = _drop_row(ref[sym], i)
    _same_panel(p, load_panel(_write_set(tmp_path / "ref", ref)))
    state.unchanged((folder, digest))


def test_two_bar_spike_both_bars_dropped(real, tmp_path, state):
    bad = _copy(real)
    for i in (300, 301):
        _all_prices(lambda v: v * 40)(bad["ETHUSDT"], i)
    folder = _write_set(tmp_path / "bad", bad)
    p = load_panel(folder)
    issue = _one(p, "bad_tick", "ETHUSDT")
    assert issue.count == 2 and issue.timestamps == tuple(int(real["ETHUSDT"]["open_time"][i]) for i in (300, 301))
    assert p.filled[300:302, ETH].all() and p.close.max() < 1e5
    state.unchanged()


# --------------------------------------------------------------------------------- persistent jumps


@pytest.mark.parametrize("factor", [1000.0, 1e-3], ids=["redenomination_x1000", "redenomination_div1000"])
def test_redenomination_return_missing_and_bar_excluded(real, tmp_path, state, factor):
    bad = _copy(real)
    for c in ("open", "high", "low", "close"):
        bad["ETHUSDT"][c][300:] *= factor
    folder = _write_set(tmp_path / "bad", bad)
    p = load_panel(folder)
    issue = _one(p, "price_jump", "ETHUSDT")
    assert issue.timestamps == (int(real["ETHUSDT"]["open_time"][300]),)
    assert "treated as missing" in issue.action and issue.source == str(folder / "ETHUSDT.parquet")
    r_got = np.diff(np.log(p.close[:, ETH]))
    r_real = np.diff(np.log(real["ETHUSDT"]["close"]))
    assert abs(r_got[299]) < 1e-12  # the return across the jump (bar 299 -> 300): zero up to rounding
    np.testing.assert_allclose(np.delete(r_got, 299), np.delete(r_real, 299), rtol=0, atol=1e-9)
    assert np.flatnonzero(p.excluded[:, ETH]).tolist() == [300]
    assert not p.excluded[:, [BTC, SOL]].any() and not p.filled.any()
    state.unchanged()


# --------------------------------------------------------------------------------- impossible times


@pytest.mark.parametrize("when,rule", [("2100-01-01", "bad_time"), ("1990-06-01", "bad_time"),
                                       ("2020-06-01", "stray_rows")],
                         ids=["row_dated_2100", "row_dated_1990", "stray_row_2020"])
def test_far_row_dropped_window_unchanged(real, tmp_path, state, when, rule):
    bad = _copy(real)
    extra = {k: v[-1:].copy() for k, v in bad["BTCUSDT"].items()}
    extra["open_time"][:] = parse_time(when)
    parts = [extra, bad["BTCUSDT"]] if parse_time(when) < bad["BTCUSDT"]["open_time"][0] else [bad["BTCUSDT"], extra]
    bad["BTCUSDT"] = {k: np.concatenate([x[k] for x in parts]) for k in extra}  # in time order
    folder = _write_set(tmp_path / "bad", bad)
    p = load_panel(folder)
    issue = _one(p, rule, "BTCUSDT")
    assert issue.count == 1 and issue.timestamps == (parse_time(when),)
    assert issue.source == str(folder / "BTCUSDT.parquet")
    assert len(p.issues) == 1  # nothing else: no asset dropped, no gap
    _same_panel(p, load_panel(_write_set(tmp_path / "ref", real)))
    state.unchanged()


def test_out_of_order_and_off_grid_rows(real, tmp_path, state):
    bad = _copy(real)
    r = bad["SOLUSDT"]
    order = np.arange(N_BARS)
    order[[10, 11]] = [11, 10]
    bad["SOLUSDT"] = {k: v[order] for k, v in r.items()}
    extra = {k: v[5:6].copy() for k, v in real["BTCUSDT"].items()}
    extra["open_time"] += 1  # one millisecond off the 5m grid
    bad["BTCUSDT"] = {k: np.concatenate([bad["BTCUSDT"][k], extra[k]]) for k in extra}
    folder = _write_set(tmp_path / "bad", bad)
    p = load_panel(folder)
    assert _one(p, "out_of_order", "SOLUSDT").count == 1
    assert _one(p, "off_grid", "BTCUSDT").timestamps == (int(real["BTCUSDT"]["open_time"][5]) + 1,)
    _same_panel(p, load_panel(_write_set(tmp_path / "ref", real)))
    state.unchanged()


def test_conflicting_duplicate_last_row_wins(real, tmp_path, state):
    bad = _copy(real)
    dup = {k: v[40:41].copy() for k, v in real["ETHUSDT"].items()}
    dup["volume"] += 3.0
    bad["ETHUSDT"] = {k: np.concatenate([bad["ETHUSDT"][k][:41], dup[k], bad["ETHUSDT"][k][41:]]) for k in dup}
    p = load_panel(_write_set(tmp_path / "bad", bad))
    assert _one(p, "duplicate_conflict", "ETHUSDT").timestamps == (int(real["ETHUSDT"]["open_time"][40]),)
    assert p.volume[40, ETH] == dup["volume"][0]
    state.unchanged()


# --------------------------------------------------------------------------------- outages


def _cfg():
    return BLUE.with_(entry_threshold=0.02, extreme_threshold=0.06, vol_gate=False, w_flow=0.0, w_move=0.0,
                      max_hold_bars=24)


def test_exchange_outage_blocks_entries_while_window_is_filled(real, tmp_path, state):
    gone = np.arange(300, 330)  # 2.5 h: every asset
    bad = {s: {k: np.delete(v, gone) for k, v in r.items()} for s, r in real.items()}
    p = load_panel(_write_set(tmp_path / "bad", bad))
    out = _one(p, "outage_window", "*")
    rows = np.flatnonzero(p.excluded.all(axis=1))
    # the trailing 50-bar window [t-49, t] holds > 10 filled bars from bar 310 (11) to bar 368 (11)
    assert rows.tolist() == list(range(310, 369)) and out.count == 59
    assert not p.excluded[:310].any() and not p.excluded[369:].any()
    # a signal that crosses inside the affected window enters nothing; on the clean data it trades
    vd = np.zeros(p.n_bars)
    vd[340] = -0.04
    res = run_backtest(p, handmade_scans(p, vd), _cfg())
    assert len(res.trades) == 0
    clean = load_panel(_write_set(tmp_path / "ref", real))
    assert len(run_backtest(clean, handmade_scans(clean, vd), _cfg()).trades) == 1
    state.unchanged()


def test_single_asset_gap_excludes_that_asset_only(real, tmp_path, state):
    bad = _copy(real)
    bad["ETHUSDT"] = {k: np.delete(v, np.arange(400, 415)) for k, v in bad["ETHUSDT"].items()}
    p = load_panel(_write_set(tmp_path / "bad", bad))
    issue = _one(p, "outage_window", "ETHUSDT")
    # own window [t-49, t] holds > 10 of 50 filled (bars 400..414 missing): bars 410..453
    assert np.flatnonzero(p.excluded[:, ETH]).tolist() == list(range(410, 454)) and issue.count == 44
    assert not p.excluded[:, [BTC, SOL]].any()
    state.unchanged()


# --------------------------------------------------------------------------------- sets that cannot run


def test_mixed_intervals_refused_then_bar_ms_keeps_one(real, tmp_path, state):
    bad = _copy(real)
    bad["SOLUSDT"] = {k: v[::12] for k, v in bad["SOLUSDT"].items()}  # hourly rows
    folder = _write_set(tmp_path / "bad", bad)
    with pytest.raises(DataError, match=r"mixed bar intervals \(5m: BTCUSDT, ETHUSDT; 1h: SOLUSDT\).*--bar-ms"):
        load_panel(folder)
    p = load_panel(folder, rules=AlignRules(bar_ms=BAR_5M))
    assert p.symbols == ["BTCUSDT", "ETHUSDT"] and _one(p, "mixed_interval", "SOLUSDT")
    state.unchanged()


def test_one_asset_left_scan_names_input_and_dropped(real, tmp_path, state):
    bad = _copy(real)
    for s in ("ETHUSDT", "SOLUSDT"):
        bad[s] = {k: v[-20:] for k, v in bad[s].items()}  # listed in the last 100 minutes only
    folder = _write_set(tmp_path / "bad", bad)
    p = load_panel(folder)
    assert p.symbols == ["BTCUSDT"]
    with pytest.raises(DataError) as e:
        scan(p)
    msg = str(e.value)
    assert msg.startswith(f"scan needs at least 2 assets; {folder} leaves 1 (BTCUSDT); dropped: ETHUSDT: late_start")
    assert "SOLUSDT: late_start" in msg and "covers 3.5%" in msg
    state.unchanged()


@pytest.mark.parametrize("content,match", [
    (b"PAR1 not really parquet" * 20, "unreadable Parquet file"),
    ("columns", r"not a candle file: missing column\(s\) open, high, low, volume"),
], ids=["garbage_parquet", "missing_columns"])
def test_unreadable_file_named(real, tmp_path, state, content, match):
    folder = _write_set(tmp_path / "bad", {s: real[s] for s in ("BTCUSDT", "ETHUSDT")})
    f = folder / "SOLUSDT.parquet"
    if content == "columns":
        pq.write_table(pa.table({"open_time": pa.array(real["SOLUSDT"]["open_time"], pa.int64()),
                                 "close": real["SOLUSDT"]["close"]}), f)
    else:
        f.write_bytes(content)
    with pytest.raises(DataError, match=f"^{f}: {match}"):
        load_panel(folder)
    state.unchanged()


def test_empty_file_asset_dropped(real, tmp_path, state):
    folder = _write_set(tmp_path / "bad", {s: real[s] for s in ("BTCUSDT", "ETHUSDT")})
    write_parquet(folder / "SOLUSDT.parquet", {k: v[:0] for k, v in real["SOLUSDT"].items()})
    p = load_panel(folder)
    assert p.symbols == ["BTCUSDT", "ETHUSDT"]
    assert _one(p, "no_data", "SOLUSDT").source == str(folder / "SOLUSDT.parquet")
    state.unchanged()


# --------------------------------------------------------------------------------- engine config files

CONFIG_CASES = [
    ("yaml11_float_string", "maker_fee: 1e-9\n", None),
    ("integral_float_bars", "max_hold_bars: 36.0\n", None),
    ("negative_fee", "taker_fee: -0.0005\n", "taker_fee: must be >= 0 (got -0.0005)"),
    ("negative_slippage", "slippage_bps: -2\n", "slippage_bps: must be >= 0 (got -2.0)"),
    ("negative_take_profit", "take_profit_bps: -95\n", "take_profit_bps: must be >= 0 (got -95.0)"),
    ("float_bar_count", "max_hold_bars: 12.5\n", "max_hold_bars: must be a whole number of bars (got 12.5)"),
    ("zero_bar_count", "vol_window: 0\n", "vol_window: must be >= 1 (got 0)"),
    ("string_boolean", 'vol_gate: "false"\n', "vol_gate: must be true or false (a YAML boolean, not a string or "
                                             "number) (got 'false')"),
    ("number_as_boolean", "charge_funding: 1\n", "charge_funding: must be true or false"),
    ("unknown_key", "take_profit_bp: 3\n", "take_profit_bp: unknown config key; did you mean 'take_profit_bps'?"),
    ("text_number", "entry_threshold: abc\n", "entry_threshold: must be a number (got 'abc')"),
    ("nan_number", "capital_fraction: .nan\n", "capital_fraction: must be a finite number (got nan)"),
    ("invalid_yaml", "maker_fee: [1, 2\n", "invalid YAML"),
    ("not_a_mapping", "- maker_fee\n", "expected a mapping of config keys"),
    ("thresholds_reversed", "entry_threshold: 0.05\nextreme_threshold: 0.01\n",
     "extreme_threshold must exceed entry_threshold"),
    ("unknown_preset", "preset: purple\n", "preset: unknown preset 'purple' (known: blue, green)"),
    ("duration_not_whole_bars", "max_hold_bars: 7m\n", "max_hold_bars: 7m is not a whole number of 5m bars"),
    ("bad_bar_key", "bar: 7x\n", "bar: must be a bar size such as 5m, 1h or 1d (got '7x')"),
]


@pytest.mark.parametrize("case,text,error", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_config_file(tmp_path, state, case, text, error):
    f = tmp_path / f"{case}.yaml"
    f.write_text(text)
    if error is None:
        cfg = load_config(f)
        assert (cfg.maker_fee == 1e-9) if case == "yaml11_float_string" else (cfg.max_hold_bars == 36)
        assert isinstance(cfg.max_hold_bars, int)
    else:
        with pytest.raises(ConfigError) as e:
            load_config(f)
        msg = str(e.value)
        assert msg.startswith(f"{f}: ") and error in msg and "\n" not in msg
    state.unchanged()


def test_config_durations_converted_with_its_bar_size(tmp_path):
    f = tmp_path / "h1.yaml"
    f.write_text("bar: 1h\nmax_hold_bars: 12h\nvol_lookback: 7d\nrank_lookback: 3\n")
    cfg = load_config(f)
    assert (cfg.max_hold_bars, cfg.vol_lookback, cfg.rank_lookback) == (12, 168, 3)
    f.write_text("max_hold_bars: 12h\n")  # no bar: the presets' 5m
    assert load_config(f).max_hold_bars == 144


@pytest.fixture
def hourly_set(tmp_path):
    from tests.support.data import real_rows_at

    rows = {s: real_rows_at(s, parse_time("2024-01-01"), 24 * 30, "mixed-1h-2022-2026") for s in SYMS}
    folder = _write_set(tmp_path / "h1", rows)
    return folder, _tree_digest(folder)


def test_preset_on_hourly_data_refused_naming_what_it_would_mean(capsys, state, hourly_set):
    folder, digest = hourly_set
    rc, out, err = _cli(capsys, "backtest", "--data", str(folder))
    assert rc == 1 and err.startswith(f"dolphin: error: config blue: its bar counts are for 5m bars, {folder} has "
                                      "1h bars (")
    assert "max_hold_bars 144 = 12h 00m meant, 6d 00h on this data" in err
    assert "vol_lookback 2016 = 7d 00h meant, 84d 00h on this data" in err
    rc, out, err = _cli(capsys, "calibrate", "--data", str(folder))
    assert rc == 1 and "its bar counts are for 5m bars" in err
    state.unchanged((folder, digest))


def test_config_schema_covers_every_field():
    # the rules come from the dataclass fields: a field added later with a valid default needs no edit here,
    # and one whose default breaks a rule shows up
    assert defaults_are_valid(EngineConfig) == []


# --------------------------------------------------------------------------------- command line


@pytest.fixture
def small_set(real, tmp_path):
    folder = _write_set(tmp_path / "small", real)
    return folder, _tree_digest(folder)


ARG_CASES = [
    ("bad_date", ["backtest", "--start", "2024-13-01"], "argument --start: '2024-13-01' is not a date"),
    ("text_date", ["backtest", "--end", "yesterday"], "argument --end: 'yesterday' is not a date"),
    ("huge_unix_ms", ["scan", "--data", "x", "--out", "y", "--start", "99999999999999999"], "is not a date"),
    ("split_above_1", ["backtest", "--split", "1.5"], "argument --split: 1.5 is not in [0, 1)"),
    ("calibrate_split_0", ["calibrate", "--split", "0"], "argument --split: 0 is not in (0, 1)"),
    ("split_text", ["calibrate", "--split", "half"], "argument --split: 'half' is not a number"),
    ("bad_bar_size", ["backtest", "--bar-ms", "7x"], "argument --bar-ms: '7x' is not a bar size"),
]


@pytest.mark.parametrize("case,argv,msg", ARG_CASES, ids=[c[0] for c in ARG_CASES])
def test_bad_arguments_one_line_exit_2(capsys, state, case, argv, msg):
    rc, out, err = _cli(capsys, *argv)
    assert rc == 2 and msg in err
    state.unchanged()


def test_report_path_is_a_folder_refused_before_the_run(capsys, state, small_set, tmp_path):
    folder, digest = small_set
    rc, out, err = _cli(capsys, "backtest", "--data", str(folder), "--report", str(tmp_path))
    assert rc == 1 and err == f"dolphin: error: --report {tmp_path}: is a folder; give a file path\n"
    assert out == ""
    state.unchanged((folder, digest))  # refused before any work: not even the scan cache was written


def test_trades_csv_under_a_file_refused(capsys, state, small_set, tmp_path):
    folder, digest = small_set
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    rc, out, err = _cli(capsys, "backtest", "--data", str(folder), "--trades-csv", str(blocker / "t.csv"))
    assert rc == 1 and err == f"dolphin: error: --trades-csv {blocker / 't.csv'}: {blocker} is not a folder\n"
    state.unchanged((folder, digest))


def test_calibrate_out_unwritable_refused_before_computing(capsys, state, small_set):
    folder, digest = small_set
    rc, out, err = _cli(capsys, "calibrate", "--data", str(folder), "--grid-csv", "/proc/grid.csv")
    assert rc == 1 and err == "dolphin: error: --grid-csv /proc/grid.csv: folder /proc is not writable\n"
    state.unchanged((folder, digest))


def test_calibrate_refuses_a_short_in_sample_part(capsys, state, small_set):
    folder, digest = small_set
    rc, out, err = _cli(capsys, "calibrate", "--data", str(folder))
    assert rc == 1
    assert err == (f"dolphin: error: calibrate {folder}: the in-sample part holds 1 UTC day(s) (split 0.6 of 2 "
                   "days); at least 20 are needed to choose a risk budget: use more data or a larger --split\n")
    state.unchanged((folder, digest))  # refused before scanning: no scan cache either


def test_backtest_bad_config_one_line(capsys, state, tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("maker_fee: -1\n")
    rc, out, err = _cli(capsys, "backtest", "--config", str(f))
    assert rc == 1 and err == f"dolphin: error: {f}: maker_fee: must be >= 0 (got -1.0)\n"
    state.unchanged()


def test_scan_out_is_a_file(capsys, state, small_set, tmp_path):
    folder, digest = small_set
    f = tmp_path / "file"
    f.write_text("keep me")
    rc, out, err = _cli(capsys, "scan", "--data", str(folder), "--out", str(f))
    assert rc == 1 and err == f"dolphin: error: --out {f}: is a file; give a folder\n"
    assert f.read_text() == "keep me"
    state.unchanged((folder, digest))


def test_scan_window_outside_the_data_refused(capsys, state, small_set, tmp_path):
    folder, digest = small_set
    out_dir = tmp_path / "never"
    rc, out, err = _cli(capsys, "scan", "--data", str(folder), "--out", str(out_dir), "--start", "2030-01-01")
    assert rc == 1 and err.startswith("dolphin: error: align: cannot infer the bar interval: every asset has fewer "
                                      "than 2 bars in the window 2030-01-01 00:00:00 .. (data end)")
    assert not out_dir.exists()
    state.unchanged((folder, digest))


def test_scan_after_a_killed_scan_cleans_up_and_says_incomplete(capsys, state, small_set, tmp_path):
    from dolphin.scanner.recovery import MARKER

    folder, digest = small_set
    out_dir, arrow = tmp_path / "scans_out", tmp_path / "arrow"
    dead = 2 ** 22 + 12345  # above the default pid_max: no such process
    (arrow / "2024-01-02").mkdir(parents=True)
    stale = arrow / "2024-01-02" / f".scan_1704240000000.arrow.{dead}.tmp"
    stale.write_bytes(b"half a file")
    keep = arrow / "2024-01-02" / ".scan_1704240300000.arrow.1.tmp"  # pid 1 is alive: not ours to touch
    keep.write_bytes(b"being written")
    out_dir.mkdir()
    (out_dir / f".scans_2024-01-02.parquet.{dead}.tmp").write_bytes(b"half")
    (out_dir / MARKER).write_text(json.dumps({"pid": dead, "started": "2024-01-03 00:00:00", "args": "--data x"}))
    rc, out, err = _cli(capsys, "scan", "--data", str(folder), "--out", str(out_dir), "--arrow-files", str(arrow),
                        "--no-progress", "--start", "2024-01-02")
    assert rc == 0
    assert (f"scan: the previous scan into {out_dir} (pid {dead}, started 2024-01-03 00:00:00 UTC, --data x) did "
            "not finish: its output is incomplete") in err
    assert "removed 1 stale temporary file(s)" in err
    assert not stale.exists() and keep.exists() and not (out_dir / MARKER).exists()
    assert not list(out_dir.glob(".*.tmp")) and (out_dir / "scans_2024-01-02.parquet").exists()
    state.unchanged((folder, digest))


# --------------------------------------------------------------------------------- SQL and the warehouse


def test_sql_empty_query(capsys, state):
    rc, out, err = _cli(capsys, "sql", "")
    assert rc == 1 and err.startswith("dolphin sql: error: empty query")
    state.unchanged()


def _damaged_copy(state, tmp_path, how):
    src = state.root / "warehouse.duckdb"
    dst = tmp_path / f"{how}.duckdb"
    if how == "truncated":  # metadata early, data blocks at the end: opens, queries of the big table fail
        con = duckdb.connect(str(dst))
        con.execute("create schema dolphin; create table dolphin.small as select 1 as x")
        con.execute("checkpoint")
        con.execute("create table dolphin.big as select range a, random() b from range(300000)")
        con.close()
        os.truncate(dst, os.path.getsize(dst) - 262_144)
    else:
        dst.write_bytes(src.read_bytes())
        with open(dst, "r+b") as f:
            f.seek(0 if how == "header" else 4096)
            f.write(b"\xff" * 200)
    return dst


@pytest.mark.parametrize("how,why", [("header", "not a valid DuckDB database file"),
                                     ("checksum", "Corrupt database file"),
                                     ("truncated", "truncated")], ids=["corrupt_header", "bad_checksum",
                                                                       "truncated_file"])
def test_sql_damaged_warehouse_fails_at_once_naming_the_file(capsys, state, tmp_path, how, why):
    db = _damaged_copy(state, tmp_path, how)
    before = db.read_bytes()
    rc, out, err = _cli(capsys, "sql", "select 1", "--db", str(db))
    assert rc == 1 and err.startswith(f"dolphin sql: error: warehouse {db} is damaged (")
    assert why in err and f"dolphin warehouse rebuild --db {db}" in err
    assert db.read_bytes() == before
    state.unchanged()


def test_warehouse_rebuild_from_ledger_and_latest_view(capsys, state, tmp_path):
    wh = state.root / "warehouse.duckdb"
    con = duckdb.connect(str(wh), read_only=True)
    total = con.execute("select sum(closing_capital) from dolphin.capital_ledger_blue").fetchone()[0]
    latest = con.execute("select sum(closing_capital) from dolphin.capital_ledger_blue_latest").fetchone()[0]
    con.close()
    assert total == 10_250.0 + 10_100.0 + 10_150.0 and latest == 10_250.0 + 10_150.0  # no double count
    with open(wh, "r+b") as f:
        f.write(b"\x00" * 64)
    damaged = wh.read_bytes()
    rc, out, err = _cli(capsys, "warehouse", "rebuild")
    assert rc == 0, err
    moved = [p for p in state.root.iterdir() if p.name.startswith("warehouse.duckdb.damaged-")]
    assert len(moved) == 1 and moved[0].read_bytes() == damaged
    assert "rebuilt dolphin.capital_ledger_blue: 3 ledger row(s)" in out
    rc, out, err = _cli(capsys, "sql", "select day, version, closing_capital from dolphin.capital_ledger_blue_latest "
                                       "order by day")
    assert rc == 0 and "10,250.00" in out and "10,150.00" in out and "10,100.00" not in out and err == ""


def test_sql_warns_when_warehouse_is_behind_the_ledger(capsys, state):
    from dolphin.engine.state import EngineState
    from dolphin.ledger import CapitalLedger, DayRecord

    book = CapitalLedger(state.root / "ledger" / "ledger.sqlite")
    s2 = EngineState(capital=10_150.0, as_of_ms=parse_time("2024-01-03") - 1).to_dict()
    s3 = EngineState(capital=10_300.0, as_of_ms=parse_time("2024-01-04") - 1).to_dict()
    # a day killed between the ledger write and the capital_ledger_blue export
    book.record_day("BLUE", "2024-01-03", DayRecord(10_150.0, 10_300.0, 10_300.0, s2, s3, [], 288),
                    start_day="2024-01-01")
    wh_before = (state.root / "warehouse.duckdb").read_bytes()
    rc, out, err = _cli(capsys, "sql", "select count(*) as n from dolphin.capital_ledger_blue")
    assert rc == 0 and "(1 row)" in out
    assert (f"dolphin sql: WARNING: the warehouse is behind the ledger {state.root / 'ledger' / 'ledger.sqlite'}: "
            "1 BLUE ledger row(s) not in dolphin.capital_ledger_blue (days 2024-01-03)") in err
    assert (state.root / "warehouse.duckdb").read_bytes() == wh_before


def test_ledger_damage_names_the_file(tmp_path, state):
    from dolphin.ledger import CapitalLedger

    f = tmp_path / "ledger.sqlite"
    f.write_bytes(b"this is not a database" * 200)
    with pytest.raises(sqlite3.DatabaseError, match=f"^ledger file {f}: file is not a database"):
        CapitalLedger.existing(f).current("BLUE")
    state.unchanged()


# --------------------------------------------------------------------------------- dolphin status


def test_status_unknown_strategy(capsys, state):
    rc, out, err = _cli(capsys, "status", "--strategy", "PURPLE")
    assert rc == 2 and err.startswith("dolphin status: unknown strategy 'PURPLE': known are BLUE, GREEN")
    state.unchanged()


def test_status_old_scan_is_not_ok(capsys, state):
    # the populated store's scan is from 2024-01-02: years old -> "ok": false, exit 1, the limit named
    rc, out, err = _cli(capsys, "status", "--json")
    d = json.loads(out)
    assert rc == 1 and d["ok"] is False
    assert [s["record"] for s in d["stale"]] == ["scan_latest"] and d["stale"][0]["limit_s"] == 900
    rc, out, err = _cli(capsys, "status")
    assert rc == 1 and "freshness       STALE: scan_latest " in out and "> limit 15m 00s" in out
    state.unchanged()


def test_status_shows_runtime_sessions_from_the_fill_journal(capsys, state):
    from dolphin.ledger.journal import FillJournal, JournalEvent

    j = FillJournal(state.root / "ledger" / "ledger.sqlite")
    j.open_session("BLUE", "paper-1", mode="paper", opening_capital=10_000.0)
    t = parse_time("2024-01-02 12:00") * 1_000_000
    j.append("BLUE", JournalEvent("e1", "paper-1", "fill", t, "ETHUSDT", "SELL", "entry", 2.0, 2300.0, 0.9,
                                  9_999.1))
    rc, out, err = _cli(capsys, "status")
    line = [x for x in out.splitlines() if x.startswith("runtime ")][0]
    assert line == ("runtime         session paper-1 (paper, open, run 1): capital 9,999.10, 1 fill(s), position "
                    "ETHUSDT -2 @ 2300; last fill entry SELL ETHUSDT 2 @ 2300 at 2024-01-02T12:00:00Z")


# --------------------------------------------------------------------------------- the Dagster code location


def test_unreadable_file_fails_only_the_data_assets(real, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    folder = _write_set(tmp_path / "set", real)
    (folder / "DOGEUSDT.parquet").write_bytes(b"PAR1 damaged" * 50)
    home = tmp_path / "home"
    (home / "dagster").mkdir(parents=True)
    (home / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOLPHIN_", "DAGSTER_"))}
    env.update(DOLPHIN_HOME=str(home), DAGSTER_HOME=str(home / "dagster"), DOLPHIN_DAGSTER_DATA=str(folder),
               PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    script = (
        "from dagster import materialize\n"
        "from dolphin_assets.settings import SETTINGS, DATA_ERRORS\n"
        "from dolphin_assets.definitions import defs, resources\n"
        "from dolphin_assets.assets.market import market_bars\n"
        "from tests.support.dagster import failure_text\n"
        "assert len(defs.get_repository_def().get_all_jobs()) > 0\n"
        "print('window', SETTINGS.start, SETTINGS.end)\n"
        "print('errors', DATA_ERRORS)\n"
        "r = materialize([market_bars], partition_key=SETTINGS.end, resources=resources(), raise_on_error=False)\n"
        "print('market_bars', r.success, failure_text(r).replace(chr(10), ' | '))\n")
    p = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300,
                       cwd=Path(__file__).resolve().parents[2])
    assert p.returncode == 0, p.stderr[-3000:]
    lines = p.stdout.splitlines()
    bad = f"{folder / 'DOGEUSDT.parquet'}: unreadable Parquet file"
    assert "window 2024-01-01 2024-01-02" in lines  # the window of the readable files: the location loads
    assert any(x.startswith("errors [") and bad in x for x in lines)
    assert any(x.startswith("market_bars False ") and bad in x for x in lines)  # fails at run time, file named


def test_partition_start_after_data_start_scans_the_history_itself(state):
    from dagster import Failure

    from dolphin.daily import history_bars
    from dolphin.scanner.core import WARMUP_BARS
    from dolphin.scanner.writer import write_day_parquet
    from dolphin_assets.assets.blue import history_scans

    day0 = parse_time("2024-01-10")
    kw = dict(start_ms=day0, end_ms=day0 + 86_400_000 - 1, symbols=list(SYMS))
    panel = load_panel("spot-5m-2024", warmup_bars=history_bars(BLUE), **kw)
    # the day's own eigen_scans file exists (its partition ran); the history days are no partitions
    ref_panel = load_panel("spot-5m-2024", warmup_bars=WARMUP_BARS, **kw)
    ref = scan(ref_panel)
    empty = state.root.parent / "scan_dir"
    write_day_parquet(ref, empty)
    assert sorted(p.name for p in empty.iterdir()) == ["scans_2024-01-10.parquet"]
    scans = history_scans(empty, panel, "2024-01-10")  # scanned here instead of a chain that cannot start
    assert len(scans) == panel.n_bars and np.array_equal(scans.open_time, panel.open_time)
    # the day's rows equal what eigen_scans computed for the day (its own 751-bar warm-up)
    day = slice(panel.warmup_bars, None)
    np.testing.assert_allclose(scans.vel_div[day], ref.vel_div, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(scans.loadings[day], ref.loadings, rtol=1e-9, atol=1e-12)
    # a history day that IS a partition still has to be materialised first
    with pytest.raises(Failure, match="eigen_scans missing for 2024-01-02, .*2024-01-09: materialise eigen_scans"):
        history_scans(empty, panel, "2024-01-05")
    state.unchanged()

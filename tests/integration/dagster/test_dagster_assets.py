"""The Dagster asset platform in-process on real data (spot-5m-2024): 15 consecutive BLUE days chained through the
capital ledger equal one continuous engine run; checks evaluated per day against independently computed floors;
re-materialisation is idempotent; out-of-order days and divergent re-runs are refused; rebase; publications.

One module-scoped run builds the world (tmp DOLPHIN_HOME / DAGSTER_HOME, in-process executor); the tests read it.
"""

import json

import numpy as np
import pandas as pd
import pytest

import dagster as dg
from tests.support.dagster import dagster_env, failure_text

HISTORY = [f"2024-01-{d:02d}" for d in range(24, 32)]  # the 8 days of scans the first chain day reads
DAYS = [f"2024-02-{d:02d}" for d in range(1, 16)]
START = DAYS[0]
TRADE_COLS = ["entry_time", "exit_time", "asset", "side", "notional", "leverage", "entry_price", "exit_price", "fees",
              "funding", "pnl", "exit_reason"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    home = tmp_path_factory.mktemp("dolphin_home")
    with dagster_env(home):
        from dolphin_assets.checks import daily_pnl_blue_floors, eigen_scans_checks
        from dolphin_assets.definitions import ASSETS, resources
        from dolphin_assets.resources.ledger import Ledger
        from dolphin_assets.schedules import BLUE_CHAIN

        instance = dg.DagsterInstance.get()
        res = resources(ledger=Ledger(start_day=START))
        defs_assets = [*ASSETS, eigen_scans_checks, daily_pnl_blue_floors]
        w = {"home": home, "instance": instance, "res": res, "assets": defs_assets, "chain": BLUE_CHAIN,
             "checks": {}, "meta": {}}

        def mat(day, selection, run_config=None, engine_day=True):
            # this module checks the chain against ONE plain engine run, so its days run with risk_layer none;
            # the chain under the risk layer (the default) is tests/integration/dagster/test_dagster_blue_risk.py's
            if engine_day:
                ops = (run_config or {}).get("ops", {})
                op = ops.get("daily_pnl_blue", {}).get("config", {})
                run_config = {**(run_config or {}), "ops": {**ops, "daily_pnl_blue": {
                    "config": {"risk_layer": "none", **op}}}}
            return dg.materialize(defs_assets, selection=selection, partition_key=day, resources=res,
                                  instance=instance, run_config=run_config or {}, raise_on_error=False)

        w["mat"] = mat
        for d in HISTORY:
            r = mat(d, dg.AssetSelection.assets("market_bars", "eigen_scans"), engine_day=False)
            assert r.success, failure_text(r)
        for d in DAYS:
            r = mat(d, BLUE_CHAIN)
            assert r.success, failure_text(r)
            w["checks"][d] = {(e.asset_key.to_user_string(), e.check_name): e
                              for e in r.get_asset_check_evaluations()}
            mats = {m.asset_key.to_user_string(): m for m in r.get_asset_materialization_events()}
            w["meta"][d] = {k: v.event_specific_data.materialization.metadata for k, v in mats.items()}
        yield w
        instance.dispose()


@pytest.fixture(scope="module")
def continuous():
    """The same 15 days as ONE engine run with the same history (the reference the chain must equal)."""
    from dolphin.daily import history_bars
    from dolphin.timeutil import day_start_ms
    from dolphin.data import load_panel
    from dolphin.engine.backtest import run_backtest
    from dolphin.scanner import scan
    from dolphin_assets.settings import ENGINE_CONFIG
    from dolphin.timeutil import DAY_MS

    cfg = ENGINE_CONFIG
    p = load_panel("spot-5m-2024", start_ms=day_start_ms(DAYS[0]), end_ms=day_start_ms(DAYS[-1]) + DAY_MS - 1,
                   warmup_bars=history_bars(cfg))
    r = run_backtest(p, scan(p, int(p.open_time[0])), cfg, trade_from_ms=int(p.close_time[p.warmup_bars]),
                     close_at_end=False)
    return p, r


def _ledger(world):
    from dolphin.ledger import CapitalLedger

    return CapitalLedger(world["home"] / "ledger" / "ledger.sqlite")


def _sql(q):
    from dolphin.adapters.duckdb_sql import query

    cols, rows = query(q)
    return pd.DataFrame(rows, columns=cols)


def test_capital_continuity(world):
    from dolphin_assets.settings import ENGINE_CONFIG

    cur = _ledger(world).current("BLUE")
    assert [e.day for e in cur] == DAYS
    assert cur[0].record.opening_equity == ENGINE_CONFIG.initial_capital
    assert cur[0].record.opening_state["capital"] == ENGINE_CONFIG.initial_capital
    for a, b in zip(cur, cur[1:]):
        assert b.record.opening_equity == a.record.closing_equity
        assert b.record.opening_state == a.record.closing_state
    daily = _sql("select day, opening_equity, closing_equity from dolphin.daily_pnl_blue order by day")
    assert len(daily) == len(DAYS)
    assert (daily.opening_equity.to_numpy()[1:] == daily.closing_equity.to_numpy()[:-1]).all()
    carried = [e.day for e in cur if e.record.closing_state.get("position") or e.record.closing_state.get("pending")]
    assert carried, "the window must carry a position or order across midnight"


def test_chained_days_equal_one_continuous_run(world, continuous):
    panel, ref = continuous
    trades = _sql("select * from dolphin.trades_blue order by exit_time, entry_time")
    assert len(ref.trades) >= 5
    pd.testing.assert_frame_equal(trades[TRADE_COLS].reset_index(drop=True),
                                  ref.trades[TRADE_COLS].reset_index(drop=True), check_dtype=False)
    cur = _ledger(world).current("BLUE")
    ends = np.searchsorted(panel.open_time, [int(pd.Timestamp(d, tz="UTC").value // 10**6) + 86_400_000 for d in DAYS]) - 1
    assert [e.record.closing_equity for e in cur] == [float(ref.equity[i]) for i in ends]
    assert cur[-1].record.closing_state == json.loads(json.dumps(ref.final_state.to_dict()))


def test_checks_are_evaluated_per_day_and_tell_the_truth(world, continuous):
    from dolphin.metrics import FLOORS, daily_table, evaluate_floors_at
    from dolphin_assets.checks import floor_check_name
    from dolphin_assets.settings import ENGINE_CONFIG

    panel, ref = continuous
    lo = ref.first_bar
    daily = daily_table(ref.trades, ref.ts[lo:], ref.equity[lo:], ENGINE_CONFIG.initial_capital)
    table = []
    for d in DAYS:
        got = world["checks"][d]
        for name in ("no_nan_after_warmup", "lambda_norm_in_range", "scan_count_is_day_bars"):
            assert got[("eigen_scans", name)].passed, (d, name, got[("eigen_scans", name)].metadata)
        report = evaluate_floors_at(daily, ref.trades, d)
        for spec in FLOORS:
            f = report[spec.key]
            if f.status == "N/A":  # no complete window yet: no result, Dagster shows the check skipped
                assert ("daily_pnl_blue", floor_check_name(spec)) not in got, (d, spec.key)
                table.append((d, floor_check_name(spec), f.status))
                continue
            ev = got[("daily_pnl_blue", floor_check_name(spec))]
            assert ev.metadata["status"].value == f.status, (d, spec.key)
            assert ev.passed == (f.status == "PASS")
            want_sev = dg.AssetCheckSeverity.WARN if f.status == "N/A" else dg.AssetCheckSeverity.ERROR
            assert ev.severity == want_sev
            if f.status != "N/A":
                v, want = ev.metadata["value"].value, f.latest_value
                if np.isfinite(want):
                    assert v == pytest.approx(want, rel=1e-12), (d, spec.key)
                else:
                    assert v == ("n/a" if np.isnan(want) else str(want)), (d, spec.key)
            table.append((d, floor_check_name(spec), f.status))
    statuses = {s for _, _, s in table}
    assert "N/A" in statuses and statuses - {"N/A"}, "both N/A (short chain) and evaluated 10-day floors expected"
    out = world["home"] / "check_results.json"
    out.write_text(json.dumps(table, indent=1))
    summary = pd.DataFrame(table, columns=["day", "check", "status"]).pivot(index="day", columns="check", values="status")
    print("\nfloor checks per day (PASS/FAIL/N/A):\n" + summary.to_string())


def test_eigen_scans_metadata_and_warehouse_rows(world):
    meta = world["meta"][DAYS[0]]["eigen_scans"]
    assert meta["scans"].value == 288 and meta["warm_scans"].value == 288
    assert set(meta["fallbacks"].value) == {"w50", "w150", "w300", "w750"}
    assert meta["lambda_w50_range"].value.startswith("[")
    n = _sql("select day, count(*) n, count(distinct timestamp) u from dolphin.eigen_scans group by day order by day")
    assert len(n) == len(HISTORY) + len(DAYS) and (n.n == 288).all() and (n.u == 288).all()


def test_publications(world):
    from dolphin.store import FEATURES, SCAN_LATEST, STATE_LATEST, VOL_REGIME, pnl_map, state_map
    from dolphin.adapters.sqlite_store import EmbeddedStore

    store = EmbeddedStore(world["home"] / "store" / "features.sqlite")
    scan = store.get(FEATURES, SCAN_LATEST)
    assert scan.timestamp == "2024-02-16T00:00:00.000Z" and scan.value["asset_count"] == 50
    last = _sql("select vel_div, lambda_w50 from dolphin.eigen_scans order by timestamp desc limit 1")
    assert scan.value["vel_div"] == last.vel_div[0] and scan.value["lambda_w50"] == last.lambda_w50[0]
    assert store.get(FEATURES, VOL_REGIME).timestamp == "2024-02-16T00:00:00.000Z"
    st = store.get(state_map("BLUE"), STATE_LATEST)
    last_day = _ledger(world).current("BLUE")[-1]
    assert st.value["day"] == DAYS[-1] and st.value["equity"] == last_day.record.closing_equity
    assert st.value["peak"] == last_day.peak and st.value["drawdown"] == last_day.drawdown
    assert store.keys(pnl_map("BLUE")) == DAYS


def test_sql_command_examples(world, capsys):
    import argparse

    from dolphin.adapters import duckdb_sql as sqlcli

    ap = argparse.ArgumentParser()
    sqlcli.register(ap.add_subparsers())
    examples = [
        "select day::date as day, closing_equity, pnl, trades, drawdown from dolphin.daily_pnl_blue order by day",
        "select asset, count(*) as trades, round(sum(pnl), 2) as pnl, avg((pnl > 0)::int) as win_rate "
        "from dolphin.trades_blue group by asset order by pnl desc",
        "select day::date as day, count(*) as scans, min(vel_div) as vel_div_min, max(lambda_norm_w50) as lam50_max, "
        "sum(fallbacks > 0) as fallback_scans from dolphin.eigen_scans group by day order by day",
    ]
    for q in examples:
        args = ap.parse_args(["sql", q])
        assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "2024-02-15" in out and "SEIUSDT" in out and "(23 rows)" in out
    args = ap.parse_args(["sql", "select * from dolphin.nope"])
    assert args.func(args) == 1 and "query failed" in capsys.readouterr().err


def test_rematerialising_a_day_is_idempotent(world):
    book = _ledger(world)
    before = [(e.day, e.record.fingerprint()) for e in book.current("BLUE")]
    n_trades = _sql("select count(*) n from dolphin.trades_blue").n[0]
    r = world["mat"]("2024-02-05", world["chain"])
    assert r.success, failure_text(r)
    assert [(e.day, e.record.fingerprint()) for e in book.current("BLUE")] == before
    assert [e.version for e in book.history("BLUE", "2024-02-05")] == [1, 2]
    assert _sql("select count(*) n from dolphin.trades_blue").n[0] == n_trades
    dup = _sql("select entry_time, asset, count(*) c from dolphin.trades_blue group by 1, 2 having count(*) > 1")
    assert dup.empty
    rows = _sql("select version, superseded from dolphin.capital_ledger_blue where day = '2024-02-05' order by version")
    assert rows.values.tolist() == [[1, True], [2, False]]
    assert _sql("select count(*) n from dolphin.daily_pnl_blue").n[0] == len(DAYS)


def test_out_of_order_day_is_refused(world):
    r = world["mat"]("2024-02-17", world["chain"])
    assert not r.success
    msg = failure_text(r)
    assert "previous day 2024-02-16 has no result in the capital ledger" in msg and "Materialise 2024-02-16 first" in msg
    assert _ledger(world).entry("BLUE", "2024-02-17") is None


def test_divergent_rerun_is_refused_then_rebased(world, monkeypatch):
    import dolphin_assets.assets.blue as blue
    from dolphin.store import STATE_LATEST, pnl_map, state_map
    from dolphin.adapters.sqlite_store import EmbeddedStore

    book = _ledger(world)
    snapshot = [(e.day, e.record.fingerprint()) for e in book.current("BLUE")]
    sel = dg.AssetSelection.assets("daily_pnl_blue", "trades_blue", "capital_ledger_blue")
    # a changed engine (e.g. new slippage model) gives 02-14 (BTC entry by market order) another result
    monkeypatch.setattr(blue, "ENGINE_CONFIG", blue.ENGINE_CONFIG.with_(slippage_bps=7.0))
    r = world["mat"]("2024-02-14", sel)
    assert not r.success and "later days 2024-02-15..2024-02-15 (1)" in failure_text(r)
    assert [(e.day, e.record.fingerprint()) for e in book.current("BLUE")] == snapshot
    r = world["mat"]("2024-02-14", sel, {"ops": {"daily_pnl_blue": {"config": {"rebase": True}}}})
    assert r.success, failure_text(r)
    assert [e.day for e in book.current("BLUE")][-1] == "2024-02-14"
    store = EmbeddedStore(world["home"] / "store" / "features.sqlite")
    assert store.get(state_map("BLUE"), STATE_LATEST).value["day"] == "2024-02-14"
    assert "2024-02-15" not in store.keys(pnl_map("BLUE"))
    monkeypatch.undo()
    for d in ("2024-02-14", "2024-02-15"):
        r = world["mat"](d, sel)
        assert r.success, failure_text(r)
    assert [(e.day, e.record.fingerprint()) for e in book.current("BLUE")] == snapshot
    assert store.get(state_map("BLUE"), STATE_LATEST).value["day"] == "2024-02-15"


def test_freshness_check_reports_the_missing_latest_partition(world):
    from dolphin_assets.checks import FRESHNESS_CHECKS

    r = dg.materialize([*world["assets"], *FRESHNESS_CHECKS], selection=dg.AssetSelection.checks(*FRESHNESS_CHECKS),
                       resources=world["res"], instance=world["instance"], raise_on_error=False)
    (ev,) = r.get_asset_check_evaluations()
    assert ev.check_name == "freshness_check" and not ev.passed and ev.severity == dg.AssetCheckSeverity.ERROR


def test_store_unavailable_the_ledger_is_still_written_and_the_gap_reported(world, tmp_path):
    """Runs last (it adds 2024-02-16): the feature store is a corrupt file; the day chain still writes the
    ledger and the warehouse, and each publishing asset reports the gap in its metadata."""
    from dolphin_assets.definitions import resources
    from dolphin_assets.resources.feature_store import FeatureStoreResource
    from dolphin_assets.resources.ledger import Ledger

    bad = tmp_path / "features.sqlite"
    bad.write_bytes(b"not a sqlite file" * 64)
    res = resources(ledger=Ledger(start_day=START), feature_store=FeatureStoreResource(kind="embedded", path=str(bad)))
    day = "2024-02-16"
    r = dg.materialize(world["assets"], selection=world["chain"], partition_key=day, resources=res,
                       instance=world["instance"], raise_on_error=False,
                       run_config={"ops": {"daily_pnl_blue": {"config": {"risk_layer": "none"}}}})
    assert r.success, failure_text(r)
    meta = {m.asset_key.to_user_string(): m.event_specific_data.materialization.metadata
            for m in r.get_asset_materialization_events()}
    for asset in ("eigen_scans", "vol_regime", "capital_ledger_blue"):
        assert "feature store unavailable" in meta[asset]["store_gap"].value, asset
    assert meta["capital_ledger_blue"]["published_state"].value is False
    assert _ledger(world).entry("BLUE", day) is not None
    assert _sql(f"select count(*) n from dolphin.daily_pnl_blue where day = '{day}'").n[0] == 1

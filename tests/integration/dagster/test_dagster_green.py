"""The GREEN chain in-process on real data (spot-5m-2024): after BLUE's day, GREEN's day from its own ledger rows;
SHORT-only GREEN equals BLUE trade for trade; floors checks, DuckDB tables, DOLPHIN_STATE_GREEN / DOLPHIN_PNL_GREEN;
lineage shares scans, regime and ExF; the LONG gate refuses an unvalidated LONG leg; with a TEST-ONLY passing
record the arbiter sizes both legs."""

import numpy as np
import pandas as pd
import pytest

import dagster as dg
from tests.support.dagster import dagster_env, failure_text

HISTORY = [f"2024-01-{d:02d}" for d in range(24, 32)]
DAYS = ["2024-02-01", "2024-02-02"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    home = tmp_path_factory.mktemp("dolphin_home")
    with dagster_env(home, unset=("DOLPHIN_WAREHOUSE", "DOLPHIN_GREEN_CONFIG")):
        from dolphin_assets.assets.green import GREEN_ASSETS, GREEN_CHAIN, GREEN_CHECKS
        from dolphin_assets.checks import daily_pnl_blue_floors, eigen_scans_checks
        from dolphin_assets.definitions import ASSETS, resources
        from dolphin_assets.resources.ledger import Ledger
        from dolphin_assets.schedules import BLUE_CHAIN

        instance = dg.DagsterInstance.get()
        res = resources(ledger=Ledger(start_day=DAYS[0]))
        all_assets = [*ASSETS, eigen_scans_checks, daily_pnl_blue_floors, *GREEN_CHECKS]
        assert all(a in ASSETS for a in GREEN_ASSETS)

        def mat(day, selection, run_config=None):
            return dg.materialize(all_assets, selection=selection, partition_key=day, resources=res,
                                  instance=instance, raise_on_error=False, run_config=run_config or {})

        for d in HISTORY:
            r = mat(d, dg.AssetSelection.assets("market_bars", "eigen_scans"))
            assert r.success, failure_text(r)
        checks = {}
        for d in DAYS:
            # GREEN runs with neutral risk inputs, so BLUE (the reference) does too here
            r = mat(d, BLUE_CHAIN, {"ops": {"daily_pnl_blue": {"config": {"risk_layer": "none"}}}})
            assert r.success, failure_text(r)
            r = mat(d, GREEN_CHAIN)
            assert r.success, failure_text(r)
            checks[d] = {e.check_name: e for e in r.get_asset_check_evaluations()}
        yield {"home": home, "mat": mat, "checks": checks, "chain": GREEN_CHAIN}
        instance.dispose()


def _ledger(home):
    from dolphin.ledger import CapitalLedger

    return CapitalLedger(home / "ledger" / "ledger.sqlite")


def test_short_only_green_equals_blue_day_by_day(world):
    book = _ledger(world["home"])
    blue, green = book.current("BLUE"), book.current("GREEN")
    assert [e.day for e in green] == DAYS == [e.day for e in blue]
    for b, g in zip(blue, green):
        assert g.record.closing_equity == pytest.approx(b.record.closing_equity, abs=1e-9)
        assert len(g.record.trades) == len(b.record.trades)
    assert green[1].record.opening_equity == green[0].record.closing_equity


def test_warehouse_tables_checks_and_hot_copy(world):
    from dolphin.adapters.duckdb_sql import query
    from dolphin.store import STATE_LATEST, pnl_map, state_map
    from dolphin.adapters.store_factory import open_store_from_env

    cols, rows = query("select day, strategy, long_leg, w_short, w_long, weights_applied from dolphin.daily_pnl_green order by day")
    df = pd.DataFrame(rows, columns=cols)
    assert len(df) == len(DAYS) and (df.strategy == "GREEN").all() and not df.long_leg.any()
    assert np.allclose(df.w_short + df.w_long, 1.0) and (df.w_long > 0).all() and (df.w_short > 0).all()
    for t in ("trades_green", "capital_ledger_green"):
        query(f"select count(*) from dolphin.{t}")
    ev = world["checks"][DAYS[-1]]
    assert {"floor_profit_factor_10d", "floor_max_drawdown_55d"} <= set(ev)
    assert all(e.asset_key.to_user_string() == "daily_pnl_green" for e in ev.values())
    store = open_store_from_env()
    st = store.get(state_map("GREEN"), STATE_LATEST)
    assert st is not None and st.value["strategy"] == "GREEN", "DOLPHIN_STATE_GREEN/latest not published"
    assert st.value["capital"] == pytest.approx(_ledger(world["home"]).current("GREEN")[-1].record.closing_capital)
    assert set(store.keys(pnl_map("GREEN"))) == set(DAYS)
    assert state_map("GREEN") == "DOLPHIN_STATE_GREEN" and pnl_map("GREEN") == "DOLPHIN_PNL_GREEN"


def test_lineage_shares_scans_regime_and_exf():
    from dolphin_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    parents = {k.to_user_string() for k in graph.get(dg.AssetKey("daily_pnl_green")).parent_keys}
    assert {"market_bars", "vol_regime", "eigen_scans", "exf"} <= parents
    blue = {k.to_user_string() for k in graph.get(dg.AssetKey("daily_pnl_blue")).parent_keys}
    assert {"market_bars", "vol_regime", "eigen_scans"} <= blue
    sched = defs.get_schedule_def("green_paper_day_schedule")
    assert sched.cron_schedule == "10 0 * * *"


def test_unvalidated_long_leg_is_refused_then_runs_with_a_test_only_record(world, monkeypatch):
    from dolphin.engine.config import GREEN_CFG
    from dolphin.research.long_gate import GATE, long_leg_params
    from dolphin.research.records import ValidationRecord, config_hash, save_record

    home = world["home"]
    y = home / "green_long.yaml"
    y.write_text("preset: green\nlong_enabled: true\n")
    monkeypatch.setenv("DOLPHIN_GREEN_CONFIG", str(y))
    day = "2024-02-03"
    r = world["mat"](day, dg.AssetSelection.assets("market_bars", "eigen_scans", "vol_regime"))
    assert r.success
    r = world["mat"](day, world["chain"])
    assert not r.success
    msg = failure_text(r)
    assert "GREEN refused" in msg and "no LONG validation record exists" in msg
    assert _ledger(home).entry("GREEN", day) is None  # nothing written
    # a TEST-ONLY passing record for exactly these LONG parameters (not a validation result: marked as such)
    params = long_leg_params(GREEN_CFG.with_(long_enabled=True))
    save_record(ValidationRecord(
        leg="long", data_fingerprint="TEST-ONLY", data_set="TEST-ONLY (tests/integration/dagster/test_dagster_green.py)",
        config_hash=config_hash(params), params=params, code_version="test",
        gate={k: {"value": 0.0, "threshold": f"{op} {t}", "passed": True} for k, (op, t) in GATE.items()},
        passed=True, results={"note": "TEST-ONLY record: no validation ran"}), home)
    r = world["mat"](day, world["chain"])
    assert r.success, failure_text(r)
    from dolphin.adapters.duckdb_sql import query

    cols, rows = query(f"select long_leg, weights_applied, w_short, w_long from dolphin.daily_pnl_green "
                       f"where day = '{day}'")
    row = dict(zip(cols, rows[-1]))
    assert row["long_leg"] and row["weights_applied"] and row["w_short"] + row["w_long"] == pytest.approx(1.0)


def test_rehydration_sensor_restores_greens_hot_copy(world):
    """A store that lost GREEN's keys gets them back from the ledger on the next sensor tick."""
    from dolphin.store import STATE_LATEST, pnl_map, state_map
    from dolphin.adapters.store_factory import open_store_from_env
    from dolphin_assets.definitions import defs
    from dolphin_assets.sensors.rehydrate import store_rehydration_sensor

    store = open_store_from_env()
    before = {k: store.get(pnl_map("GREEN"), k) for k in store.keys(pnl_map("GREEN"))}
    state = store.get(state_map("GREEN"), STATE_LATEST)
    assert state is not None and set(before) >= set(DAYS)
    store.delete(state_map("GREEN"), STATE_LATEST)
    for k in before:
        store.delete(pnl_map("GREEN"), k)
    ctx = dg.build_sensor_context(definitions=defs, instance=dg.DagsterInstance.get(), resources=defs.resources)
    out = store_rehydration_sensor(ctx)
    assert "DOLPHIN_STATE_GREEN/latest" in out.skip_reason.skip_message
    assert store.get(state_map("GREEN"), STATE_LATEST) == state
    assert {k: store.get(pnl_map("GREEN"), k) for k in before} == before
    assert {e.asset_key.to_user_string() for e in out.asset_events
            if e.metadata["rehydrated"].value.startswith("DOLPHIN_")} >= {"capital_ledger_green"}

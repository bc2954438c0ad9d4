"""The GREEN capital chain: BLUE's chain for the second deployment, with the capital arbiter.

Same shape as ``dolphin_assets.assets.blue`` and the same shared upstream assets (``market_bars``,
``eigen_scans``, ``vol_regime``, and ``exf`` for the arbiter's stress term), its own ledger rows (strategy
``GREEN`` in the one capital ledger), DuckDB tables (``daily_pnl_green``, ``trades_green``,
``capital_ledger_green``), hot copy (``DOLPHIN_STATE_GREEN``, ``DOLPHIN_PNL_GREEN``) and floors checks.

The configuration is ``DOLPHIN_GREEN_CONFIG`` (default the ``green`` preset, or a YAML file), loaded through
``load_config`` at each day run: a GREEN whose LONG leg is active without a passing LONG validation record
for its exact LONG parameters fails the step with the gate's message (which record is missing or failed),
and no ledger row is written. When both legs trade, each day's leg weights come from the capital arbiter
(``dolphin.engine.arbiter``, as of the day's 00:00); SHORT-only GREEN trades at weight 1 and the day's row
records the weights the arbiter would have given, marked not applied.
"""

import os

import numpy as np
import pandas as pd
from dagster import (AssetCheckExecutionContext, AssetDep, AssetExecutionContext, AssetIn, AssetOut,
                     AssetSelection, DefaultScheduleStatus, Failure, MetadataValue, Output, asset,
                     build_schedule_from_partitioned_job, define_asset_job, multi_asset, multi_asset_check)

from dolphin.daily import floors_at, opening, run_day
from dolphin.engine.config import ConfigError
from dolphin.ledger import LedgerError
from dolphin.metrics import FLOORS
from dolphin_assets.assets.blue import DayRunConfig, export_capital_ledger, history_scans
from dolphin_assets.assets.market import DAY_COLUMN, WAREHOUSE, day_column
from dolphin_assets.checks import _specs, floor_check_name, floor_check_results
from dolphin_assets.partitions import DAILY, PREVIOUS_DAY, SCAN_HISTORY
from dolphin_assets.resources.exf_source import ExfSource
from dolphin_assets.resources.feature_store import FeatureStoreResource
from dolphin_assets.resources.ledger import Ledger
from dolphin_assets.resources.scan_dir import ScanDir

GREEN = "GREEN"


def green_config():
    """GREEN's configuration, through the gated loader (``ConfigError`` / ``LongGateError`` with the reason)."""
    from dolphin.engine.config import load_config

    cfg = load_config(os.environ.get("DOLPHIN_GREEN_CONFIG") or "green")
    if cfg.name.upper() != GREEN:
        raise ConfigError(f"DOLPHIN_GREEN_CONFIG names a {cfg.name} configuration; the green chain needs preset green")
    return cfg


@multi_asset(
    partitions_def=DAILY, group_name="green",
    outs={"daily_pnl_green": AssetOut(io_manager_key=WAREHOUSE, metadata=DAY_COLUMN, kinds={"duckdb"},
                                      dagster_type=pd.DataFrame,
                                      description="GREEN's day: engine run from the ledger's previous GREEN closing "
                                                  "state, legs sized by the capital arbiter; one row."),
          "trades_green": AssetOut(io_manager_key=WAREHOUSE, metadata=DAY_COLUMN, kinds={"duckdb"},
                                   dagster_type=pd.DataFrame, description="Trades GREEN closed that day.")},
    ins={"market_bars": AssetIn(), "vol_regime": AssetIn()},
    deps=[AssetDep("eigen_scans", partition_mapping=SCAN_HISTORY), AssetDep("exf", partition_mapping=PREVIOUS_DAY),
          AssetDep("daily_pnl_green", partition_mapping=PREVIOUS_DAY)],
)
def daily_pnl_green(context: AssetExecutionContext, config: DayRunConfig, market_bars, vol_regime, scan_dir: ScanDir,
                    ledger: Ledger, exf_source: ExfSource):
    from dolphin.engine.arbiter import arbiter_weights

    day, panel = context.partition_key, market_bars
    try:
        cfg = green_config()
    except ConfigError as exc:  # the LONG gate (or a bad file): nothing is run, nothing is written
        raise Failure(description=f"GREEN refused: {exc}") from None
    book, start = ledger.open(), ledger.first_day()
    try:
        prev = book.previous(GREEN, day, start_day=start)
    except LedgerError as exc:
        raise Failure(description=str(exc)) from None
    state, opening_equity = opening(prev, cfg)
    scans = history_scans(scan_dir.dir(), panel)
    arb = arbiter_weights(panel, scans.vel_div / panel.n_assets, cfg, exf_source)
    per_bar = arb.per_bar(panel.close_time)
    rec, res = run_day(panel, scans, cfg, day=day, state=state, opening_equity=opening_equity,
                       leg_weights=per_bar if cfg.arbitrated else None)
    day_ok = res.regime.ok[res.first_bar:]
    if not np.array_equal(day_ok, vol_regime["regime_ok"].to_numpy(bool)):
        raise Failure(description=f"vol_regime {day} disagrees with the engine's regime gate: re-materialise it")
    try:
        entry = book.record_day(GREEN, day, rec, start_day=start, run_id=context.run.run_id, rebase=config.rebase)
    except LedgerError as exc:
        raise Failure(description=str(exc)) from None
    tr, st = res.trades, res.final_state
    w = arb.frame().set_index("day").loc[day]
    row = pd.DataFrame([{
        "strategy": GREEN, "version": entry.version, "opening_equity": rec.opening_equity,
        "closing_equity": rec.closing_equity, "closing_capital": rec.closing_capital, "pnl": entry.pnl,
        "day_return": entry.ret, "trades": len(tr), "short_trades": int((tr["side"] < 0).sum()),
        "long_trades": int((tr["side"] > 0).sum()), "wins": int((tr["pnl"] > 0).sum()),
        "fees": float(tr["fees"].sum()), "funding": float(tr["funding"].sum()), "trade_pnl": float(tr["pnl"].sum()),
        "bars": rec.bars, "regime_ok_bars": int(day_ok.sum()),
        "open_position": st.position["symbol"] if st.position else "",
        "pending_order": st.pending["kind"] if st.pending else "", "peak": entry.peak, "drawdown": entry.drawdown,
        "long_leg": cfg.arbitrated, "arbiter": arb.mode, "w_short": float(w.w_short), "w_long": float(w.w_long),
        "weights_applied": cfg.arbitrated, "arb_s_vd": float(w.s_vd), "arb_s_btc": float(w.s_btc),
        "arb_stress": float(w.stress),
    }])
    row.insert(0, "day", day_column(context, 1))
    trades = tr.assign(strategy=GREEN, entry_at=pd.to_datetime(tr["entry_time"], unit="ms"),
                       exit_at=pd.to_datetime(tr["exit_time"], unit="ms"))
    trades.insert(0, "day", day_column(context, len(trades)))
    yield Output(row, output_name="daily_pnl_green", metadata={
        "opening_capital": rec.opening_equity, "closing_capital": rec.closing_equity, "pnl": entry.pnl,
        "trades": len(tr), "ledger_version": entry.version, "started_from": prev.day if prev else "initial capital",
        "legs": "SHORT + LONG (arbiter applied)" if cfg.arbitrated else "SHORT only (LONG leg not validated/enabled)",
        "w_short": float(w.w_short), "w_long": float(w.w_long),
        "engine_inputs": MetadataValue.md("\n".join(f"- {n}" for n in [*res.notes, *arb.notes]))})
    yield Output(trades, output_name="trades_green", metadata={"trades": len(trades)})


@asset(partitions_def=DAILY, group_name="green", io_manager_key=WAREHOUSE, metadata=DAY_COLUMN, kinds={"duckdb"},
       deps=["daily_pnl_green"],
       description="GREEN's capital ledger rows for the day (every version), exported from the SQLite ledger; "
                   "publishes DOLPHIN_STATE_GREEN and DOLPHIN_PNL_GREEN.")
def capital_ledger_green(context: AssetExecutionContext, ledger: Ledger,
                         feature_store: FeatureStoreResource) -> pd.DataFrame:
    return export_capital_ledger(context, ledger, feature_store, GREEN, "daily_pnl_green")


@multi_asset_check(
    specs=_specs("daily_pnl_green", [floor_check_name(s) for s in FLOORS], False,
                 [f"DESIGN.md floor on GREEN: {s.label} {s.rule} on the {s.window_days}-day window ending at the "
                  f"partition" for s in FLOORS]),
)
def daily_pnl_green_floors(context: AssetCheckExecutionContext, ledger: Ledger):
    day = context.partition_key
    start = ledger.first_day()
    entries = [e for e in ledger.open().current(GREEN, upto=day) if e.day >= start]
    yield from floor_check_results(floors_at(entries, day), asset_key="daily_pnl_green")


GREEN_ASSETS = [daily_pnl_green, capital_ledger_green]
GREEN_CHECKS = [daily_pnl_green_floors]
# only GREEN's own assets: the shared upstream day (bars, scans, regime) is BLUE's 00:05 run
GREEN_CHAIN = (AssetSelection.assets("daily_pnl_green", "trades_green", "capital_ledger_green").without_checks()
               | AssetSelection.checks(daily_pnl_green_floors))
green_paper_day_job = define_asset_job(
    "green_paper_day", selection=GREEN_CHAIN,
    description="One UTC day of the GREEN chain (engine day run with the capital arbiter, ledger, floors) on the "
                "bars, scans and regime BLUE's 00:05 run materialised.")
green_paper_day_schedule = build_schedule_from_partitioned_job(
    green_paper_day_job, hour_of_day=0, minute_of_hour=10, name="green_paper_day_schedule",
    default_status=DefaultScheduleStatus.STOPPED)

"""The BLUE capital chain: one engine day run per partition, from the previous day's state in the ledger.

``daily_pnl_blue`` runs the day and appends it to the capital ledger in the same step (the state
transition and the day's result are one record), so no later day can start from a half-written day.
It depends on its own previous partition: Dagster then runs backfills in day order. ``capital_ledger_blue``
exports the ledger's rows (all versions) to DuckDB and publishes the hot copy to the feature store.
"""

import numpy as np
import pandas as pd
from dagster import (AssetDep, AssetExecutionContext, AssetIn, AssetOut, Config, Failure, MetadataValue, Output,
                     asset, multi_asset)

from dolphin.daily import RISK_CARRY_KEY, RISK_LAYER_CHOICES, opening, run_risk_day
from dolphin.ledger import LedgerError
from dolphin.scanner import read_scans
from dolphin.store import STATE_LATEST, Record, pnl_map, publish_if_newer, state_map
from dolphin.store.records import pnl_record, state_record
from dolphin.timeutil import day_start_ms
from dolphin.engine.config import POSTURE_NAMES
from dolphin.timeutil import DAY_MS, day_str
from dolphin_assets.assets.market import DAY_COLUMN, WAREHOUSE, day_column
from dolphin_assets.partitions import DAILY, PREVIOUS_DAY, SCAN_HISTORY
from dolphin.store.records import ledger_is_newer
from dolphin_assets.publish import publish_or_gap
from dolphin_assets.resources.exf_source import ExfSource
from dolphin_assets.resources.feature_store import FeatureStoreResource
from dolphin_assets.resources.ledger import Ledger
from dolphin_assets.resources.market_data import MarketData
from dolphin_assets.resources.scan_dir import ScanDir
from dolphin_assets.settings import ENGINE_CONFIG, STRATEGY


class DayRunConfig(Config):
    rebase: bool = False  # re-running a day whose result changed voids the later days (see dolphin.ledger)


class BlueDayRunConfig(DayRunConfig):
    # full: ACB boost + adverse-turn exit, MC forewarner, survival stack (dolphin backtest --risk-layer full);
    # acb: the boost and the exit only; none: neutral risk inputs, for comparison (in a separate DOLPHIN_HOME:
    # a chain keeps one risk layer, its carried risk state belongs to it)
    risk_layer: str = "full"


def risk_day_inputs(day: str, layer: str, exf_source, scan_dir, market_data) -> tuple:
    """The inputs of ``run_risk_day`` as of ``day`` and what they were, for the metadata: the day's ACB
    state (the ``acb_state`` asset's computation), the MC envelopes for the day and the next (the
    ``mc_envelope`` asset's computation, as of each day's 00:00; the scan at the next midnight closes in
    this day), the recorded ExF history for DVOL (Cat4). An envelope that cannot be computed (too few days
    of data) is absent, which the forewarner counts as ORANGE, as in a backtest."""
    from dolphin_assets.assets.risk import MCEnvelopeConfig, acb_for_day, envelope_for

    kw, lines = {}, []
    st = acb_for_day(exf_source, scan_dir, day)
    kw["acb_state"] = st
    lines.append(f"ACB: acb_state {day} (as of 00:00): boost {st.boost:.4f}, beta {st.beta:.4f}, ExF coverage "
                 f"{st.exf_coverage:.2f}, regime days {st.regime_days}; then the day's scans (acb_on_scan)")
    if layer == "full":
        envs, d0 = {}, day_start_ms(day)
        for d in (d0, d0 + DAY_MS):
            try:
                env = envelope_for(market_data, scan_dir, day_str(d), MCEnvelopeConfig())[0]
                lines.append(f"MC: envelope for {day_str(d)}: {env.status} (catastrophic_prob "
                             f"{env.catastrophic_prob:.3f}, {env.n_days} days)")
            except Failure as exc:
                env = None
                lines.append(f"MC: no envelope for {day_str(d)} (counted ORANGE): {exc.description}")
            envs[d] = env
        kw["mc_envelopes"] = envs
        exf = None
        if exf_source.kind == "recorded":
            try:
                exf = exf_source.history()
            except FileNotFoundError as exc:
                lines.append(f"Cat4: no ExF history ({exc}); DVOL from <data>/exf/dvol_btc.csv if present")
        kw["exf"] = exf
        if exf is not None:
            lines.append("Cat4: DVOL from the recorded ExF history (dvol_btc), day D's value from D+1 00:00")
        elif exf_source.kind == "live":
            lines.append("Cat4: DVOL from <data>/exf/dvol_btc.csv (the live source keeps no history)")
        lines.append("EsoF: advisory (DESIGN.md), not an engine input")
        lines.append("Cat5: the chain's own mark-to-market equity against its highest close of the last "
                     f"{ENGINE_CONFIG.cat5_peak_days:g} days (carried in the ledger)")
    return kw, lines


def history_scans(scan_dir, panel, first_partition: str | None = None):
    """The scans row-aligned with the panel (day + history), from the eigen_scans Parquet files. History days
    before ``first_partition`` (DOLPHIN_PARTITION_START later than the data start) are no partitions, so no
    eigen_scans file can exist for them: then the panel is scanned here (the same scanner over the same
    bars), instead of a chain that can never start."""
    try:
        scans = read_scans(scan_dir, int(panel.open_time[0]), int(panel.open_time[-1]))
    except FileNotFoundError:
        scans = None
    if scans is not None and len(scans) == panel.n_bars and np.array_equal(scans.open_time, panel.open_time):
        return scans
    days = [day_str(int(d) * DAY_MS) for d in np.unique(panel.open_time // DAY_MS)]
    missing = [d for d in days if not (scan_dir / f"scans_{d}.parquet").exists()]
    if missing and first_partition is not None and all(d < first_partition for d in missing):
        from dolphin.scanner.core import scan

        return scan(panel, start_ms=int(panel.open_time[0]))
    what = (f"missing for {', '.join(missing)}" if missing
            else f"not aligned with market_bars in {days[0]} .. {days[-1]}")
    raise Failure(description=f"eigen_scans {what}: materialise eigen_scans for those days first "
                              f"(a day's engine run reads the scans of the {len(days) - 1} days before it)")


@multi_asset(
    partitions_def=DAILY, group_name="blue",
    outs={"daily_pnl_blue": AssetOut(io_manager_key=WAREHOUSE, metadata=DAY_COLUMN, kinds={"duckdb"},
                                     dagster_type=pd.DataFrame,
                                     description="BLUE's day: engine run from the ledger's previous closing "
                                                 "state (capital, open position, pending order); one row."),
          "trades_blue": AssetOut(io_manager_key=WAREHOUSE, metadata=DAY_COLUMN, kinds={"duckdb"},
                                  dagster_type=pd.DataFrame, description="Trades BLUE closed that day.")},
    ins={"market_bars": AssetIn(), "vol_regime": AssetIn()},
    # the risk layer's inputs as of the day (lineage; the day recomputes them with the same code, see
    # risk_day_inputs): ExF (DVOL) and EsoF (advisory), the day's ACB state, the MC envelope
    deps=[AssetDep("eigen_scans", partition_mapping=SCAN_HISTORY),
          AssetDep("daily_pnl_blue", partition_mapping=PREVIOUS_DAY),
          AssetDep("exf", partition_mapping=PREVIOUS_DAY), AssetDep("esof"), AssetDep("acb_state"),
          AssetDep("mc_envelope")],
)
def daily_pnl_blue(context: AssetExecutionContext, config: BlueDayRunConfig, market_bars, vol_regime,
                   scan_dir: ScanDir, ledger: Ledger, exf_source: ExfSource, market_data: MarketData):
    day, cfg, panel = context.partition_key, ENGINE_CONFIG, market_bars
    book, start = ledger.open(), ledger.first_day()
    try:
        prev = book.previous(STRATEGY, day, start_day=start)
    except LedgerError as exc:
        raise Failure(description=str(exc)) from None
    state, opening_equity = opening(prev, cfg)
    scans = history_scans(scan_dir.dir(), panel, DAILY.get_first_partition_key())
    layer = config.risk_layer
    if layer not in RISK_LAYER_CHOICES:
        raise Failure(description=f"risk_layer {layer!r}: expected one of {', '.join(RISK_LAYER_CHOICES)}")
    kw, risk_lines = risk_day_inputs(day, layer, exf_source, scan_dir.dir(), market_data) if layer != "none" \
        else ({}, ["none: APEX, MC GREEN, boost 1, Rm 1 (comparison run)"])
    carried = bool(state.extra.get(RISK_CARRY_KEY))
    try:
        rec, rr = run_risk_day(panel, scans, cfg, day=day, state=state, opening_equity=opening_equity, layer=layer,
                               **kw)
    except ValueError as exc:  # a chain run with another risk layer
        raise Failure(description=str(exc)) from None
    res = rr.result
    if layer == "full":
        tip = {k: round(v[0], 4) for k, v in rr.time_in_posture().items() if v[0] > 0}
        risk_lines += [f"risk state: {'carried from ' + prev.day if carried else 'fresh (APEX, peak = opening equity)'}",
                       f"posture at the close: {POSTURE_NAMES[rr.carry['posture']]}, Rm {rr.carry['rm']:.3f}; "
                       f"time in posture {tip}; posture changes {len(rr.posture_changes)}"]
    if layer != "none":
        risk_lines.append(f"ACB adverse-turn exits: {rr.acb_adverse_exits}")
    day_ok = res.regime.ok[res.first_bar:]
    if not np.array_equal(day_ok, vol_regime["regime_ok"].to_numpy(bool)):
        raise Failure(description=f"vol_regime {day} disagrees with the engine's regime gate: re-materialise it")
    try:
        entry = book.record_day(STRATEGY, day, rec, start_day=start, run_id=context.run.run_id, rebase=config.rebase)
    except LedgerError as exc:
        raise Failure(description=str(exc)) from None

    tr = res.trades
    st = res.final_state
    row = pd.DataFrame([{
        "strategy": STRATEGY, "version": entry.version, "opening_equity": rec.opening_equity,
        "closing_equity": rec.closing_equity, "closing_capital": rec.closing_capital, "pnl": entry.pnl,
        "day_return": entry.ret, "trades": len(tr), "wins": int((tr["pnl"] > 0).sum()), "fees": float(tr["fees"].sum()),
        "funding": float(tr["funding"].sum()), "trade_pnl": float(tr["pnl"].sum()), "bars": rec.bars,
        "regime_ok_bars": int(day_ok.sum()), "open_position": st.position["symbol"] if st.position else "",
        "pending_order": st.pending["kind"] if st.pending else "", "peak": entry.peak, "drawdown": entry.drawdown,
    }])
    row.insert(0, "day", day_column(context, 1))
    trades = tr.assign(strategy=STRATEGY, entry_at=pd.to_datetime(tr["entry_time"], unit="ms"),
                       exit_at=pd.to_datetime(tr["exit_time"], unit="ms"))
    trades.insert(0, "day", day_column(context, len(trades)))
    yield Output(row, output_name="daily_pnl_blue", metadata={
        "opening_capital": rec.opening_equity, "closing_capital": rec.closing_equity, "pnl": entry.pnl,
        "trades": len(tr), "ledger_version": entry.version, "started_from": prev.day if prev else "initial capital",
        "carried": MetadataValue.json({"position": st.position, "pending": st.pending}),
        "risk_layer": layer, "risk_inputs": MetadataValue.md("\n".join(f"- {n}" for n in risk_lines)),
        "engine_inputs": MetadataValue.md("\n".join(f"- {n}" for n in res.notes))})
    yield Output(trades, output_name="trades_blue", metadata={"trades": len(trades)})


def _ledger_frame(rows) -> pd.DataFrame:
    out = []
    for e in rows:
        r = e.record
        out.append({"day": pd.Timestamp(e.day), "strategy": e.strategy, "seq": e.seq, "version": e.version,
                    "kind": e.kind, "superseded": e.superseded, "recorded_at": e.recorded_at, "run_id": e.run_id,
                    "note": e.note, "opening_equity": r.opening_equity if r else np.nan,
                    "closing_equity": r.closing_equity if r else np.nan,
                    "closing_capital": r.closing_capital if r else np.nan,
                    "peak": e.peak if r else np.nan, "drawdown": e.drawdown if r else np.nan,
                    "n_trades": r.n_trades if r else 0})
    df = pd.DataFrame(out)
    df["day"] = df["day"].astype("datetime64[ns]")
    return df


def _publish_hot_copy(store, strategy: str, state: Record, current, day: str) -> bool:
    """DOLPHIN_STATE_<S>/latest (compare-and-set by ledger sequence) and DOLPHIN_PNL_<S>/<day>; days voided
    by a rebase leave the hot copy too. The records are dolphin.store.records' (rehydration rebuilds the same
    ones from the ledger)."""
    published = publish_if_newer(store, state_map(strategy), STATE_LATEST, state, newer=ledger_is_newer)
    pmap = pnl_map(strategy)
    for e in current:
        if e.day == day:
            store.put(pmap, day, pnl_record(strategy, e))
    live = {e.day for e in current}
    for k in store.keys(pmap):
        if k not in live:
            store.delete(pmap, k)
    return published


def export_capital_ledger(context, ledger: Ledger, feature_store: FeatureStoreResource, strategy: str,
                          upstream: str) -> pd.DataFrame:
    """A chain's ``capital_ledger_<s>`` step (BLUE's and GREEN's): the day's ledger rows (every version) as the
    warehouse frame, and the hot copy published. ``upstream``: the day asset that writes the ledger."""
    day = context.partition_key
    book = ledger.open()
    rows = book.history(strategy, day)
    if book.entry(strategy, day) is None:
        raise Failure(description=f"the capital ledger has no current result for {strategy} {day}: "
                                  f"materialise {upstream} for {day} first")
    current = book.current(strategy)
    last, seq = current[-1], book.last_seq()
    state = state_record(strategy, last, seq)
    # the ledger (the truth) is written already; an unavailable store only leaves a reported gap
    published, gap = publish_or_gap(context, f"{strategy} state/pnl",
                                    lambda: _publish_hot_copy(feature_store.open(), strategy, state, current, day))
    context.add_output_metadata({"versions": len(rows), "chain_last_day": last.day,
                                 "capital": last.record.closing_capital, "peak": last.peak,
                                 "drawdown": last.drawdown, "published_state": published,
                                 "store_gap": gap})
    return _ledger_frame(rows)


@asset(partitions_def=DAILY, group_name="blue", io_manager_key=WAREHOUSE, metadata=DAY_COLUMN, kinds={"duckdb"},
       deps=["daily_pnl_blue"],
       description="The capital ledger's rows for the day (every version; the latest is the truth), "
                   "exported from the SQLite ledger; publishes DOLPHIN_STATE_BLUE and DOLPHIN_PNL_BLUE.")
def capital_ledger_blue(context: AssetExecutionContext, ledger: Ledger,
                        feature_store: FeatureStoreResource) -> pd.DataFrame:
    return export_capital_ledger(context, ledger, feature_store, STRATEGY, "daily_pnl_blue")

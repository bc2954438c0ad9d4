"""One strategy day: the history a day needs, the engine run from a carried state, the ledger's daily table.

What the Dagster day partitions (and the paper day) do, as plain functions: no Dagster, no store, no I/O.
A day is a UTC day by bar OPEN time (the scanner's and the metrics' convention).
"""

import math

import numpy as np
import pandas as pd

from dolphin.data.contracts import DataError
from dolphin.engine.backtest import run_backtest
from dolphin.engine.state import EngineState
from dolphin.capital import DayRecord, LedgerEntry
from dolphin.metrics import FloorReport, empty_trades, evaluate_floors_at
from dolphin.scanner.core import WARMUP_BARS
from dolphin.timeutil import DAY_MS, day_start_ms, fmt_ms


def history_bars(cfg) -> int:
    """Bars before a day that its scans (seed window) and the engine run (vol regime percentile over
    ``vol_lookback`` past values of a ``vol_window`` realised vol, crossing at the first bar) need so
    that the day's result equals the continuous run's (tests/unit/dolphin/engine/test_engine_state.py)."""
    return max(WARMUP_BARS, cfg.vol_lookback + cfg.vol_window + 2)


def history_days(cfg, bar_ms: int) -> int:
    return math.ceil(history_bars(cfg) / (DAY_MS // int(bar_ms)))


def check_day_panel(panel, day: str) -> None:
    """The panel's rows after its warm-up must be exactly the bars of ``day`` (a day the data does not
    cover completely yet is refused, never run short)."""
    t0 = day_start_ms(day)
    want = DAY_MS // panel.bar_ms
    rows = panel.open_time[panel.warmup_bars:]
    if len(rows) == want and rows[0] == t0 and rows[-1] == t0 + DAY_MS - panel.bar_ms:
        return
    have = f"{len(rows)} bar(s) {fmt_ms(rows[0])} .. {fmt_ms(rows[-1])}" if len(rows) else "no bars"
    raise DataError(f"day {day} is not complete in the data: {want} bars expected, {have}")


def run_day(panel, scans, cfg, *, day: str, state: EngineState, opening_equity: float,
            leg_weights=None) -> tuple:
    """Run ``day`` (the panel's rows after its warm-up) from ``state``; positions and pending orders stay
    open at the end (carried to the next day). ``leg_weights``: GREEN's (T, 2) arbiter weights per scan.
    Returns (DayRecord, BacktestResult)."""
    check_day_panel(panel, day)
    res = run_backtest(panel, scans, cfg, trade_from_ms=day_start_ms(day) + panel.bar_ms, state=state,
                       close_at_end=False, leg_weights=leg_weights)
    rec = DayRecord(
        opening_equity=float(opening_equity),
        closing_equity=float(res.equity[-1]),
        closing_capital=float(res.final_state.capital),
        opening_state=state.to_dict(),
        closing_state=res.final_state.to_dict(),
        trades=res.trades.to_dict(orient="records"),
        bars=int(panel.n_bars - res.first_bar),
    )
    return rec, res


RISK_LAYER_CHOICES = ("full", "acb", "none")
RISK_CARRY_KEY = "risk"  # EngineState.extra key of the carried risk state (in the ledger's closing_state)


def day_boost(acb_state, scans, first_bar: int, carried: float, acb_cfg=None) -> np.ndarray:
    """Per-bar ACB boost of a day panel: ``carried`` (the previous day's last boost) on the history rows, then
    the day's daily state (``acb_state``, as of 00:00) updated scan by scan (``dolphin.acb.acb_on_scan``),
    which is what ``dolphin.acb.boost_series`` computes in a backtest."""
    from dolphin.acb import DEFAULT, acb_on_scan

    cfg = acb_cfg or DEFAULT
    v = np.asarray(scans.velocity[:, scans.window_index(750)], dtype=np.float64)
    ts = np.asarray(scans.open_time, dtype=np.int64) + int(scans.bar_ms)
    out = np.full(len(scans), float(carried))
    st = acb_state
    for i in range(first_bar, len(scans)):
        st = acb_on_scan(st, float(v[i]), int(ts[i]), cfg)
        out[i] = st.boost
    return out


def run_risk_day(panel, scans, cfg, *, day: str, state: EngineState, opening_equity: float, layer: str = "full",
                 acb_state=None, mc_envelopes: dict | None = None, exf=None, dvol=None, boost=None,
                 leg_weights=None) -> tuple:
    """``run_day`` under the risk layer ``layer`` (``dolphin.engine.risklayer.RiskLayers.preset``), carrying
    the risk state (posture controller, Cat5 rolling peak, posture / Rm / Cats in force, last boost) from
    the previous day in ``state.extra['risk']`` and storing the day's in the closing state's. Inputs as of
    the day: ``acb_state`` (its 00:00 daily ACB state; the boost then follows the day's scans) or ``boost``
    (T,), ``mc_envelopes`` {day ms: MCEnvelope | None} for the day and the next (the scan at the next
    00:00 closes in the day), ``exf`` / ``dvol`` for Cat4 (see ``run_risk_backtest``).
    Returns (DayRecord, RiskBacktestResult)."""
    from dolphin.engine.risklayer import RiskLayers, run_risk_backtest

    if layer not in RISK_LAYER_CHOICES:
        raise ValueError(f"risk_layer must be one of {RISK_LAYER_CHOICES}, got {layer!r}")
    check_day_panel(panel, day)
    layers = RiskLayers.preset(layer)
    # a day without a carried risk state (the chain's first day, a chain run without the layer so far)
    # starts it fresh: APEX, the opening equity as the Cat5 peak
    carry = dict(state.extra.get(RISK_CARRY_KEY) or {})
    if carry and carry.get("layers") != layers.describe():
        raise ValueError(f"day {day}: the previous day ran with {carry.get('layers')!r}, this run asks for "
                         f"{layers.describe()!r}; a chain keeps one risk layer (compare in a separate ledger, "
                         f"or rebase from the chain's first day)")
    if layers.acb and boost is None:
        if acb_state is None:
            raise ValueError(f"day {day}: the ACB layer needs the day's acb_state (or a boost series)")
        boost = day_boost(acb_state, scans, panel.warmup_bars, carry.get("boost", 1.0))
    if layers.mc and mc_envelopes is None:
        raise ValueError(f"day {day}: the MC layer needs the envelopes of the day and the next")
    rr = run_risk_backtest(panel, scans, cfg, layers=layers, exf=exf, dvol=dvol,
                           trade_from_ms=day_start_ms(day) + panel.bar_ms, state=state, close_at_end=False,
                           carry=carry or None, mc_envelopes=mc_envelopes, boost=boost, leg_weights=leg_weights)
    res = rr.result
    closing = res.final_state
    if layer != "none":  # 'none' leaves the closing state as the plain engine's (and as chains before the layer)
        closing.extra = {**closing.extra, RISK_CARRY_KEY: rr.carry}
    rec = DayRecord(
        opening_equity=float(opening_equity),
        closing_equity=float(res.equity[-1]),
        closing_capital=float(closing.capital),
        opening_state=state.to_dict(),
        closing_state=closing.to_dict(),
        trades=res.trades.to_dict(orient="records"),
        bars=int(panel.n_bars - res.first_bar),
    )
    return rec, rr


def opening(entry: LedgerEntry | None, cfg) -> tuple:
    """(state, opening equity) a day starts from: the previous day's close, or initial capital."""
    if entry is None:
        return EngineState.fresh(cfg.initial_capital), float(cfg.initial_capital)
    return EngineState.from_dict(entry.record.closing_state), float(entry.record.closing_equity)


def ledger_trades(entries) -> pd.DataFrame:
    rows = [t for e in entries for t in e.record.trades]
    return pd.DataFrame(rows) if rows else empty_trades()


def ledger_daily(entries) -> pd.DataFrame:
    """The ledger's current days as a ``dolphin.metrics.daily_table`` frame (one row per day)."""
    days = np.array([day_start_ms(e.day) for e in entries], dtype=np.int64)
    trades = [pd.DataFrame(e.record.trades) if e.record.trades else empty_trades() for e in entries]

    def per_day(f):
        return np.array([float(f(t)) if len(t) else 0.0 for t in trades])

    start = np.array([e.record.opening_equity for e in entries], dtype=float)
    end = np.array([e.record.closing_equity for e in entries], dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ret = np.where(start > 0, end / start - 1.0, np.nan)
    return pd.DataFrame({
        "date": [e.day for e in entries], "day_ms": days, "start_equity": start, "end_equity": end,
        "pnl": end - start, "return": ret, "trades": np.array([len(t) for t in trades], dtype=np.int64),
        "wins": per_day(lambda t: (t["pnl"] > 0).sum()).astype(np.int64), "fees": per_day(lambda t: t["fees"].sum()),
        "funding": per_day(lambda t: t["funding"].sum()), "trade_pnl": per_day(lambda t: t["pnl"].sum()),
        "bars": np.array([e.record.bars for e in entries], dtype=np.int64),
    })


def floors_at(entries, day: str) -> FloorReport:
    """The DESIGN.md floors on the windows ending on ``day``, from the ledger's days up to ``day``."""
    entries = [e for e in entries if e.day <= day]
    if not entries or entries[-1].day != day:
        raise ValueError(f"the ledger has no current result for {day}")
    return evaluate_floors_at(ledger_daily(entries), ledger_trades(entries), day)

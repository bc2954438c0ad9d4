"""Run the engine over a panel and its scans: the shared backtest used by the CLI, Dagster and tests."""

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dolphin.engine.config import EngineConfig
from dolphin.engine.funding import funding_grid
from dolphin.engine.inputs import FlowProvider, NeutralFlowProvider, RiskInputs
from dolphin.engine.kernel import (DECISION_NAMES, EXIT_REASONS, R_END, R_LIQUIDATION, R_STOP, R_TP, pack_params,
                                   run_kernel, unit_leg_weights)
from dolphin.engine.regime import VolRegime, vol_regime
from dolphin.engine.state import EngineState, StateError


@dataclass
class BacktestResult:
    config: EngineConfig
    symbols: list
    bar_ms: int
    open_time: np.ndarray  # (T,) bar open ms
    ts: np.ndarray  # (T,) bar close ms (when each scan/decision is known)
    equity: np.ndarray  # (T,) mark-to-market at each close
    trades: pd.DataFrame
    decision: np.ndarray  # (T,) decision code per scan
    decision_asset: np.ndarray  # (T,) asset index or -1
    decision_leverage: np.ndarray  # (T,)
    position_asset: np.ndarray  # (T,) asset held at the close, -1 flat
    vel_div: np.ndarray  # vel_div / N, the quantity the thresholds apply to
    regime: VolRegime
    risk: RiskInputs
    final_state: EngineState
    first_bar: int  # first simulated row (earlier rows are history)
    notes: list = field(default_factory=list)
    leg_weights: np.ndarray | None = None  # (T, 2) arbiter weights [short, long] per scan; None = 1.0 (BLUE)

    @property
    def final_capital(self) -> float:
        """Mark-to-market equity at the last close."""
        return float(self.equity[-1]) if len(self.equity) else self.final_state.capital

    def decisions_frame(self) -> pd.DataFrame:
        """One row per scan with a decision (for truncation tests and audits)."""
        idx = np.flatnonzero(self.decision)
        return pd.DataFrame({
            "ts": self.ts[idx],
            "decision": [DECISION_NAMES[d] for d in self.decision[idx]],
            "asset": [self.symbols[a] if a >= 0 else "" for a in self.decision_asset[idx]],
            "leverage": self.decision_leverage[idx],
        })


_CLOSE_STAMPED = np.array([R_TP, R_LIQUIDATION, R_END, R_STOP])


def _trades_frame(out, symbols, open_time, bar_ms) -> pd.DataFrame:
    (n, e, x, a, s, notional, lev, epx, xpx, fees, fund, pnl, reason, capb, sig, post, maker) = out[:17]
    n = int(n)
    t0 = int(open_time[0]) if len(open_time) else 0
    return pd.DataFrame({
        # fills happen at the open of the bar after the signal; a carried position has a negative entry bar
        "entry_time": t0 + e[:n] * bar_ms,
        # market exits fill at a bar's open; TP / liquidation happen inside the bar (stamped at its
        # close, the first moment they are known for sure); end-of-data closes at the last close
        "exit_time": t0 + x[:n] * bar_ms + np.where(np.isin(reason[:n], _CLOSE_STAMPED), bar_ms, 0),
        "entry_bar": e[:n],
        "exit_bar": x[:n],
        "asset": [symbols[i] for i in a[:n]],
        "side": s[:n],
        "notional": notional[:n],
        "leverage": lev[:n],
        "entry_price": epx[:n],
        "exit_price": xpx[:n],
        "fees": fees[:n],
        "funding": fund[:n],
        "pnl": pnl[:n],
        "exit_reason": [EXIT_REASONS.get(int(r), "open") for r in reason[:n]],
        "capital_before": capb[:n],
        "entry_signal": sig[:n],
        "entry_posture": post[:n],
        "maker_entry": maker[:n],
    })


@dataclass
class PreparedInputs:
    p: np.ndarray
    tradable: np.ndarray
    vd: np.ndarray
    loadings: np.ndarray
    regime: object
    flow: np.ndarray
    funding: np.ndarray
    first_bar: int
    state: np.ndarray  # kernel vector relative to row 0
    notes: list


def prepare_inputs(panel, scans, cfg: EngineConfig, risk_source: str, *, funding_dir, trade_from_ms,
                   state: EngineState | None, acb_adverse_exit: bool, acb_drop: float,
                   flow=None) -> PreparedInputs:
    """Everything the kernel needs besides the risk arrays (``run_backtest`` and the risk layer's chunked runs)."""
    T = panel.n_bars
    if len(scans) != T or not np.array_equal(scans.timestamp, panel.close_time):
        raise ValueError("scans are not row-aligned with the panel (scan timestamp = bar close time)")
    flow_feat = (flow or NeutralFlowProvider()).features(panel.open_time, panel.symbols)
    notes = [f"order-book/flow: {flow_feat.source}", f"risk inputs: {risk_source}"]
    if funding_dir is not None and cfg.charge_funding:
        funding, covered = funding_grid(funding_dir, panel.symbols, panel.open_time, panel.bar_ms)
        missing = sorted(set(panel.symbols) - set(covered))
        notes.append(f"funding charged from {funding_dir} for {len(covered)} symbols"
                     + (f"; no funding data for {', '.join(missing)}" if missing else ""))
    else:
        funding = np.zeros((T, panel.n_assets))
        notes.append("funding: no funding data for this set (spot candles): not charged")
    regime = vol_regime(panel.close, cfg.vol_window, cfg.vol_lookback, cfg.vol_percentile)
    w = scans.window_index(cfg.rank_window)
    loadings = np.ascontiguousarray(scans.loadings[:, w, :])
    tradable = ~(panel.filled | panel.excluded)
    first_bar = 0 if trade_from_ms is None else int(np.searchsorted(panel.close_time, trade_from_ms))
    state = state or EngineState.fresh(cfg.initial_capital)
    if state.as_of_ms is not None and first_bar < T and state.as_of_ms > int(panel.close_time[first_bar]) - panel.bar_ms:
        raise StateError(f"state is as of {state.as_of_ms} ms but the run starts at bar close "
                         f"{int(panel.close_time[first_bar])} ms: runs must follow each other in order")
    vec = state.to_vector(panel.symbols, int(panel.open_time[0]), panel.bar_ms)
    vd = np.ascontiguousarray(scans.vel_div / panel.n_assets)
    return PreparedInputs(pack_params(cfg, acb_adverse_exit, acb_drop), tradable, vd, loadings, regime,
                          flow_feat.imbalance, funding, first_bar, vec, notes)


def run_backtest(panel, scans, cfg: EngineConfig, *, risk: RiskInputs | None = None,
                 flow: FlowProvider | None = None, funding_dir=None, trade_from_ms: int | None = None,
                 state: EngineState | None = None, close_at_end: bool = True, acb_adverse_exit: bool = False,
                 acb_drop: float = 0.2, leg_weights: np.ndarray | None = None) -> BacktestResult:
    """``scans`` must be row-aligned with ``panel`` (one scan per bar; see dolphin.scanner).

    ``trade_from_ms``: bar close time of the first simulated bar; earlier rows are history only (ranking
    lookback, vel_div crossing, regime statistics). ``state``: carried capital / position / pending order
    (default: flat with ``cfg.initial_capital``). ``close_at_end``: close an open position at the last
    close (a backtest) or leave it in ``final_state`` (a day partition / a live session).
    ``acb_adverse_exit``: exit an open position when the ACB boost fell by more than ``acb_drop`` since entry.
    ``leg_weights``: (T, 2) capital arbiter weights [short, long] per scan (``dolphin.engine.arbiter``)."""
    T = panel.n_bars
    lw = check_leg_weights(leg_weights, T)
    risk = risk or RiskInputs.defaults(T)
    risk.check(T)
    pr = prepare_inputs(panel, scans, cfg, risk.source, funding_dir=funding_dir, trade_from_ms=trade_from_ms,
                        state=state, acb_adverse_exit=acb_adverse_exit, acb_drop=acb_drop, flow=flow)
    out = run_kernel(pr.p, panel.open, panel.high, panel.low, panel.close, pr.tradable, pr.vd, pr.loadings,
                     pr.regime.ok, risk.posture, risk.mc_status, risk.acb_boost, risk.rm, pr.flow, pr.funding,
                     pr.first_bar, pr.state, close_at_end, lw)
    vd_norm, regime, first_bar, notes = pr.vd, pr.regime, pr.first_bar, pr.notes
    trades = _trades_frame(out, panel.symbols, panel.open_time, panel.bar_ms)
    equity, pos_asset, decision, dec_asset, dec_lev, vec_out = out[17:]
    final = EngineState.from_vector(vec_out, panel.symbols, int(panel.open_time[0]), panel.bar_ms,
                                    int(panel.close_time[-1]))
    return BacktestResult(cfg, list(panel.symbols), panel.bar_ms, panel.open_time, panel.close_time, equity,
                          trades, decision, dec_asset, dec_lev, pos_asset, vd_norm, regime, risk, final,
                          first_bar, notes, leg_weights)


def check_leg_weights(leg_weights, T: int) -> np.ndarray:
    """(T, 2) float64 leg weights [short, long], each in (0, 1]; None = 1.0 for both (BLUE's sizing)."""
    if leg_weights is None:
        return unit_leg_weights(T)
    lw = np.ascontiguousarray(leg_weights, dtype=np.float64)
    if lw.shape != (T, 2):
        raise ValueError(f"leg weights: shape {lw.shape}, expected ({T}, 2)")
    if not np.all(np.isfinite(lw)) or np.any(lw <= 0) or np.any(lw > 1):
        raise ValueError("leg weights must be finite and in (0, 1]")
    return lw

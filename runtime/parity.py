"""Replay ↔ backtest parity: the Nautilus replay against ``dolphin.engine.backtest.run_backtest``.

Must be EQUAL: the scans the strategy computed live (bit for bit), the decision at every bar
(kind, asset, leverage bits), and the trade list's entries (time, asset, side) and exits (time,
reason).

May differ, each for a named reason, by a checked amount:

SIZING   The replay fixes an order's quantity at submission, notional / close of the signal bar
         (a Binance USDT-M order carries a base quantity; there are no quote-quantity orders); the
         kernel sizes at its fill price, notional / (open[t+1] ± slippage). So
         qty_replay / qty_kernel = r = (capital_replay / capital_kernel) × (fill price / signal
         close), and the capital ratio itself is the compounded r-effect of earlier trades. Gross
         PnL, fees and funding are linear in the quantity, so they must equal r × the kernel's
         (checked to ``tol``); r - 1 is reported (a few bps here).
PRICE    Nautilus keeps prices on the instrument's grid: a derived price (TP = entry × (1 ± 95 bps),
         open × (1 ± slippage)) is rounded to it. ``runtime.instruments`` derives a grid of >= 10
         significant digits, so the relative price difference must stay < ``tol``.
GAP_TP   When a bar opens beyond a resting TP, the kernel fills at that better open; Nautilus fills a
         resting limit at its limit price (as a continuous order book does). Such trades must show
         the Nautilus exit exactly at its TP price; PnL then differs by that gap. Counted.
LIQ      Nautilus does not liquidate. A kernel liquidation makes the trade lists diverge: reported
         as a failure (choose a window without one, or fix the venue model).
"""

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

KEY = ["entry_time", "exit_time", "asset", "side", "exit_reason"]
DECISION_COLS = ["ts", "decision", "asset", "leverage"]
TOL = 1e-9  # relative (prices, sizing) and relative-to-notional (PnL, fees, funding)
ABS_USDT = 1e-6  # Nautilus Money is rounded to 1e-8 USDT per fill; a few fills per trade


@dataclass
class ParityReport:
    n_kernel: int
    n_replay: int
    scans_equal: bool
    vol_ok_equal: bool
    decisions_equal: bool
    keys_equal: bool
    max_price_rel: float = np.nan
    max_sizing_rel: float = np.nan  # |r / r_expected - 1|
    max_pnl_rel: float = np.nan  # |pnl_n - r pnl_k| / notional_n (non-GAP_TP trades)
    max_fees_rel: float = np.nan
    max_funding_rel: float = np.nan
    r_min: float = np.nan
    r_max: float = np.nan
    gap_tp: int = 0
    liquidations: int = 0
    capital_kernel: float = np.nan
    capital_replay: float = np.nan
    account_balance: float = np.nan
    problems: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        lines = [
            f"trades: backtest {self.n_kernel}, replay {self.n_replay}; entries/exits "
            f"{'IDENTICAL' if self.keys_equal else 'DIFFER'} (time, asset, side, exit time, reason)",
            f"live scans bit-identical to batch: {self.scans_equal}; vol regime identical: {self.vol_ok_equal}; "
            f"decisions identical: {self.decisions_equal}",
        ]
        if self.keys_equal and self.n_kernel:
            lines += [
                f"PRICE   max |entry/exit price rel diff| = {self.max_price_rel:.2e} (tol {TOL:g})",
                f"SIZING  qty ratio r = replay/backtest in [{self.r_min:.6f}, {self.r_max:.6f}]; "
                f"|r / (capital ratio x fill/close) - 1| <= {self.max_sizing_rel:.2e}",
                f"        after scaling by r: max |pnl diff| = {self.max_pnl_rel:.2e}, fees {self.max_fees_rel:.2e}, "
                f"funding {self.max_funding_rel:.2e} of notional (tol {TOL:g} + {ABS_USDT:g} USDT)",
                f"GAP_TP  {self.gap_tp} trade(s) whose TP the bar opened through; "
                f"LIQ {self.liquidations} liquidation(s)",
                f"capital: backtest {self.capital_kernel:,.2f}, replay ledger {self.capital_replay:,.2f}, "
                f"Nautilus account {self.account_balance:,.2f} USDT",
            ]
        lines += [f"PROBLEM: {p}" for p in self.problems]
        return "\n".join(lines)


def _rows(df: pd.DataFrame, cols: list) -> list:
    """Rows as plain tuples: exact values, whatever dtype pandas gave an empty frame."""
    return [tuple(v.item() if hasattr(v, "item") else v for v in row) for row in df[cols].itertuples(index=False)]


def compare(kernel, replay, panel) -> ParityReport:
    """``kernel``: ``BacktestResult`` of ``run_backtest(panel, scans, cfg, trade_from_ms=<first
    replayed bar close>)``; ``replay``: ``ReplayResult`` of the same panel and config."""
    lo = int(panel.warmup_bars)
    k = kernel.trades.reset_index(drop=True)
    n = replay.trades.reset_index(drop=True)
    vd_k = np.asarray(kernel.vel_div[lo:])
    scans_equal = (np.array_equal(panel.close_time[lo:], replay.scan_close_ms)
                   and np.array_equal(vd_k, replay.scan_vel_div, equal_nan=True))
    vol_equal = np.array_equal(kernel.regime.ok[lo:], replay.vol_ok)
    dk = kernel.decisions_frame().reset_index(drop=True)
    dn = replay.decisions.reset_index(drop=True)
    dec_equal = _rows(dk, DECISION_COLS) == _rows(dn, DECISION_COLS)
    keys_equal = _rows(k, KEY) == _rows(n, KEY)
    rep = ParityReport(len(k), len(n), bool(scans_equal), bool(vol_equal), bool(dec_equal), bool(keys_equal),
                       liquidations=int((k.exit_reason == "liquidation").sum()),
                       capital_kernel=float(kernel.final_capital), capital_replay=float(replay.capital),
                       account_balance=float(replay.account_balance))
    if not scans_equal:
        rep.problems.append("live scans differ from the batch scans")
    if not vol_equal:
        rep.problems.append("live vol regime differs from the batch regime")
    if not dec_equal:
        diff = sorted(set(_rows(dk, DECISION_COLS)) ^ set(_rows(dn, DECISION_COLS)))
        rep.problems.append(f"decisions differ ({len(dk)} vs {len(dn)}), first: {diff[:2]}")
    if rep.liquidations:
        rep.problems.append(f"LIQ: {rep.liquidations} kernel liquidation(s) in the window (not simulated by Nautilus)")
    if not keys_equal:
        diff = sorted(set(_rows(k, KEY)) ^ set(_rows(n, KEY)))
        rep.problems.append(f"trade lists differ ({len(k)} vs {len(n)}), first: {diff[:3]}")
        return rep
    if not len(k):
        return rep

    # the kernel's TP price and whether the bar opened through it (GAP_TP)
    tp_k = k.entry_price * (1.0 + k.side * kernel.config.take_profit_bps * 1e-4)
    is_tp = k.exit_reason == "take_profit"
    gap = is_tp & (np.abs(k.exit_price / tp_k - 1.0) > TOL)
    rep.gap_tp = int(gap.sum())
    if gap.any() and not np.allclose(n.exit_price[gap], n.tp_price[gap], rtol=1e-12, atol=0):
        rep.problems.append("GAP_TP: a replay TP did not fill at its own limit price")

    px = np.concatenate([(n.entry_price / k.entry_price - 1.0).to_numpy(),
                         (n.exit_price / k.exit_price - 1.0)[~gap].to_numpy()])
    rep.max_price_rel = float(np.abs(px).max())

    qty_k = k.notional / k.entry_price
    r = n.qty / qty_k
    sym = {s: j for j, s in enumerate(panel.symbols)}
    row = np.searchsorted(panel.open_time, k.entry_time.to_numpy()) - 1  # the signal bar
    close_sig = panel.close[row, [sym[a] for a in k.asset]]
    r_exp = (n.capital_before / k.capital_before) * (k.entry_price / close_sig)
    rep.max_sizing_rel = float(np.abs(r / r_exp - 1.0).max())
    rep.r_min, rep.r_max = float(r.min()), float(r.max())

    scale = n.notional.to_numpy()
    ok = ~gap.to_numpy()
    pnl_err = np.abs(n.pnl - r * k.pnl).to_numpy()
    fee_err = np.abs(n.fees - r * k.fees).to_numpy()
    fund_err = np.abs(n.funding - r * k.funding).to_numpy()
    lim = TOL * scale + ABS_USDT
    rep.max_pnl_rel = float((pnl_err[ok] / scale[ok]).max()) if ok.any() else 0.0
    rep.max_fees_rel = float((fee_err / scale).max())
    rep.max_funding_rel = float((fund_err / scale).max())
    if rep.max_price_rel > TOL:
        rep.problems.append(f"PRICE: relative price difference {rep.max_price_rel:.2e} > {TOL:g}")
    if rep.max_sizing_rel > TOL:
        rep.problems.append(f"SIZING: quantity ratio not explained by the sizing rule ({rep.max_sizing_rel:.2e})")
    if (pnl_err[ok] > lim[ok]).any() or (fee_err > lim).any() or (fund_err > lim).any():
        rep.problems.append("PnL / fees / funding differ by more than the sizing rule explains")
    return rep


def trade_summary(trades: pd.DataFrame, capital0: float) -> str:
    """A few lines for the CLI."""
    if trades.empty:
        return "no trades"
    from dolphin.timeutil import fmt_ms

    wins = trades.pnl > 0
    gp, gl = trades.pnl[wins].sum(), -trades.pnl[~wins].sum()
    reasons = ", ".join(f"{r} {c}" for r, c in trades.exit_reason.value_counts().items())
    lines = [
        f"{len(trades)} trades ({reasons}); win rate {wins.mean():.1%}; "
        f"profit factor {gp / gl if gl > 0 else float('inf'):.2f}; net PnL {trades.pnl.sum():+,.2f} USDT "
        f"({trades.pnl.sum() / capital0:+.2%}); fees {trades.fees.sum():,.2f}; funding {trades.funding.sum():,.2f}",
    ]
    show = trades.head(40)
    for _, t in show.iterrows():
        lines.append(f"  {fmt_ms(t.entry_time)} -> {fmt_ms(t.exit_time)}  {t.asset:<14} "
                     f"{'SHORT' if t.side < 0 else 'LONG ':<5} x{t.leverage:4.2f} {t.notional:>11,.2f}  "
                     f"{t.entry_price:.10g} -> {t.exit_price:.10g}  {t.pnl:>+10,.2f}  {t.exit_reason}")
    if len(trades) > len(show):
        lines.append(f"  ... {len(trades) - len(show)} more")
    return "\n".join(lines)

"""Accounting of ``DolphinStrategy``: capital, the pending entry, the open trade, funding and the trade list,
all from fill events (the strategy's ledger view; the durable ledger is dolphin/ledger, and Nautilus's own
account is NOT the source of truth: the sandbox client resets it on restart).

Funding: Binance charges it on a live account. In replay Nautilus does not, so an optional
``FundingSchedule`` (recorded rates on the bar grid, the kernel's own mapping) is charged here by the
kernel's rule: at the bar whose open contains a funding time, on a position entered in an earlier
bar, ``side * rate * qty * open``.

No order is sent from here: ``apply_fill`` says what happened and the strategy acts on it.
"""

from dataclasses import dataclass

import numpy as np
from nautilus_trader.model.enums import LiquiditySide, OrderSide

from dolphin.engine import kernel as K
from runtime.bars import NS_PER_MS
from runtime.instruments import to_float

_REASON_NAMES = K.EXIT_REASONS  # code -> name, shared with the backtest's trade list
TRADE_COLUMNS = ["entry_time", "exit_time", "asset", "side", "notional", "leverage", "entry_price", "exit_price",
                 "fees", "funding", "pnl", "exit_reason"]


class FundingSchedule:
    """Funding rates on the bar grid: ``rates[row, i]`` applies to the bar opening at ``open_ms[row]``
    (``dolphin.engine.funding.funding_grid`` output)."""

    def __init__(self, open_ms: np.ndarray, rates: np.ndarray):
        self._row = {int(t): k for k, t in enumerate(np.asarray(open_ms, dtype=np.int64))}
        self._rates = np.asarray(rates, dtype=np.float64)

    def rate(self, i: int, bar_open_ms: int) -> float:
        k = self._row.get(int(bar_open_ms))
        return 0.0 if k is None else float(self._rates[k, i])


@dataclass
class _Trade:
    asset: int
    side: int
    entry_bar: int  # index = bar close ms // bar_ms of the bar the entry filled in
    entry_fill_ns: int
    qty: float
    entry_px: float
    target_notional: float
    leverage: float
    fees: float
    capital_before: float
    signal: float
    posture: int
    boost: float
    maker_entry: bool
    entry_fee: float = 0.0
    entry_liquidity: str = ""
    funding: float = 0.0
    realised: float = 0.0  # gross PnL of the closed quantity
    closed_qty: float = 0.0
    exit_notional: float = 0.0  # sum of exit qty * px (for the average exit price)
    exit_fill_ns: int = 0
    exit_reason: int = 0
    tp_price: float = float("nan")


@dataclass
class _Pending:
    """The entry order decided at the last bar close (kernel: the pending order)."""

    order: object
    asset: int
    side: int
    target_notional: float
    leverage: float
    signal: float
    posture: int
    boost: float
    limit: bool
    capital_before: float
    filled_qty: float = 0.0
    filled_notional: float = 0.0
    fees: float = 0.0
    first_fill_ns: int = 0
    taker: bool = False  # any part filled as taker (a limit marketable on arrival, or a market order)


def bar_of(ts_ns: int, bar_ms: int) -> int:
    """Index (close ms // bar_ms) of the bar a fill at ts_ns happened in: the bar closing at or after it
    (replay stamps a bar's intrabar prices at its close, the first trade after a close just after it)."""
    return -(-int(ts_ns) // (NS_PER_MS * bar_ms))


class Accounts:
    """``pending`` (the entry in flight), ``trade`` (the open position), ``capital``, ``trades``.
    ``closing_bar``: a TP filled inside this bar, finalised at its close (that bar's funding first)."""

    def __init__(self, symbols: list, bar_ms: int, capital: float, *, asset_index: dict,
                 funding: FundingSchedule | None = None, journal=None, log_error=print):
        self.symbols = symbols
        self.asset_index = asset_index  # instrument_id -> asset index
        self.bar_ms = int(bar_ms)
        self.capital = float(capital)
        self.funding = funding
        self.journal = journal
        self.log_error = log_error
        self.trades: list = []
        self.pending: _Pending | None = None
        self.trade: _Trade | None = None
        self.closing_bar = None
        self.exit_reason = 0  # the reason of the exit order in flight

    def apply_fill(self, event, role: str, order_closed) -> str | None:
        """Book one fill. ``order_closed()``: whether the filled order is now closed (entries only).
        Returns "opened" (the entry completed: ``trade`` is open, its TP is due), "tp" (the TP closed the
        position: finalised at this bar's close), "closed" (an exit closed it: finalised) or None."""
        qty = to_float(event.last_qty)
        px = to_float(event.last_px)
        fee = event.commission.as_double()
        self.capital -= fee
        if role == "entry":
            pe = self.pending
            if pe is None or pe.order.client_order_id != event.client_order_id:
                self.log_error(f"entry fill without a pending entry: {event}")
                return None
            if pe.filled_qty == 0.0:
                pe.first_fill_ns = int(event.ts_event)
            pe.filled_qty += qty
            pe.filled_notional += qty * px
            pe.fees += fee
            pe.taker |= event.liquidity_side == LiquiditySide.TAKER
            if order_closed():
                self.open_trade()
                return "opened"
            return None
        tr = self.trade
        if tr is None:
            self.log_error(f"exit fill without an open trade: {event}")
            return None
        gross = tr.side * qty * (px - tr.entry_px)
        self.capital += gross
        tr.realised += gross
        tr.fees += fee
        tr.closed_qty += qty
        tr.exit_notional += qty * px
        tr.exit_fill_ns = int(event.ts_event)
        if tr.closed_qty >= tr.qty * (1.0 - 1e-12):
            if role == "tp":
                tr.exit_reason = K.R_TP
                # a TP fills inside a bar: that bar's funding is due first (kernel order), and the
                # bar's open is only known at its close
                self.closing_bar = bar_of(event.ts_event, self.bar_ms)
                return "tp"
            tr.exit_reason = self.exit_reason
            return "closed"
        return None

    def journal_fill(self, event, role: str) -> None:
        if self.journal is None:
            return
        # the order's client id + the venue's trade id: reproduced by a deterministic re-run and by
        # an exchange re-delivering the fill (stable, so the journal can dedupe)
        self.journal.record("fill", f"{event.client_order_id}:{event.trade_id}", int(event.ts_event),
                            self.symbols[self.asset_index[event.instrument_id]],
                            "BUY" if event.order_side == OrderSide.BUY else "SELL", role,
                            to_float(event.last_qty), to_float(event.last_px), event.commission.as_double(),
                            0.0, "TAKER" if event.liquidity_side == LiquiditySide.TAKER else "MAKER",
                            self.capital)

    def open_trade(self) -> _Trade:
        """The pending entry (fully or partly filled) becomes the open trade."""
        pe, self.pending = self.pending, None
        epx = pe.filled_notional / pe.filled_qty
        self.trade = _Trade(pe.asset, pe.side, bar_of(pe.first_fill_ns, self.bar_ms), pe.first_fill_ns,
                            pe.filled_qty, epx, pe.target_notional, pe.leverage, pe.fees, pe.capital_before,
                            pe.signal, pe.posture, pe.boost, pe.limit, pe.fees, "TAKER" if pe.taker else "MAKER")
        return self.trade

    def adopt(self, asset: int, ad) -> _Trade:
        """A restart continues an open position (``runtime.reconcile.Adopted``): the journal's entry and the
        decision context journaled with it."""
        c = ad.context
        self.trade = _Trade(asset, ad.side, bar_of(ad.entry_fill_ns, self.bar_ms), ad.entry_fill_ns, ad.qty,
                            ad.entry_px, float(c["target_notional"]), float(c["leverage"]), ad.fees,
                            float(c["capital_before"]), float(c["signal"]), int(c["posture"]), float(c["boost"]),
                            bool(c["limit"]), ad.fees, "")
        return self.trade

    def charge_funding(self, t: int, open_ms: int, open_px) -> None:
        """Funding of the bar ``t`` (opening at ``open_ms``) on the open trade; ``open_px``: that bar's open
        of each instrument (Price objects or floats)."""
        tr = self.trade
        if self.funding is None or tr is None or tr.entry_bar >= t:
            return
        if self.closing_bar is None and tr.exit_fill_ns:
            return  # closed by a market order at this bar's open: no funding for this bar
        if self.closing_bar is not None and self.closing_bar != t:
            return
        rate = self.funding.rate(tr.asset, open_ms)
        if rate != 0.0:
            op = open_px[tr.asset]
            f = tr.side * rate * tr.qty * (op if isinstance(op, float) else to_float(op))  # longs pay positive rates
            tr.funding += f
            self.capital -= f
            if self.journal is not None:
                self.journal.record("funding", f"funding:{self.symbols[tr.asset]}:{open_ms}", open_ms * NS_PER_MS,
                                    self.symbols[tr.asset], "BUY" if tr.side > 0 else "SELL", "funding", tr.qty,
                                    op if isinstance(op, float) else to_float(op), 0.0, f, "", self.capital)

    def finalise(self, last_close_ms) -> None:
        """Close the books of the open trade: one row in ``trades``."""
        tr = self.trade
        self.trade = None
        self.closing_bar = None
        xpx = tr.exit_notional / tr.closed_qty
        xbar = bar_of(tr.exit_fill_ns, self.bar_ms)
        bar = self.bar_ms
        if tr.exit_reason == K.R_TP:
            exit_ms = xbar * bar  # intrabar: stamped at the bar's close, as the backtest does
        elif tr.exit_reason == K.R_END:
            exit_ms = last_close_ms  # the last close
        else:
            exit_ms = (xbar - 1) * bar  # market exit at the bar's open
        self.trades.append({
            "entry_time": (tr.entry_bar - 1) * bar,
            "exit_time": exit_ms,
            "asset": self.symbols[tr.asset],
            "side": tr.side,
            "notional": tr.qty * tr.entry_px,
            "leverage": tr.leverage,
            "entry_price": tr.entry_px,
            "exit_price": xpx,
            "fees": tr.fees,
            "funding": tr.funding,
            "pnl": tr.realised - tr.fees - tr.funding,
            "exit_reason": _REASON_NAMES[tr.exit_reason],
            "qty": tr.qty,
            "target_notional": tr.target_notional,
            "capital_before": tr.capital_before,
            "entry_signal": tr.signal,
            "entry_posture": tr.posture,
            "maker_entry": tr.maker_entry,  # entered with a limit order (STALKER), as the backtest's column
            "entry_fee": tr.entry_fee,
            "entry_liquidity": tr.entry_liquidity,
            "tp_price": tr.tp_price,
            "entry_fill_ns": tr.entry_fill_ns,
            "exit_fill_ns": tr.exit_fill_ns,
        })

    def trades_frame(self):
        import pandas as pd

        return pd.DataFrame(self.trades, columns=TRADE_COLUMNS + [c for c in (self.trades[0] if self.trades else {})
                                                                  if c not in TRADE_COLUMNS])

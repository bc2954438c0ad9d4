"""Paper replay: ``DolphinStrategy`` in a Nautilus ``BacktestEngine`` over recorded REAL bars.

Venue model, chosen so that Nautilus fills what ``dolphin.engine.kernel.run_kernel`` fills:

- bars: ``BarDataWrangler`` with timestamps at the bar CLOSE (Nautilus's convention), LAST/EXTERNAL,
  bar execution on: each bar moves the simulated market open → high → low → close at its close time.
- first trade of each bar: a trade tick at the bar's OPEN price, 1 µs after the previous bar's close.
  The kernel fills a decision taken at close[t] at open[t+1]: that is the first trade after the
  decision. Orders reach the venue 2 µs after they are sent (``LatencyModel``, inserts only), i.e.
  after that first trade, so a market order executes against open[t+1], not against close[t].
  Cancels have no latency: a cancel sent at a bar close takes effect before the next bar trades.
- two "flush" ticks per bar (same price, +2 µs and +4 µs) make the engine process the orders in
  flight (Nautilus handles queued commands only when some data arrives): the entry at +2 µs, the
  take-profit sent on its fill at +4 µs, so the TP rests before the next bar's high/low are matched.
- ``KernelFillModel``: market orders fill at the current price ± ``slippage_bps`` (taker), resting
  limits at their limit price (maker) and only when the market trades THROUGH them
  (``prob_fill_on_limit=0``: touching the price is not a fill, the kernel's ``low < tp`` rule), a
  limit that is marketable on arrival at the market price (taker), all with unlimited depth (the
  kernel never partially fills).
- margin account in USDT, NETTING (Binance one-way mode), leverage = the engine's
  ``abs_max_leverage`` for margin checks, maker 2 bps / taker 5 bps (the instrument's fees).

Not simulated by Nautilus, so not in the replay: liquidation (the kernel liquidates an isolated
position whose adverse move eats its margin) and funding (charged by the strategy from recorded
rates when the set has them; see ``DolphinStrategy``).
"""

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
from nautilus_trader.accounting.margin_models import StandardMarginModel
from nautilus_trader.backtest.config import BacktestEngineConfig
from nautilus_trader.backtest.engine import BacktestEngine
from nautilus_trader.backtest.models import FillModel, LatencyModel
from nautilus_trader.common.config import LoggingConfig
from nautilus_trader.model.book import OrderBook
from nautilus_trader.model.currencies import USDT
from nautilus_trader.model.data import BookOrder, TradeTick
from nautilus_trader.model.enums import (AccountType, AggressorSide, BookType, LiquiditySide, OmsType, OrderSide,
                                         OrderType)
from nautilus_trader.model.identifiers import TradeId
from nautilus_trader.model.objects import Money, Price, Quantity
from nautilus_trader.persistence.wranglers import BarDataWrangler

from dolphin.engine.config import BLUE, EngineConfig
from dolphin.engine.funding import find_funding_dir, funding_grid
from dolphin.scanner.core import WARMUP_BARS
from runtime.instruments import VENUE, bar_type, instruments_for_panel, to_float
from runtime.risk import DefaultRiskSource, RiskSource, ScheduledRiskSource
from runtime.strategy import DolphinStrategy, DolphinStrategyConfig, FundingSchedule

US = 1_000  # ns
OPEN_TICK_NS = 1 * US  # first trade of the next bar, after the decision at the close
ORDER_LATENCY_NS = 2 * US  # order reaches the venue after that first trade
FLUSH_NS = (2 * US, 4 * US)  # entry at +2 µs, its TP at +4 µs

TRADE_COLUMNS = ["entry_time", "exit_time", "asset", "side", "notional", "leverage", "entry_price", "exit_price",
                 "fees", "pnl", "exit_reason"]


class KernelFillModel(FillModel):
    """Fills as the dolphin kernel does (see module doc); depth is unlimited."""

    def __init__(self, slippage_bps: float):
        # (Nautilus 1.231 has no prob_fill_on_stop any more; the strategy sends no stop orders)
        super().__init__(prob_fill_on_limit=0.0, prob_slippage=0.0, random_seed=0)
        self.slip = float(slippage_bps) * 1e-4

    def get_orderbook_for_fill_simulation(self, instrument, order, best_bid, best_ask):
        buy = order.side == OrderSide.BUY
        if order.order_type == OrderType.MARKET:
            px = to_float(best_ask) * (1.0 + self.slip) if buy else to_float(best_bid) * (1.0 - self.slip)
        elif order.order_type == OrderType.LIMIT and order.liquidity_side == LiquiditySide.MAKER:
            px = to_float(order.price)
        else:  # marketable on arrival: the market price, no slippage (as a limit cannot slip past itself)
            px = to_float(best_ask) if buy else to_float(best_bid)
        book = OrderBook(instrument_id=instrument.id, book_type=BookType.L2_MBP)
        book.add(BookOrder(OrderSide.SELL if buy else OrderSide.BUY, Price(px, instrument.price_precision),
                           order.leaves_qty, 1), 0, 0)
        return book


@dataclass
class ReplayResult:
    data: str
    config: EngineConfig
    symbols: list
    trades: pd.DataFrame  # TRADE_COLUMNS first, then funding and extras
    decisions: pd.DataFrame  # ts (bar close ms), decision, asset, leverage
    scan_close_ms: np.ndarray  # every decided bar close
    scan_vel_div: np.ndarray  # vel_div / N the strategy computed live
    vol_ok: np.ndarray
    capital: float  # the strategy's ledger capital at the end
    account_balance: float  # Nautilus's USDT balance at the end (no funding in it)
    bars: int  # instrument-bars replayed
    bar_closes: int
    wall_s: float  # engine.run() only
    bar_to_order_us: np.ndarray
    bar_to_decision_us: np.ndarray
    panel: object = None
    notes: list = field(default_factory=list)


def warmup_bars(cfg: EngineConfig) -> int:
    """History the replay needs before its first bar: as ``dolphin.engine.pipeline.run`` loads."""
    return WARMUP_BARS + cfg.vol_lookback + cfg.vol_window


def _bars_frame(panel, j: int, lo: int) -> pd.DataFrame:
    idx = pd.to_datetime(panel.close_time[lo:], unit="ms", utc=True)
    return pd.DataFrame({"open": panel.open[lo:, j], "high": panel.high[lo:, j], "low": panel.low[lo:, j],
                         "close": panel.close[lo:, j], "volume": panel.volume[lo:, j]}, index=idx)


def _ticks(panel, instruments: dict, lo: int) -> list:
    """The first trade of every replayed bar after the first (at the previous close + 1 µs), and the
    flush ticks (instrument 0 repeating its current price, so the market does not move)."""
    out = []
    ct = panel.close_time.astype(np.int64) * 1_000_000
    T = panel.n_bars
    for j, s in enumerate(panel.symbols):
        inst = instruments[s]
        size = Quantity(10.0 ** -inst.size_precision, inst.size_precision)
        for t in range(lo, T - 1):
            ts = int(ct[t]) + OPEN_TICK_NS
            out.append(TradeTick(inst.id, Price(float(panel.open[t + 1, j]), inst.price_precision), size,
                                 AggressorSide.NO_AGGRESSOR, TradeId(f"o{t + 1}"), ts, ts))
    inst = instruments[panel.symbols[0]]
    size = Quantity(10.0 ** -inst.size_precision, inst.size_precision)
    for t in range(lo, T):
        px = Price(float(panel.open[t + 1, 0] if t + 1 < T else panel.close[t, 0]), inst.price_precision)
        for k, d in enumerate(FLUSH_NS):
            ts = int(ct[t]) + d
            out.append(TradeTick(inst.id, px, size, AggressorSide.NO_AGGRESSOR, TradeId(f"f{t}-{k}"), ts, ts))
    return out


def run_replay(data, cfg: EngineConfig = BLUE, *, start_ms: int | None = None, end_ms: int | None = None,
               panel=None, risk=None, funding_dir="auto", log_level: str = "ERROR",
               capital: float | None = None, keep_panel: bool = False, ledger=None,
               acb_adverse_exit: bool = False, acb_drop: float = 0.2) -> ReplayResult:
    """Replay the bars with open time in [start_ms, end_ms] (``panel`` given: its non-warm-up rows).

    ``risk``: None (defaults: APEX, GREEN, 1, 1), a ``RiskSource``, or a ``RiskInputs`` row-aligned
    with the panel. ``funding_dir``: a funding folder, None (not charged), or "auto": the set's
    recorded funding when it has some (USDT-M sets; needs ``data``, not a ``panel``). The panel's
    ``warmup_bars`` leading rows are history for the strategy's warm-up (``warmup_bars(cfg)`` of them
    make the first replayed decision identical to the backtest's). ``ledger``: a ``runtime.ledger.LedgerSink``
    (fills journaled as they happen, the session closed at the end; its opening capital is the replay's)."""
    import time

    from dolphin.data import load_panel
    from dolphin.paths import resolve_kline_set

    notes = []
    if ledger is not None:
        if capital is not None and capital != ledger.restored.opening_capital:
            raise ValueError(f"capital {capital} is not the ledger session's opening capital "
                             f"{ledger.restored.opening_capital}")
        capital = ledger.restored.opening_capital
    if panel is None:
        path = resolve_kline_set(str(data))
        panel = load_panel(path, start_ms=start_ms, end_ms=end_ms, warmup_bars=warmup_bars(cfg))
    else:
        path = None
    lo = int(panel.warmup_bars)
    T, N = panel.close.shape
    if lo >= T:
        from dolphin.data.contracts import DataError

        raise DataError("nothing to replay: the window holds no bars after the warm-up")
    if lo < warmup_bars(cfg):
        notes.append(f"only {lo} warm-up bars (< {warmup_bars(cfg)}): scanner/regime start cold")
    history = panel.slice_bars(0, lo)
    close_ms = panel.close_time.astype(np.int64)
    tradable = ~(panel.filled | panel.excluded)
    row_of = {int(t): k for k, t in enumerate(close_ms)}

    if risk is None:
        source: RiskSource = DefaultRiskSource()
    elif hasattr(risk, "read"):
        source = risk
    else:
        source = ScheduledRiskSource(close_ms, risk)

    funding = None
    if funding_dir == "auto":
        funding_dir = find_funding_dir(path) if path is not None and path.is_dir() else None
    if funding_dir is not None and cfg.charge_funding:
        rates, covered = funding_grid(Path(funding_dir), panel.symbols, panel.open_time, panel.bar_ms)
        funding = FundingSchedule(panel.open_time, rates)
        notes.append(f"funding charged by the strategy from {funding_dir} ({len(covered)} symbols); "
                     "not in Nautilus's account balance")
    else:
        notes.append("funding: none recorded for this set (spot candles): not charged")

    instruments = instruments_for_panel(panel, maker_fee=cfg.maker_fee, taker_fee=cfg.taker_fee,
                                        max_leverage=cfg.abs_max_leverage, maintenance_margin=cfg.maintenance_margin)
    engine = BacktestEngine(BacktestEngineConfig(trader_id="DOLPHIN-001", run_analysis=False,
                                                 logging=LoggingConfig(log_level=log_level, bypass_logging=False)))
    try:
        engine.add_venue(
            venue=VENUE, oms_type=OmsType.NETTING, account_type=AccountType.MARGIN,
            starting_balances=[Money(cfg.initial_capital if capital is None else capital, USDT)],
            base_currency=USDT, default_leverage=Decimal(str(cfg.abs_max_leverage)),
            margin_model=StandardMarginModel(),  # Binance: initial = notional / leverage, maint = notional x rate
            fill_model=KernelFillModel(cfg.slippage_bps),
            latency_model=LatencyModel(base_latency_nanos=0, insert_latency_nanos=ORDER_LATENCY_NS,
                                       update_latency_nanos=ORDER_LATENCY_NS, cancel_latency_nanos=0),
            book_type=BookType.L1_MBP, bar_execution=True, bar_adaptive_high_low_ordering=False,
            trade_execution=False, use_reduce_only=True,
        )
        n_bars = 0
        for j, s in enumerate(panel.symbols):
            inst = instruments[s]
            engine.add_instrument(inst)
            bars = BarDataWrangler(bar_type(s, panel.bar_ms), inst).process(_bars_frame(panel, j, lo))
            n_bars += len(bars)
            engine.add_data(bars)
        engine.add_data(_ticks(panel, instruments, lo))

        scfg = DolphinStrategyConfig.for_engine(cfg, symbols=tuple(panel.symbols), bar_ms=int(panel.bar_ms),
                                                end_of_data_ms=int(close_ms[-1]), acb_adverse_exit=acb_adverse_exit,
                                                acb_drop=acb_drop)
        strat = DolphinStrategy(scfg, risk_source=source, history=history, funding=funding,
                                tradable=lambda ms: tradable[row_of[ms]], capital=capital, journal=ledger)
        engine.add_strategy(strat)
        t0 = time.perf_counter()
        engine.run()
        wall = time.perf_counter() - t0
        account = engine.portfolio.account(VENUE)
        balance = account.balance_total(USDT).as_double()
        lg = strat.log_data
        from dolphin.engine.kernel import DECISION_NAMES

        d = lg.decisions
        # same dtypes as BacktestResult.decisions_frame(), also when empty
        dec = pd.DataFrame({
            "ts": np.array([x[0] for x in d], dtype=np.int64),
            "decision": [DECISION_NAMES[x[1]] for x in d],
            "asset": [panel.symbols[x[2]] if x[2] >= 0 else "" for x in d],
            "leverage": np.array([x[3] for x in d], dtype=np.float64),
        })
        trades = strat.trades_frame()
        if ledger is not None:
            ledger.close(strat.capital)
            notes.extend(ledger.report())
    finally:
        engine.dispose()
    return ReplayResult(
        data=str(data), config=cfg, symbols=list(panel.symbols), trades=trades, decisions=dec,
        scan_close_ms=np.asarray(lg.close_ms, dtype=np.int64), scan_vel_div=np.asarray(lg.vel_div),
        vol_ok=np.asarray(lg.vol_ok), capital=strat.capital, account_balance=balance, bars=n_bars,
        bar_closes=T - lo, wall_s=wall, bar_to_order_us=np.asarray(lg.bar_to_order_ns) / 1e3,
        bar_to_decision_us=np.asarray(lg.bar_to_decision_ns) / 1e3, panel=panel if keep_panel else None,
        notes=notes)

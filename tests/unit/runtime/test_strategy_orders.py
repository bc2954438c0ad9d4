"""DolphinStrategy's order paths against Nautilus's simulated exchange (``BacktestEngine``, its test clock):
a STALKER limit entry cancelled after one bar, the reduce-only take-profit filled, HIBERNATE flattening a
position at market. A handful of hand-built bars for two instruments; the venue is the replay's
(``runtime.replay``: kernel fill model, 2 µs order latency, open / flush ticks); the market state is
scripted (``ScriptedMarket`` stands in for ``runtime.market.MarketState``: the signal is chosen, the
decision functions, the orders and the exchange are the real ones). Assertions are on what Nautilus
records: order type, reduce_only, status, and times in bar time."""

from decimal import Decimal
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from nautilus_trader.accounting.margin_models import StandardMarginModel
from nautilus_trader.backtest.config import BacktestEngineConfig
from nautilus_trader.backtest.engine import BacktestEngine
from nautilus_trader.backtest.models import LatencyModel
from nautilus_trader.common.config import LoggingConfig
from nautilus_trader.model.currencies import USDT
from nautilus_trader.model.enums import (AccountType, BookType, LiquiditySide, OmsType, OrderSide, OrderStatus,
                                         OrderType)
from nautilus_trader.model.objects import Money
from nautilus_trader.persistence.wranglers import BarDataWrangler

from dolphin.engine.config import APEX, BLUE, HIBERNATE, STALKER
from dolphin.engine.inputs import RiskInputs
from runtime.instruments import VENUE, bar_type, instruments_for_panel, to_float
from runtime.replay import ORDER_LATENCY_NS, KernelFillModel, _bars_frame, _ticks
from runtime.risk import ScheduledRiskSource
from runtime.strategy import DolphinStrategy, DolphinStrategyConfig

BAR_MS = 300_000
MS = 1_000_000
T0 = 1_700_000_100_000 // BAR_MS * BAR_MS  # first bar's open (on the grid)
SYMBOLS = ("BTCUSDT", "ETHUSDT")
SIGNAL_BAR = 2  # the short signal comes at this bar's close
SHORT_VD = -0.05  # vel_div / N below -entry_threshold (0.0335): a SHORT signal with leverage > the minimum


class ScriptedMarket:
    """``MarketState``'s interface with a chosen signal: vel_div / N is 0 except ``SHORT_VD`` at the close
    of bar ``signal_bar``; the regime is always OK; the ranking picks asset 0 (BTC)."""

    def __init__(self, n, close_ms_of_signal):
        self.last_close = np.full(n, np.nan)
        self.signal_close_ms = close_ms_of_signal
        self.vd = 0.0

    def reset(self):
        pass

    def step(self, open_ms, close, tradable, scan_sink=None):
        vd_prev, self.vd = self.vd, SHORT_VD if open_ms + BAR_MS == self.signal_close_ms else 0.0
        self.last_close[:] = close
        return vd_prev, self.vd, True

    def rank(self, side):
        return 0

    def leg_weight(self, side):
        return 1.0


def _panel(btc_ohlc):
    """Bars closing at T0 + (t + 1) * BAR_MS; ETH flat at 2000 (it never trades)."""
    b = np.asarray(btc_ohlc, dtype=np.float64)
    T = len(b)
    eth = np.full(T, 2000.0)
    ct = T0 + BAR_MS * np.arange(1, T + 1, dtype=np.int64)
    return SimpleNamespace(symbols=list(SYMBOLS), bar_ms=BAR_MS, n_bars=T, close_time=ct, open_time=ct - BAR_MS,
                           open=np.stack([b[:, 0], eth], 1), high=np.stack([b[:, 1], eth], 1),
                           low=np.stack([b[:, 2], eth], 1), close=np.stack([b[:, 3], eth], 1),
                           volume=np.ones((T, 2)))


class BookRiskSource(ScheduledRiskSource):
    """The schedule plus a book-health answer (the live ``StoreRiskSource`` gives it from asset_<SYMBOL>_ob)."""

    def __init__(self, close_ms, risk, healthy: bool):
        super().__init__(close_ms, risk)
        self.healthy, self.asked = healthy, []

    def book_healthy(self, symbol):
        self.asked.append(symbol)
        return self.healthy


def _run(btc_ohlc, postures, *, delay_ms=(0, 0), drop=(), bar_timeout_ms=None, decided=None, book=None):
    """Run the strategy over the bars with per-bar posture; return (engine, strategy, panel). The venue is
    configured as ``runtime.replay.run_replay`` configures it. ``delay_ms``: per symbol, how long after its
    close each bar is delivered (a feed behind the clock); ``drop``: (bar, symbol index) never delivered;
    ``decided``: a list receiving (close_ms, clock ns) of every decided bar set."""
    cfg = BLUE
    panel = _panel(btc_ohlc)
    risk = RiskInputs.defaults(panel.n_bars)
    risk.posture[:] = postures
    source = (ScheduledRiskSource(panel.close_time, risk) if book is None
              else BookRiskSource(panel.close_time, risk, book))
    instruments = instruments_for_panel(panel, maker_fee=cfg.maker_fee, taker_fee=cfg.taker_fee,
                                        max_leverage=cfg.abs_max_leverage, maintenance_margin=cfg.maintenance_margin)
    engine = BacktestEngine(BacktestEngineConfig(trader_id="TESTER-001", run_analysis=False,
                                                 logging=LoggingConfig(log_level="ERROR", bypass_logging=True)))
    engine.add_venue(
        venue=VENUE, oms_type=OmsType.NETTING, account_type=AccountType.MARGIN,
        starting_balances=[Money(cfg.initial_capital, USDT)], base_currency=USDT,
        default_leverage=Decimal(str(cfg.abs_max_leverage)), margin_model=StandardMarginModel(),
        fill_model=KernelFillModel(cfg.slippage_bps),
        latency_model=LatencyModel(base_latency_nanos=0, insert_latency_nanos=ORDER_LATENCY_NS,
                                   update_latency_nanos=ORDER_LATENCY_NS, cancel_latency_nanos=0),
        book_type=BookType.L1_MBP, bar_execution=True, bar_adaptive_high_low_ordering=False,
        trade_execution=False, use_reduce_only=True)
    for j, s in enumerate(SYMBOLS):
        engine.add_instrument(instruments[s])
        frame = _bars_frame(panel, j, 0).drop([pd.Timestamp(int(panel.close_time[t]), unit="ms", tz="UTC")
                                               for t, jj in drop if jj == j])
        engine.add_data(BarDataWrangler(bar_type(s, BAR_MS), instruments[s]).process(
            frame, ts_init_delta=delay_ms[j] * MS))
    engine.add_data(_ticks(panel, instruments, 0))
    strat = DolphinStrategy(DolphinStrategyConfig.for_engine(cfg, symbols=SYMBOLS, bar_ms=BAR_MS,
                                                             bar_timeout_ms=bar_timeout_ms), risk_source=source)
    strat.market = ScriptedMarket(len(SYMBOLS), int(panel.close_time[SIGNAL_BAR]))
    if decided is not None:
        on_close = strat._on_bar_close
        strat._on_bar_close = lambda c, t: (decided.append((c, strat.clock.timestamp_ns())), on_close(c, t))
    engine.add_strategy(strat)
    engine.run()
    return engine, strat, panel


def _orders(engine):
    return sorted(engine.cache.orders(), key=lambda o: o.ts_init)


def _close_ns(panel, t):
    return int(panel.close_time[t]) * MS


@pytest.fixture
def engines():
    made = []
    yield made
    for e in made:
        e.dispose()


def test_stalker_limit_entry_is_cancelled_after_one_bar_unfilled(engines):
    # bar 3 never trades up to the signal close (101): the SELL limit at 101 cannot fill
    bars = [(100, 101, 99, 100), (100, 101, 99, 100.5), (100.5, 101.5, 100, 101), (100.5, 100.9, 99.8, 100.2),
            (100.2, 100.6, 99.9, 100.4), (100.4, 100.8, 100, 100.6)]
    engine, strat, panel = _run(bars, [STALKER] * len(bars))
    engines.append(engine)
    (o,) = _orders(engine)
    assert o.order_type == OrderType.LIMIT and o.side == OrderSide.SELL and not o.is_reduce_only
    assert to_float(o.price) == 101.0  # the signal bar's close (STALKER limit_offset 0)
    assert o.ts_init == _close_ns(panel, SIGNAL_BAR)  # sent at the signal bar's close (test clock)
    assert o.status == OrderStatus.CANCELED and o.filled_qty.as_double() == 0.0
    assert o.ts_last == _close_ns(panel, SIGNAL_BAR + 1)  # cancelled at the next bar's close, not later
    assert strat.trades == [] and not engine.cache.positions()
    # after the cancel no entry is pending any more: the strategy is free to act again
    assert strat.acct.pending is None


def test_take_profit_is_reduce_only_and_fills_inside_a_bar(engines):
    # APEX short at the close of bar 2 (101): market entry at bar 3's open (101) less slippage; bar 4's low
    # (99.5) trades through the TP (entry - 95 bps ~ 99.9)
    bars = [(100, 101, 99, 100), (100, 101, 99, 100.5), (100.5, 101.5, 100, 101), (101, 101.2, 100.6, 100.8),
            (100.8, 100.9, 99.5, 100.0), (100, 100.3, 99.8, 100.1)]
    engine, strat, panel = _run(bars, [APEX] * len(bars))
    engines.append(engine)
    entry, tp = _orders(engine)
    assert entry.order_type == OrderType.MARKET and entry.side == OrderSide.SELL and not entry.is_reduce_only
    assert entry.status == OrderStatus.FILLED
    fill_px = to_float(entry.avg_px)
    assert fill_px == pytest.approx(101.0 * (1 - BLUE.slippage_bps * 1e-4), abs=1e-6)  # bar 3's open, taker
    assert _close_ns(panel, SIGNAL_BAR) < entry.ts_last < _close_ns(panel, SIGNAL_BAR + 1)  # first trade of bar 3
    assert tp.order_type == OrderType.LIMIT and tp.side == OrderSide.BUY and tp.is_reduce_only
    assert tp.status == OrderStatus.FILLED and tp.liquidity_side == LiquiditySide.MAKER
    assert to_float(tp.avg_px) == to_float(tp.price) == pytest.approx(fill_px * (1 - BLUE.take_profit_bps * 1e-4), abs=0.01)
    assert tp.quantity == entry.quantity
    assert tp.ts_last == _close_ns(panel, 4)  # intrabar: bar 4's prices are stamped at its close
    (tr,) = strat.trades
    assert tr["exit_reason"] == "take_profit" and tr["side"] == -1 and tr["exit_time"] == panel.close_time[4]
    assert not engine.cache.positions_open()


def test_hibernate_closes_the_position_at_market_and_cancels_the_tp(engines):
    bars = [(100, 101, 99, 100), (100, 101, 99, 100.5), (100.5, 101.5, 100, 101), (101, 101.2, 100.6, 100.8),
            (100.8, 101.0, 100.4, 100.6), (100.7, 100.9, 100.3, 100.5), (100.5, 100.8, 100.2, 100.4)]
    postures = [APEX] * len(bars)
    postures[4] = HIBERNATE  # at bar 4's close: flatten
    engine, strat, panel = _run(bars, postures)
    engines.append(engine)
    entry, tp, exit_ = _orders(engine)
    assert entry.status == OrderStatus.FILLED and tp.is_reduce_only
    assert tp.status == OrderStatus.CANCELED and tp.ts_last == _close_ns(panel, 4)
    assert exit_.order_type == OrderType.MARKET and exit_.side == OrderSide.BUY and exit_.is_reduce_only
    assert exit_.ts_init == _close_ns(panel, 4) and exit_.status == OrderStatus.FILLED
    assert exit_.quantity == entry.quantity
    assert _close_ns(panel, 4) < exit_.ts_last < _close_ns(panel, 5)  # bar 5's first trade
    assert to_float(exit_.avg_px) == pytest.approx(100.7 * (1 + BLUE.slippage_bps * 1e-4), abs=1e-6)
    (tr,) = strat.trades
    assert tr["exit_reason"] == "hibernate" and tr["exit_time"] == panel.open_time[5]
    assert not engine.cache.positions_open()
    # HIBERNATE holds no new entry: after the flatten the strategy sent nothing else
    assert len(engine.cache.orders()) == 3


FLAT = [(100, 100.5, 99.5, 100)] * 8


def test_bar_timeout_runs_from_the_first_arrival_so_a_feed_behind_the_clock_still_completes(engines):
    # every bar delivered a minute after its close (ETH a second later still), the timeout 20 s: timed
    # from the close, every set would be decided before ETH's bar arrived (incomplete, ETH's bar dropped)
    decided = []
    engine, strat, panel = _run(FLAT, [APEX] * len(FLAT), delay_ms=(60_000, 61_000), bar_timeout_ms=20_000,
                                decided=decided)
    engines.append(engine)
    assert strat.log_data.incomplete_bars == 0
    assert [c for c, _ in decided] == [int(x) for x in panel.close_time]
    assert all(ns == c * MS + 61_000 * MS for c, ns in decided)  # decided when ETH's bar completed the set


def test_bar_timeout_decides_an_incomplete_set_that_long_after_its_first_bar(engines):
    decided = []
    engine, strat, panel = _run(FLAT, [APEX] * len(FLAT), delay_ms=(60_000, 61_000), drop=[(4, 1)],
                                bar_timeout_ms=20_000, decided=decided)
    engines.append(engine)
    assert strat.log_data.incomplete_bars == 1
    assert [c for c, _ in decided] == [int(x) for x in panel.close_time]
    (late,) = [ns for c, ns in decided if c == panel.close_time[4]]
    assert late == _close_ns(panel, 4) + (60_000 + 20_000) * MS  # BTC's arrival + the timeout, not the next bar


# a short entered at bar 3's open (101); bar 4 closes at 100.6 in STALKER (a posture change: orderly exit); the TP
# (~100.04) is never reached
EXIT_BARS = [(100, 101, 99, 100), (100, 101, 99, 100.5), (100.5, 101.5, 100, 101), (101, 101.2, 100.6, 100.8),
             (100.8, 101.0, 100.4, 100.6)]
EXIT_POSTURES = [APEX] * 4 + [STALKER] * 3


def test_posture_exit_with_a_healthy_book_is_a_maker_limit_at_the_close(engines):
    bars = EXIT_BARS + [(100.7, 100.9, 100.3, 100.5), (100.5, 100.8, 100.2, 100.4)]  # bar 5 trades through 100.6
    engine, strat, panel = _run(bars, EXIT_POSTURES, book=True)
    engines.append(engine)
    entry, tp, exit_ = _orders(engine)
    assert strat.risk_source.asked == ["BTCUSDT"]
    assert tp.status == OrderStatus.CANCELED
    assert exit_.order_type == OrderType.LIMIT and exit_.is_reduce_only and exit_.side == OrderSide.BUY
    assert to_float(exit_.price) == 100.6 and exit_.ts_init == _close_ns(panel, 4)
    assert exit_.status == OrderStatus.FILLED and exit_.liquidity_side == LiquiditySide.MAKER
    assert to_float(exit_.avg_px) == 100.6 and _close_ns(panel, 4) < exit_.ts_last <= _close_ns(panel, 5)
    (tr,) = strat.trades
    assert tr["exit_reason"] == "posture_change" and tr["exit_price"] == pytest.approx(100.6)
    assert not engine.cache.positions_open()


def test_a_maker_exit_not_filled_within_its_bar_leaves_at_market(engines):
    bars = EXIT_BARS + [(100.7, 100.9, 100.65, 100.8), (100.9, 101.0, 100.6, 100.7), (100.7, 100.9, 100.5, 100.6)]
    engine, strat, panel = _run(bars, EXIT_POSTURES + [STALKER], book=True)
    engines.append(engine)
    entry, tp, maker, market = _orders(engine)
    assert maker.order_type == OrderType.LIMIT and maker.status == OrderStatus.CANCELED
    assert maker.ts_last == _close_ns(panel, 5)  # cancelled at the next bar close
    assert market.order_type == OrderType.MARKET and market.is_reduce_only and market.ts_init == _close_ns(panel, 5)
    assert market.status == OrderStatus.FILLED and market.quantity == entry.quantity
    assert to_float(market.avg_px) == pytest.approx(100.9 * (1 + BLUE.slippage_bps * 1e-4), abs=1e-6)  # bar 6 open
    (tr,) = strat.trades
    assert tr["exit_reason"] == "posture_change" and not engine.cache.positions_open()


def test_without_a_healthy_book_the_posture_exit_is_at_market(engines):
    bars = EXIT_BARS + [(100.7, 100.9, 100.3, 100.5), (100.5, 100.8, 100.2, 100.4)]
    engine, strat, panel = _run(bars, EXIT_POSTURES, book=False)
    engines.append(engine)
    entry, tp, exit_ = _orders(engine)
    assert exit_.order_type == OrderType.MARKET and exit_.ts_init == _close_ns(panel, 4)
    assert to_float(exit_.avg_px) == pytest.approx(100.7 * (1 + BLUE.slippage_bps * 1e-4), abs=1e-6)  # bar 5 open

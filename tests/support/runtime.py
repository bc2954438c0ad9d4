"""Nautilus bars from a real panel and a DolphinStrategy not attached to an engine (the market-data path only)."""

from nautilus_trader.model.data import Bar
from nautilus_trader.model.objects import Price, Quantity

from runtime.instruments import bar_type
from runtime.strategy import DolphinStrategy, DolphinStrategyConfig

MS = 1_000_000


def _bar(panel, j, t, close_offset_ms=0):
    P = lambda x: Price(float(x), 2)  # noqa: E731
    ts = (int(panel.close_time[t]) + close_offset_ms) * MS
    return Bar(bar_type(panel.symbols[j], panel.bar_ms), P(panel.open[t, j]), P(panel.high[t, j]),
               P(panel.low[t, j]), P(panel.close[t, j]), Quantity(1, 0), ts, ts)


def _strategy(panel):
    # not attached to an engine: only the market-data path runs (cold, so it never orders)
    return DolphinStrategy(DolphinStrategyConfig(symbols=tuple(panel.symbols), bar_ms=panel.bar_ms))

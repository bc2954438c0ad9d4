"""One call from a candle set (name or path) to an aligned ``Panel``."""

from __future__ import annotations

from pathlib import Path

from dolphin.data.align import AlignRules, align, infer_bar_ms
from dolphin.data.contracts import DataIssue, Panel
from dolphin.data.readers import CandleSet, candle_symbols, read_candles
from dolphin.paths import resolve_kline_set
from dolphin.timeutil import DAY_MS


def load_panel(
    set_or_path: str | Path,
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
    warmup_bars: int = 0,
    symbols=None,
    rules: AlignRules | None = None,
    timeframe: str | None = None,
) -> Panel:
    """Read a candle set (``spot-5m-2024`` under ``<data>/klines``, or any path) and align it.

    ``start_ms``/``end_ms`` are inclusive bar opens. With ``warmup_bars > 0`` the panel also holds up to
    that many bars before the start (as many as every kept asset has; ``Panel.warmup_bars`` says how
    many). ``timeframe`` picks one timeframe from a folder holding several (freqtrade / Binance names).
    Every data problem found is in ``Panel.issues``.
    """
    rules = rules or AlignRules()
    path = resolve_kline_set(str(set_or_path))
    candles = read_for_window(path, symbols=symbols, start_ms=start_ms, end_ms=end_ms,
                              warmup_bars=warmup_bars, rules=rules, timeframe=timeframe)
    panel = align(candles, rules, start_ms=start_ms, end_ms=end_ms, warmup_bars=warmup_bars)
    if candles.skipped:
        panel.issues.insert(0, skipped_files_issue(candles))
    panel.source = str(path)
    return panel


def read_for_window(path, *, symbols=None, start_ms=None, end_ms=None, warmup_bars=0, rules=None,
                    timeframe=None) -> CandleSet:
    """Read what ``align`` needs for the window: also a day (or the warm-up) before the start, so a bar
    missing right at the start is forward-filled from the real bar before it, not taken for a late listing."""
    pad = DAY_MS
    if start_ms is not None and warmup_bars > 0:
        bar = (rules.bar_ms if rules else None) or _probe_bar_ms(path, symbols, start_ms, end_ms, timeframe)
        pad = max(pad, (warmup_bars + 1) * bar)
    return read_candles(path, symbols=symbols, start_ms=None if start_ms is None else start_ms - pad,
                        end_ms=end_ms, timeframe=timeframe)


def skipped_files_issue(candles: CandleSet) -> DataIssue:
    names = ", ".join(f"{Path(f).name} ({why})" for f, why in candles.skipped[:5])
    more = f" (+{len(candles.skipped) - 5} more)" if len(candles.skipped) > 5 else ""
    return DataIssue("skipped_files", "*", len(candles.skipped), (), f"not read: {names}{more}", candles.path)


def _probe_bar_ms(path, symbols, start_ms, end_ms, timeframe) -> int:
    """Bar interval of the data (sizes the warm-up read), from one symbol: without ``rules.bar_ms`` all
    assets must share it anyway (align() refuses mixed intervals)."""
    first = candle_symbols(path, symbols=symbols, timeframe=timeframe)[:1]
    probe = read_candles(path, symbols=first, start_ms=start_ms - 2 * DAY_MS, end_ms=end_ms, timeframe=timeframe)
    found = [b for b in (infer_bar_ms(c.open_time) for c in probe.values()) if b is not None]
    return found[0] if found else DAY_MS


def data_bar_ms(path, timeframe=None) -> int | None:
    """The bar size of a candle set, from its first symbol's file (what ``align`` would infer when all
    assets agree); None when it cannot tell."""
    first = candle_symbols(path, timeframe=timeframe)[:1]
    if not first:
        return None
    found = [b for b in (infer_bar_ms(c.open_time) for c in
                         read_candles(path, symbols=first, timeframe=timeframe).values()) if b is not None]
    return found[0] if found else None

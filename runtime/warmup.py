"""Warm-up from the venue's REST klines (`dolphin runtime ... --history venue`).

A runtime restarted after a gap (a crash, a deploy) cannot warm its scanner and regime from recorded files:
they end where the recording ended, and live bars start later, so the strategy would restart cold and make no
entry for the scanner's longest window plus the vol lookback (2817 bars at 5m: ten days). Binance serves the
closed bars it needs: ``GET /fapi/v1/klines`` (public, max 1500 per request, weight 10 at that size), paged
backwards from the last closed bar at the server's time (``/fapi/v1/time``), so the warm-up ends exactly where
the kline stream's next closed bar continues it, whatever the local clock says. The bars go through the same
alignment as any candle file (``dolphin.data.align``), so a symbol with holes is forward-filled or dropped by the
backtest's rules, and a symbol the venue does not list is an error that names it.
"""

import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy as np

from dolphin.data.align import align
from dolphin.data.contracts import Candles, DataError
from dolphin.timeutil import bar_label, fmt_ms

log = logging.getLogger("dolphin.runtime.warmup")

PAGE = 1500  # Binance's maximum klines per request
WEIGHT_BUDGET = 1800  # of Binance's 2400 request weight per minute: leave room for the node's own requests


class WarmupError(RuntimeError):
    """The venue could not provide the warm-up bars (names the symbol and the URL)."""


def _get(base: str, path: str, params: dict, timeout_s: float):
    url = f"{base.rstrip('/')}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            used = r.headers.get("X-MBX-USED-WEIGHT-1M")
            return json.loads(r.read()), (int(used) if used and used.isdigit() else None)
    except urllib.error.HTTPError as e:
        body = e.read()[:300].decode("utf-8", "replace")
        raise WarmupError(f"GET {url}: HTTP {e.code} {body}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise WarmupError(f"GET {url}: {e}") from None


def fetch_klines(base: str, symbol: str, bar_ms: int, bars: int, end_open_ms: int, *, timeout_s: float = 10.0,
                 sleep=time.sleep) -> Candles:
    """The ``bars`` closed klines of ``symbol`` whose opens are <= ``end_open_ms``, oldest first (fewer if the
    venue has fewer). Pauses when Binance's used-weight header nears the per-minute limit."""
    interval = bar_label(bar_ms)
    rows: list = []
    end = int(end_open_ms)
    while len(rows) < bars:
        limit = min(PAGE, bars - len(rows))
        page, used = _get(base, "/fapi/v1/klines", {"symbol": symbol, "interval": interval, "endTime": end,
                                                     "limit": limit}, timeout_s)
        if not isinstance(page, list):
            raise WarmupError(f"{symbol}: /fapi/v1/klines answered {str(page)[:200]}")
        page = [k for k in page if int(k[0]) <= end]
        if not page:
            break
        rows[:0] = page
        end = int(page[0][0]) - 1
        if used is not None and used >= WEIGHT_BUDGET:
            log.warning("warm-up: venue request weight %d/min used: pausing until the next minute", used)
            sleep(61.0 - (time.time() % 60.0))
        if len(page) < limit:
            break
    a = np.asarray([[float(k[i]) for i in (1, 2, 3, 4, 5)] for k in rows], dtype=np.float64).reshape(-1, 5)
    ot = np.asarray([int(k[0]) for k in rows], dtype=np.int64)
    return Candles(symbol=symbol, open_time=ot, open=a[:, 0], high=a[:, 1], low=a[:, 2], close=a[:, 3],
                   volume=a[:, 4], source=f"{base.rstrip('/')}/fapi/v1/klines?symbol={symbol}")


def venue_history(base: str, symbols, bar_ms: int, bars: int, *, timeout_s: float = 10.0):
    """A ``Panel`` of the last ``bars`` closed bars of every symbol at the venue's current time, aligned like
    the backtest's data; it ends at the last closed bar (the kline stream delivers the next one)."""
    now, _ = _get(base, "/fapi/v1/time", {}, timeout_s)
    server_ms = int(now["serverTime"])
    last_open = server_ms // bar_ms * bar_ms - bar_ms  # the newest bar that has closed at server time
    candles = {}
    for s in symbols:
        c = fetch_klines(base, s, bar_ms, bars, last_open, timeout_s=timeout_s)
        if len(c) == 0:
            raise WarmupError(f"{s}: the venue at {base} has no closed {bar_label(bar_ms)} klines up to "
                              f"{fmt_ms(last_open)}")
        candles[s] = c
    try:
        panel = align(candles, end_ms=last_open)
    except DataError as e:
        raise WarmupError(f"warm-up bars from {base}: {e}") from None
    dropped = sorted(set(symbols) - set(panel.symbols))
    if dropped:
        raise WarmupError(f"warm-up bars from {base}: {', '.join(dropped)} dropped by alignment "
                          f"({'; '.join(str(i) for i in panel.issues[:3])})")
    if int(panel.open_time[-1]) != last_open:
        raise WarmupError(f"warm-up bars from {base} end at {fmt_ms(int(panel.open_time[-1]))}, not at the last "
                          f"closed bar {fmt_ms(last_open)}")
    return panel.slice_bars(max(0, panel.n_bars - bars), panel.n_bars)


MAX_BACKFILL_BARS = PAGE  # one request per symbol; a longer gap restarts the scanner cold instead


class VenueGapFiller:
    """``(first_open_ms, last_open_ms) -> Panel`` of the bars with those opens from the venue's REST klines: the
    strategy calls it when its kline stream skipped bars (a restart racing a bar close, a dropped WebSocket), so
    the scanner and the regime continue instead of restarting cold. Synchronous, once per gap."""

    def __init__(self, base: str, symbols, bar_ms: int, timeout_s: float = 5.0):
        self.base, self.symbols, self.bar_ms, self.timeout_s = base, list(symbols), int(bar_ms), timeout_s

    def __call__(self, first_open_ms: int, last_open_ms: int):
        k = (last_open_ms - first_open_ms) // self.bar_ms + 1
        if k > MAX_BACKFILL_BARS:
            raise WarmupError(f"gap of {k} bars is longer than the {MAX_BACKFILL_BARS} a backfill fetches")
        # one bar more than the gap: the aligner infers the bar size from the spacing (a one-bar gap has none)
        lead = first_open_ms - self.bar_ms
        candles = {s: fetch_klines(self.base, s, self.bar_ms, k + 1, last_open_ms, timeout_s=self.timeout_s)
                   for s in self.symbols}
        try:
            panel = align(candles, start_ms=lead, end_ms=last_open_ms)
        except DataError as e:
            raise WarmupError(f"backfill bars from {self.base}: {e}") from None
        if panel.n_bars and int(panel.open_time[0]) == lead:
            panel = panel.slice_bars(1, panel.n_bars)
        want = np.arange(first_open_ms, last_open_ms + 1, self.bar_ms, dtype=np.int64)
        if list(panel.symbols) != self.symbols or not np.array_equal(panel.open_time.astype(np.int64), want):
            raise WarmupError(f"backfill bars from {self.base} do not cover {fmt_ms(first_open_ms)} .. "
                              f"{fmt_ms(last_open_ms)} for every symbol (got {panel.n_bars} bars of "
                              f"{', '.join(panel.symbols)})")
        return panel

"""Grid alignment: raw candles of N symbols -> one ``Panel`` on a common UTC bar grid.

Every rule below that changes, drops or invents data appends a ``DataIssue`` to ``Panel.issues``
(which asset, which bar-open timestamps, what was done). Nothing is silent. Rules, in order:

1. ``out_of_order``  Rows are sorted by ``open_time`` (stable, so read order decides among equal
   times). Reported: the rows that came after a later bar.
2. Bar interval  Inferred per asset as the median spacing of its distinct timestamps. All assets must
   agree, else ``DataError`` -- unless ``AlignRules.bar_ms`` is given: then assets with another interval
   are dropped (``mixed_interval``). Assets with fewer than 2 bars take the common interval.
3. ``off_grid``  Rows whose ``open_time`` is not ``grid_offset + k * bar_ms`` (grid anchored at the
   Unix epoch; Monday 00:00 UTC for 1w bars) are dropped.
4. ``bad_price``  A row with a NaN / infinite / zero / negative open, high, low or close, or a NaN /
   infinite / negative volume is dropped: the bar becomes missing (and is filled by rule 8).
4b. ``bad_time``  A row opening before ``earliest_ms`` (2009-01-03, Bitcoin's genesis) or after now + one
   bar is dropped: a stray row dated 2100 would otherwise become an asset's last bar and steer rule 6.
4c. ``ohlc_inconsistent``  A row with high < low, or open / close outside [low, high], is dropped (missing).
5. ``duplicate`` / ``duplicate_conflict``  Several valid rows with one ``open_time``: identical rows
   collapse to one (``duplicate``); if their values differ the LAST row read wins -- the later file in
   file-name order, or the later line within a file, i.e. a re-published correction supersedes the
   original -- and the earlier rows are dropped (``duplicate_conflict``, naming the files).
   An asset left with no valid bar is dropped (``no_data``).
5b. ``bad_tick``  A bar with any price more than ``max_bar_ratio`` (10) x away from the median of the
   asset's 3 closes before it AND of the 3 after it (a 1e300 print, a 720x wick that reverts) is dropped.
5c. ``price_jump``  A close-to-close move of more than ``max_bar_ratio`` x that does not revert (a
   redenomination) is no return: every earlier price of the asset is rescaled by the jump, so the return
   across it is zero (missing) and later returns are unchanged; the jump bar is excluded from trading.
5d. ``stray_rows``  Rows cut off from the rest of the asset's data by a gap longer than ``stray_gap_ms``
   (7 days) with at most ``stray_max_bars`` bars on their side are dropped (a lone far-past row).
6. Window  Explicit ``start_ms`` / ``end_ms`` are inclusive bar opens, snapped inward to the grid;
   if they reach beyond every asset's data they are clipped to the data (``window_clipped``).
   A side not given is chosen as the *common window*: among windows starting at some asset's first
   bar and ending at some asset's last bar, the one that maximises (assets kept by rule 7) x (bars),
   ties -> more assets, then earlier start, then later end. This keeps an asset that starts a little
   late (trimming the window a little) but leaves out one whose late start would cost more
   asset-bars than it adds (``usdtm-5m-2023``: the 5 assets starting 2 weeks late are left out;
   ``spot-5m-2024`` and ``mixed-1h-2022-2026``: the plain intersection of all assets).
7. ``late_start`` / ``delisted``  Against the window from rule 6: an asset whose data span (first to
   last valid bar) covers less than ``min_coverage`` of the window's bars is dropped entirely
   (``late_start`` if it starts after the window start, else ``delisted``). For each kept asset that
   starts after the window start (ends before the window end), the window start (end) is moved to its
   first (last) bar for ALL assets and that is reported -- except on an explicitly requested side,
   where a gap of at most floor(``max_missing_day_fraction`` x bars per day) bars (57 at 5m, 4 at 1h,
   0 at 1d) is filled instead (leading bars back-filled from the first real bar's open; trailing
   bars forward-filled), so one asset missing the first few bars does not move the requested start.
   Coverage = bars of the window between the asset's first and last valid bar / bars of the window.
8. ``missing_bars``  Inside the window a missing bar (none, or dropped by rules 3-5) is filled from
   the previous real bar: open = high = low = close = its close, volume = 0, ``filled = True``. The
   previous real bar may precede the window (data read before the start); if there is none, the
   leading bars are back-filled from the first real bar (rule 7's allowance).
9. ``dropped_asset_day``  An asset with more than ``max_missing_day_fraction`` of the bars of a UTC
   day missing (filled), counted over that day's bars inside the panel, gets ``excluded = True`` for
   every bar of that day. It stays in the panel (prices filled) so the asset set is stable.

10. ``outage_window``  An asset-bar whose trailing ``signal_window_bars`` (50) bars hold more than
   ``max_filled_window_share`` (20 %) filled bars -- its own, or on average over the panel (an exchange-wide
   outage) -- gets ``excluded = True``: no entry on a signal window of forward-filled zeros.

Issue rules: bad_time, ohlc_inconsistent, bad_tick, price_jump, stray_rows, outage_window, out_of_order, mixed_interval, off_grid, bad_price, duplicate, duplicate_conflict, no_data,
window_clipped, late_start, delisted, missing_bars, dropped_asset_day, warmup_short (and skipped_files
from ``load_panel``). ``DataIssue.timestamps`` holds up to ``max_reported_timestamps`` of them.

``warmup_bars`` (keyword of ``align``) extends the panel by up to that many bars before the final
window start, as far as every kept asset has data; fewer than asked is reported (``warmup_short``).
``Panel.warmup_bars`` is the number of such leading bars. Output: symbols sorted alphabetically,
``open_time`` strictly increasing by ``bar_ms``, (T, N) C-contiguous float64 prices and bool flags.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from dolphin.data.contracts import Candles, DataError, DataIssue, Panel
from dolphin.timeutil import DAY_MS, bar_label, fmt_ms

WEEK_MS = 7 * DAY_MS
EARLIEST_MS = 1_230_940_800_000  # 2009-01-03 00:00 UTC, Bitcoin's genesis block: no crypto candle is older
MONDAY_OFFSET_MS = 4 * DAY_MS  # 1970-01-01 was a Thursday; Binance weekly bars open Monday 00:00 UTC


@dataclass(frozen=True)
class AlignRules:
    """Parameters of the alignment rules (see the module docstring for the rules themselves)."""

    bar_ms: int | None = None  # None: inferred, all assets must agree; else assets with another interval are dropped
    min_coverage: float = 0.9  # an asset whose span covers less of the window than this is dropped
    max_missing_day_fraction: float = 0.2  # asset-day excluded when more of its bars are missing
    grid_offset_ms: int | None = None  # grid anchor; None: Unix epoch (Monday 00:00 UTC for 1w bars)
    max_reported_timestamps: int = 1000  # per DataIssue; ``count`` always holds the full number
    # rules 4b-4e (bad ticks, persistent jumps, impossible times, stray rows)
    max_bar_ratio: float = 10.0  # a price > this x (or < 1/this of) the asset's neighbouring closes is absurd
    earliest_ms: int = EARLIEST_MS  # rows opening before this (before Bitcoin's genesis block) are dropped
    now_ms: int | None = None  # rows opening after now + one bar are dropped; None: the wall clock
    stray_gap_ms: int = 7 * DAY_MS  # rows cut off from the rest of an asset's data by a gap longer than this...
    stray_max_bars: int = 288  # ...and holding at most this many bars are stray rows (dropped)
    # rule 10: outage gate -- no trading while the signal window holds too many filled bars
    signal_window_bars: int = 50  # the scanner's shortest correlation window
    max_filled_window_share: float = 0.2  # asset-bar excluded above this share of filled bars in the window

    def __post_init__(self):
        if self.bar_ms is not None and int(self.bar_ms) <= 0:
            raise ValueError(f"AlignRules.bar_ms must be positive, got {self.bar_ms}")
        if not 0.0 < self.min_coverage <= 1.0:
            raise ValueError(f"AlignRules.min_coverage must be in (0, 1], got {self.min_coverage}")
        if not 0.0 <= self.max_missing_day_fraction <= 1.0:
            raise ValueError(f"AlignRules.max_missing_day_fraction must be in [0, 1], got {self.max_missing_day_fraction}")
        if self.max_reported_timestamps < 0:
            raise ValueError("AlignRules.max_reported_timestamps must be >= 0")
        if not self.max_bar_ratio > 1.0:
            raise ValueError(f"AlignRules.max_bar_ratio must be > 1, got {self.max_bar_ratio}")
        if self.signal_window_bars < 1:
            raise ValueError("AlignRules.signal_window_bars must be >= 1")
        if not 0.0 <= self.max_filled_window_share <= 1.0:
            raise ValueError(f"AlignRules.max_filled_window_share must be in [0, 1], got {self.max_filled_window_share}")

    def offset_for(self, bar_ms: int) -> int:
        if self.grid_offset_ms is not None:
            return int(self.grid_offset_ms) % bar_ms
        return MONDAY_OFFSET_MS if bar_ms == WEEK_MS else 0


@dataclass
class _Series:
    """One asset's rows during cleaning; ``rows`` maps back to the caller's row indices."""

    symbol: str
    src: Candles
    t: np.ndarray
    v: list  # [open, high, low, close, volume] arrays (views of the input until a row is dropped)
    rows: np.ndarray | None  # None: identity (no row moved or dropped yet)
    jumps: list = field(default_factory=list)  # bar opens of persistent price jumps (excluded from trading)

    def src_rows(self, sel) -> np.ndarray:
        """Caller's row indices of the current rows selected by ``sel`` (bool mask or indices)."""
        idx = np.asarray(sel)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return idx if self.rows is None else self.rows[idx]


def _distinct_sorted(open_time) -> np.ndarray:
    t = np.asarray(open_time, dtype=np.int64)
    if t.shape[0] > 1 and np.any(t[1:] < t[:-1]):
        t = np.sort(t)
    if t.shape[0] > 1:
        t = t[np.r_[True, t[1:] != t[:-1]]]
    return t


def infer_bar_ms(open_time) -> int | None:
    """Median spacing of the distinct timestamps (an actual spacing, never an average of two)."""
    t = np.asarray(open_time, dtype=np.int64)
    if t.shape[0] < 2:
        return None
    d = np.diff(t)
    if d[0] > 0 and (d == d[0]).all():  # regular series: the common case, without temporaries
        return int(d[0])
    t = _distinct_sorted(t)
    if t.shape[0] < 2:
        return None
    d = np.diff(t)
    return int(np.partition(d, d.shape[0] // 2)[d.shape[0] // 2])


def find_gaps(open_time, bar_ms: int) -> list[tuple[int, int]]:
    """Runs of missing bars between the first and last bar: [(first missing bar open, n missing)]."""
    t = _distinct_sorted(open_time)
    if t.shape[0] < 2:
        return []
    d = np.diff(t)
    at = np.flatnonzero(d > bar_ms)
    return [(int(t[i]) + bar_ms, int(d[i] // bar_ms) - 1) for i in at]


def align(
    candles: dict,
    rules: AlignRules = AlignRules(),
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
    warmup_bars: int = 0,
) -> Panel:
    """Align raw candles ``{symbol: Candles}`` on one UTC grid (rules in the module docstring)."""
    rules = rules or AlignRules()
    if not candles:
        raise DataError("align: no candles given")
    if start_ms is not None and end_ms is not None and start_ms > end_ms:
        raise DataError(f"align: start {fmt_ms(start_ms)} is after end {fmt_ms(end_ms)}")
    if warmup_bars < 0:
        raise ValueError("warmup_bars must be >= 0")
    issues: list[DataIssue] = []
    cap = rules.max_reported_timestamps

    series = [_sorted_series(sym, candles[sym], issues, cap) for sym in sorted(candles)]
    bar_ms = _decide_bar(series, rules, issues, cap, _window_text(start_ms, end_ms))
    series = [s for s in series if s is not None]
    offset = rules.offset_for(bar_ms)

    kept_series = []
    now_ms = int(time.time() * 1000) if rules.now_ms is None else int(rules.now_ms)
    for s in series:
        _drop_bad_times(s, rules.earliest_ms, now_ms + bar_ms, issues, cap)
        _drop_off_grid(s, bar_ms, offset, issues, cap)
        _drop_bad_prices(s, issues, cap)
        _drop_inconsistent_ohlc(s, issues, cap)
        _drop_duplicates(s, issues, cap)
        _drop_bad_ticks(s, rules.max_bar_ratio, issues, cap)
        _adjust_jumps(s, rules.max_bar_ratio, issues, cap)
        _drop_stray_rows(s, bar_ms, rules, issues, cap)
        if s.t.shape[0] == 0:
            issues.append(DataIssue("no_data", s.symbol, 0, (), "dropped: no valid bar", s.src.source))
        else:
            kept_series.append(s)
    if not kept_series:
        raise DataError("align: no asset has a valid bar" + _window_text(start_ms, end_ms))

    win = _Window(kept_series, bar_ms, offset, rules, start_ms, end_ms, issues, cap)
    members = [s for s, k in zip(kept_series, win.kept) if k]
    ws = win.extend_warmup(members, warmup_bars)
    return _build_panel(members, bar_ms, ws, win.end, win.start, rules, issues)


# ----------------------------------------------------------------------------------------------
# rules 1-5: per-asset row cleaning


def _ts(values, cap: int) -> tuple:
    return tuple(int(x) for x in np.asarray(values)[:cap].tolist())


def _sorted_series(sym: str, c: Candles, issues: list, cap: int) -> _Series:
    where = c.source or sym
    try:
        t = np.asarray(c.open_time)
        if t.dtype.kind == "f":
            if not np.all(np.isfinite(t) & (t == np.floor(t))):
                raise DataError(f"{sym} ({where}): open_time has non-integer values")
        t = t.astype(np.int64, copy=False)
        v = [np.asarray(a, dtype=np.float64) for a in (c.open, c.high, c.low, c.close, c.volume)]
    except (TypeError, ValueError) as exc:
        raise DataError(f"{sym} ({where}): candle arrays are not numeric ({exc})") from None
    if t.ndim != 1 or any(a.shape != t.shape for a in v):
        raise DataError(f"{sym} ({where}): candle arrays differ in length / shape")
    rows = None
    if t.shape[0] > 1 and np.any(t[1:] < t[:-1]):
        late = np.zeros(t.shape[0], bool)
        late[1:] = t[1:] < np.maximum.accumulate(t)[:-1]
        order = np.argsort(t, kind="stable")
        issues.append(DataIssue(
            "out_of_order", sym, int(late.sum()), _ts(t[late], cap),
            "rows sorted by open_time (rows listed came after a later bar)", c.sources_of(np.flatnonzero(late)),
        ))
        t, v, rows = t[order], [a[order] for a in v], order
    return _Series(sym, c, t, v, rows)


def _decide_bar(series: list, rules: AlignRules, issues: list, cap: int, window: str = "") -> int:
    intervals = {s.symbol: infer_bar_ms(s.t) for s in series}
    known = {k: v for k, v in intervals.items() if v is not None}
    if rules.bar_ms is not None:
        bar = int(rules.bar_ms)
    else:
        distinct = sorted(set(known.values()))
        if not distinct:
            raise DataError(
                f"align: cannot infer the bar interval: every asset has fewer than 2 bars{window} (a window "
                "outside the data?); pass --bar-ms / AlignRules(bar_ms=...)"
            )
        if len(distinct) > 1:
            groups = "; ".join(
                f"{bar_label(b)}: {', '.join(k for k, v in known.items() if v == b)}" for b in distinct
            )
            raise DataError(
                f"align: mixed bar intervals ({groups}); pass AlignRules(bar_ms=...) / --bar-ms to keep one "
                "interval (assets with another interval are then dropped and reported)"
            )
        bar = distinct[0]
    if bar >= 28 * DAY_MS:
        raise DataError(f"align: bar interval {bar_label(bar)}: calendar-month bars are not supported")
    for i, s in enumerate(series):
        iv = intervals[s.symbol]
        if iv is not None and iv != bar:
            issues.append(DataIssue(
                "mixed_interval", s.symbol, int(s.t.shape[0]), _ts(s.t[:1], cap),
                f"dropped: its bars are {bar_label(iv)} apart, the panel uses {bar_label(bar)}", s.src.source,
            ))
            series[i] = None
    return bar


def _keep(s: _Series, mask: np.ndarray) -> None:
    s.t, s.v = s.t[mask], [a[mask] for a in s.v]
    s.rows = np.flatnonzero(mask) if s.rows is None else s.rows[mask]


def _drop_off_grid(s: _Series, bar: int, offset: int, issues: list, cap: int) -> None:
    off = np.remainder(s.t - offset if offset else s.t, bar) != 0
    if off.any():
        issues.append(DataIssue(
            "off_grid", s.symbol, int(off.sum()), _ts(s.t[off], cap),
            f"dropped: open_time is not on the {bar_label(bar)} UTC grid", s.src.sources_of(s.src_rows(off)),
        ))
        _keep(s, ~off)


def _drop_bad_prices(s: _Series, issues: list, cap: int) -> None:
    o, h, l, c, vol = s.v
    nan_px = ~(np.isfinite(o) & np.isfinite(h) & np.isfinite(l) & np.isfinite(c))
    zero_px = (o == 0) | (h == 0) | (l == 0) | (c == 0)
    neg_px = (o < 0) | (h < 0) | (l < 0) | (c < 0)
    bad_vol = ~np.isfinite(vol) | (vol < 0)
    bad = nan_px | zero_px | neg_px | bad_vol
    if bad.any():
        what = [f"{int(m.sum())} {name}" for m, name in (
            (nan_px, "NaN/inf price"), (zero_px, "zero price"), (neg_px, "negative price"), (bad_vol, "NaN/negative volume"),
        ) if m.any()]
        issues.append(DataIssue(
            "bad_price", s.symbol, int(bad.sum()), _ts(s.t[bad], cap),
            f"row dropped, bar treated as missing ({', '.join(what)})", s.src.sources_of(s.src_rows(bad)),
        ))
        _keep(s, ~bad)


def _drop_duplicates(s: _Series, issues: list, cap: int) -> None:
    n = s.t.shape[0]
    if n < 2:
        return
    last_of_run = np.ones(n, bool)
    last_of_run[:-1] = s.t[:-1] != s.t[1:]
    if last_of_run.all():
        return
    dropped = np.flatnonzero(~last_of_run)
    winner = np.searchsorted(s.t, s.t[dropped], side="right") - 1
    same = np.logical_and.reduce([a[dropped] == a[winner] for a in s.v])
    for mask, rule, action in (
        (same, "duplicate", "identical duplicate row(s) dropped"),
        (~same, "duplicate_conflict",
         "rows for one bar disagree: kept the LAST row read (later file / later line), dropped the earlier one(s)"),
    ):
        if mask.any():
            idx = dropped[mask]
            issues.append(DataIssue(
                rule, s.symbol, int(idx.shape[0]), _ts(np.unique(s.t[idx]), cap), action,
                s.src.sources_of(np.concatenate([s.src_rows(idx), s.src_rows(winner[mask])])),
            ))
    _keep(s, last_of_run)


def _drop_bad_times(s: _Series, earliest: int, latest: int, issues: list, cap: int) -> None:
    # a stray row dated 2100 would otherwise become an asset's "last bar" and take over the window choice
    early, late = s.t < earliest, s.t > latest
    for mask, what in ((early, lambda: f"before {fmt_ms(earliest)} (no crypto market existed)"),
                       (late, lambda: f"after {fmt_ms(latest)} (in the future)")):
        if mask.any():
            issues.append(DataIssue(
                "bad_time", s.symbol, int(mask.sum()), _ts(s.t[mask], cap),
                f"row dropped: open_time {what()}", s.src.sources_of(s.src_rows(mask)),
            ))
    bad = early | late
    if bad.any():
        _keep(s, ~bad)


def _drop_inconsistent_ohlc(s: _Series, issues: list, cap: int) -> None:
    o, h, l, c, _ = s.v
    bad = (h < l) | (o > h) | (o < l) | (c > h) | (c < l)
    if bad.any():
        inverted = int((h < l)[bad].sum())
        issues.append(DataIssue(
            "ohlc_inconsistent", s.symbol, int(bad.sum()), _ts(s.t[bad], cap),
            f"row dropped, bar treated as missing (high < low in {inverted}, open/close outside [low, high] "
            f"in {int(bad.sum()) - inverted})", s.src.sources_of(s.src_rows(bad)),
        ))
        _keep(s, ~bad)


_NEIGHBOURS = 3  # closes each side forming an asset's own local price level


def _side_median(lc: np.ndarray, i: int, before: bool) -> float:
    k = _NEIGHBOURS
    part = lc[max(0, i - k):i] if before else lc[i + 1:i + 1 + k]
    return float(np.median(part)) if part.size else float("nan")


def _drop_bad_ticks(s: _Series, ratio: float, issues: list, cap: int) -> None:
    """A bar with a price more than ``ratio`` x away from the asset's closes on BOTH sides of it (the
    level it left and the level it came back to) is a bad tick: a 1e300 print, a 720x wick."""
    n = s.t.shape[0]
    if n < 2:
        return
    lim = math.log(ratio)
    _, h, l, c, _ = s.v  # rows are OHLC-consistent here (rule 4c): high is the bar's max, low its min
    # cheap screen without logs: the bar's range reaches beyond ratio x the previous or the next close
    hr, lr = h / ratio, l * ratio
    far = hr > l
    far[1:] |= (hr[1:] > c[:-1]) | (lr[1:] < c[:-1])  # vs the previous close
    far[:-1] |= (hr[:-1] > c[1:]) | (lr[:-1] < c[1:])  # vs the next close
    cand = np.flatnonzero(far)
    if cand.size == 0:
        return
    lc = np.log(c)
    bad = np.zeros(n, bool)
    for i in cand.tolist():
        refs = [r for r in (_side_median(lc, i, True), _side_median(lc, i, False)) if math.isfinite(r)]
        prices = tuple(math.log(a[i]) for a in s.v[:4])
        if refs and any(min(abs(x - r) for r in refs) > lim for x in prices):
            bad[i] = True
    if bad.any():
        issues.append(DataIssue(
            "bad_tick", s.symbol, int(bad.sum()), _ts(s.t[bad], cap),
            f"row dropped, bar treated as missing: a price more than {ratio:g}x away from the asset's own "
            f"closes before and after it", s.src.sources_of(s.src_rows(bad)),
        ))
        _keep(s, ~bad)


def _adjust_jumps(s: _Series, ratio: float, issues: list, cap: int) -> None:
    """A close-to-close move of more than ``ratio`` x that does not revert (a redenomination: COCOS
    0.000695 -> 0.698 on 2021-01-23) is no tradable return: earlier prices are rescaled by the jump so
    the return across it is zero (missing), later returns are unchanged, and the jump bar is excluded
    from trading. Volume is left as recorded."""
    n = s.t.shape[0]
    if n < 2:
        return
    c = s.v[3]
    at = np.flatnonzero((c[1:] > c[:-1] * ratio) | (c[1:] * ratio < c[:-1])) + 1
    if at.size == 0:
        return
    o, h, l, c, vol = (a.copy() for a in s.v)
    factors = []
    for i in at[::-1].tolist():  # latest first: each factor applies to everything before its jump
        f = c[i] / c[i - 1]
        for a in (o, h, l, c):
            a[:i] *= f
        factors.append(f)
    s.v = [o, h, l, c, vol]
    s.jumps.extend(int(x) for x in s.t[at])
    what = ", ".join(f"{fmt_ms(t)} x{f:.6g}" for t, f in zip(s.t[at][:5].tolist(), factors[::-1][:5]))
    issues.append(DataIssue(
        "price_jump", s.symbol, int(at.size), _ts(s.t[at], cap),
        f"persistent price jump(s) of more than {ratio:g}x in one bar ({what}): the return across it is treated "
        "as missing (earlier prices rescaled by the jump, volume unchanged), the bar is excluded from trading",
        s.src.sources_of(s.src_rows(at)),
    ))


def _drop_stray_rows(s: _Series, bar: int, rules: AlignRules, issues: list, cap: int) -> None:
    """Small islands of rows cut off from the asset's main body by a long gap (a stray row dated
    years before the rest) would stretch the asset's span and steer the window choice."""
    n = s.t.shape[0]
    if n < 2:
        return
    cut = np.flatnonzero(np.diff(s.t) > rules.stray_gap_ms) + 1
    if cut.size == 0:
        return
    bounds = np.r_[0, cut, n]
    sizes = np.diff(bounds)
    main = int(np.argmax(sizes))
    stray = np.zeros(n, bool)
    for k in range(sizes.shape[0]):
        if k != main and sizes[k] <= rules.stray_max_bars:
            stray[bounds[k]:bounds[k + 1]] = True
    if stray.any():
        issues.append(DataIssue(
            "stray_rows", s.symbol, int(stray.sum()), _ts(s.t[stray], cap),
            f"row(s) dropped: cut off from the asset's other {n - int(stray.sum())} bar(s) by a gap of more than "
            f"{bar_label(rules.stray_gap_ms)} (at most {rules.stray_max_bars} bars on their side)",
            s.src.sources_of(s.src_rows(stray)),
        ))
        _keep(s, ~stray)


# ----------------------------------------------------------------------------------------------
# rules 6-7: the window


def _window_text(start_ms, end_ms) -> str:
    if start_ms is None and end_ms is None:
        return ""
    a = fmt_ms(start_ms) if start_ms is not None else "(data start)"
    b = fmt_ms(end_ms) if end_ms is not None else "(data end)"
    return f" in the window {a} .. {b}"


class _Window:
    """Chooses the window and the kept assets; reports rules 6-7."""

    def __init__(self, series, bar, offset, rules: AlignRules, start_ms, end_ms, issues, cap):
        self.bar, self.rules, self.issues, self.cap = bar, rules, issues, cap
        self.symbols = [s.symbol for s in series]
        self.sources = [s.src.source for s in series]
        self.f = np.array([s.t[0] for s in series], dtype=np.int64)
        self.l = np.array([s.t[-1] for s in series], dtype=np.int64)
        allow = int(math.floor(rules.max_missing_day_fraction * (DAY_MS // bar))) if bar <= DAY_MS else 0

        req_s = req_e = None
        if start_ms is not None:
            req_s = offset + -((offset - int(start_ms)) // bar) * bar  # ceil onto the grid
        if end_ms is not None:
            req_e = offset + ((int(end_ms) - offset) // bar) * bar  # floor onto the grid
        if req_s is not None and req_e is not None and req_s > req_e:
            raise DataError(f"align: no {bar_label(bar)} bar opens in the window{_window_text(start_ms, end_ms)}")
        lo, hi = int(self.f.min()), int(self.l.max())
        if (req_s is not None and req_s > hi) or (req_e is not None and req_e < lo):
            raise DataError(
                f"align: no data{_window_text(start_ms, end_ms)}: the assets' data spans "
                f"{fmt_ms(lo)} .. {fmt_ms(hi)}"
            )
        if req_s is not None and req_s < lo:
            self._report_clip("start", req_s, lo)
            req_s = lo
        if req_e is not None and req_e > hi:
            self._report_clip("end", req_e, hi)
            req_e = hi
        lead_allow = allow if req_s is not None else 0
        trail_allow = allow if req_e is not None else 0

        if req_s is None or req_e is None:
            ref_s, ref_e = self._common_window(req_s, req_e, lead_allow, trail_allow)
        else:
            ref_s, ref_e = req_s, req_e
        self._fit(ref_s, ref_e, lead_allow, trail_allow)

    def _report_clip(self, side, req, to):
        first_last = "first" if side == "start" else "last"
        self.issues.append(DataIssue(
            "window_clipped", "*", 0, (int(req),),
            f"requested {side} {fmt_ms(req)} is beyond every asset's data: {side} set to the {first_last} bar "
            f"of any asset, {fmt_ms(to)}",
        ))

    def _evaluate(self, s, e, lead_allow, trail_allow):
        """Vectorised over candidate ends ``e`` (1-D): kept (E, N), final start (E,), final end (E,)."""
        bar, f, l = self.bar, self.f, self.l
        e = np.asarray(e, dtype=np.int64)[:, None]
        n = (e - s) // bar + 1
        overlap = np.clip((np.minimum(l[None, :], e) - np.maximum(f, s)[None, :]) // bar + 1, 0, None)
        kept = (overlap >= n * self.rules.min_coverage - 1e-9) & (n > 0)
        late = kept & (f[None, :] > s + lead_allow * bar)
        early = kept & (l[None, :] < e - trail_allow * bar)
        fs = np.where(late, f[None, :], s).max(axis=1)
        fe = np.where(early, l[None, :], e).min(axis=1)
        return kept, fs, fe

    def _common_window(self, req_s, req_e, lead_allow, trail_allow):
        starts = [req_s] if req_s is not None else np.unique(self.f).tolist()
        ends = np.array([req_e] if req_e is not None else np.unique(self.l), dtype=np.int64)
        best, best_key = None, None
        for s in starts:
            kept, fs, fe = self._evaluate(s, ends, lead_allow, trail_allow)
            nk = kept.sum(axis=1)
            bars = np.where(fe >= fs, (fe - fs) // self.bar + 1, 0)
            score = nk * bars
            for j in np.flatnonzero(score == score.max()):
                key = (int(score[j]), int(nk[j]), -int(fs[j]), int(fe[j]))
                if best_key is None or key > best_key:
                    best_key, best = key, (int(fs[j]), int(fe[j]))
        if best is None or best_key[0] == 0:
            raise DataError("align: no window is covered by any asset")
        # An explicit side stays as requested (the fit reports any trimming against it).
        return (req_s if req_s is not None else best[0]), (req_e if req_e is not None else best[1])

    def _fit(self, s, e, lead_allow, trail_allow):
        bar, f, l, cap = self.bar, self.f, self.l, self.cap
        kept, fs, fe = (x[0] for x in self._evaluate(s, [e], lead_allow, trail_allow))
        fs, fe = int(fs), int(fe)
        n = (e - s) // bar + 1
        win = f"the window {fmt_ms(s)} .. {fmt_ms(e)}"
        for i in np.flatnonzero(~kept):
            overlap = max(0, (min(l[i], e) - max(f[i], s)) // bar + 1)
            missing = np.concatenate([
                np.arange(s, min(f[i], e + bar), bar), np.arange(max(l[i] + bar, s), e + bar, bar),
            ])
            rule = "late_start" if f[i] > s else "delisted"
            self.issues.append(DataIssue(
                rule, self.symbols[i], int(n - overlap), _ts(missing, cap),
                f"dropped: its data {fmt_ms(f[i])} .. {fmt_ms(l[i])} covers {100 * overlap / n:.1f}% of {win} "
                f"(min_coverage {100 * self.rules.min_coverage:g}%)",
                self.sources[i],
            ))
        if fs > fe or not kept.any():
            spans = "; ".join(f"{self.symbols[i]} {fmt_ms(f[i])} .. {fmt_ms(l[i])}" for i in range(len(f)))
            raise DataError(f"align: no common window: no set of assets covers {win} together ({spans})")
        for i in np.flatnonzero(kept & (f > s + lead_allow * bar)):
            pct = 100 * (min(l[i], e) - f[i] + bar) / (n * bar)
            self.issues.append(DataIssue(
                "late_start", self.symbols[i], int((f[i] - s) // bar), _ts(np.arange(s, f[i], bar), cap),
                f"kept (covers {pct:.1f}% of {win}); its first bar is {fmt_ms(f[i])}, so the window starts at "
                f"{fmt_ms(fs)} for all assets", self.sources[i],
            ))
        for i in np.flatnonzero(kept & (l < e - trail_allow * bar)):
            pct = 100 * (l[i] - max(f[i], s) + bar) / (n * bar)
            self.issues.append(DataIssue(
                "delisted", self.symbols[i], int((e - l[i]) // bar), _ts(np.arange(l[i] + bar, e + bar, bar), cap),
                f"kept (covers {pct:.1f}% of {win}); its last bar is {fmt_ms(l[i])}, so the window ends at "
                f"{fmt_ms(fe)} for all assets", self.sources[i],
            ))
        self.kept, self.start, self.end = kept, fs, fe

    def extend_warmup(self, members, warmup_bars: int) -> int:
        if warmup_bars <= 0:
            return self.start
        have = int(max(s.t[0] for s in members))
        ws = min(self.start, max(self.start - warmup_bars * self.bar, have))
        got = (self.start - ws) // self.bar
        if got < warmup_bars:
            self.issues.append(DataIssue(
                "warmup_short", "*", int(got), (int(ws),),
                f"asked for {warmup_bars} warm-up bar(s) before {fmt_ms(self.start)}; only {got} exist for every "
                f"kept asset (data from {fmt_ms(have)})",
            ))
        return ws


# ----------------------------------------------------------------------------------------------
# rules 8-9: grid, fill, day exclusion


def _build_panel(members, bar, ws, we, start, rules: AlignRules, issues) -> Panel:
    cap = rules.max_reported_timestamps
    T, N = int((we - ws) // bar + 1), len(members)
    open_time = ws + np.arange(T, dtype=np.int64) * bar
    # Written straight into the (T, N) outputs: no intermediate copies (first-touch memory is costly).
    out = [np.empty((T, N)) for _ in range(5)]
    present = np.ones((T, N), bool)
    for j, s in enumerate(members):
        a, b = int(np.searchsorted(s.t, ws, side="left")), int(np.searchsorted(s.t, we, side="right"))
        if b - a == T:  # complete: no gap inside the panel
            for k in range(5):
                out[k][:, j] = s.v[k][a:b]
            continue
        row = np.zeros(T, bool)
        row[(s.t[a:b] - ws) // bar] = True
        present[:, j] = row
        # index (into rows a:b) of the last real bar at or before each grid row, -1 before the first;
        # leading gap: last real close before the panel, else back-filled from the first real open
        src = np.cumsum(row) - 1
        seed = s.v[3][a - 1] if a > 0 else s.v[0][0]
        close_ab = s.v[3][a:b]
        close_ff = close_ab[np.maximum(src, 0)] if b > a else np.full(T, seed)
        close_ff[src < 0] = seed
        for k in range(4):
            col = np.empty(T)
            col[row] = s.v[k][a:b]
            col[~row] = close_ff[~row]
            out[k][:, j] = col
        vol = np.zeros(T)
        vol[row] = s.v[4][a:b]
        out[4][:, j] = vol
        _report_missing(s, open_time[~row], ws, bar, cap, issues)

    filled = ~present
    excluded = _exclude_days(open_time, filled, [s.symbol for s in members], [s.src.source for s in members],
                             rules, issues)
    for j, s in enumerate(members):
        for t in s.jumps:
            if ws <= t <= we:
                excluded[(t - ws) // bar, j] = True
    _exclude_outages(open_time, filled, excluded, [s.symbol for s in members], rules, issues)
    return Panel(
        symbols=[s.symbol for s in members],
        bar_ms=int(bar),
        open_time=open_time,
        open=out[0],
        high=out[1],
        low=out[2],
        close=out[3],
        volume=out[4],
        filled=filled,
        excluded=excluded,
        issues=issues,
        warmup_bars=int((start - ws) // bar),
    )


def _report_missing(s: _Series, miss: np.ndarray, ws: int, bar: int, cap: int, issues: list) -> None:
    # no real bar before the panel: the leading bars were back-filled
    lead = int((s.t[0] - ws) // bar) if s.t[0] > ws else 0
    if lead:
        issues.append(DataIssue(
            "missing_bars", s.symbol, lead, _ts(miss[:lead], cap),
            f"first bar(s) missing: back-filled from the first real bar {fmt_ms(s.t[0])} "
            "(open=high=low=close=its open, volume=0, flagged filled)", s.src.source,
        ))
    rest = miss[lead:]
    if rest.size:
        runs = int(1 + np.count_nonzero(np.diff(rest) > bar))
        issues.append(DataIssue(
            "missing_bars", s.symbol, int(rest.size), _ts(rest, cap),
            f"forward-filled in {runs} gap(s): open=high=low=close=previous close, volume=0, flagged filled",
            s.src.source,
        ))


def _exclude_days(open_time, filled, symbols, sources, rules: AlignRules, issues) -> np.ndarray:
    T, N = filled.shape
    excluded = np.zeros((T, N), bool)
    if not filled.any():
        return excluded
    day = open_time // DAY_MS
    starts = np.flatnonzero(np.r_[True, day[1:] != day[:-1]])
    per_day = np.diff(np.r_[starts, T])
    missing = np.add.reduceat(filled.astype(np.int32), starts, axis=0)
    bad = missing > rules.max_missing_day_fraction * per_day[:, None]
    if not bad.any():
        return excluded
    excluded[:] = np.repeat(bad, per_day, axis=0)
    cap = rules.max_reported_timestamps
    for j in np.flatnonzero(bad.any(axis=0)):
        for d in np.flatnonzero(bad[:, j]):
            a, n = starts[d], per_day[d]
            issues.append(DataIssue(
                "dropped_asset_day", symbols[j], int(n), _ts(open_time[a:a + n], cap),
                f"excluded from trading for UTC day {fmt_ms(day[a] * DAY_MS)[:10]}: {missing[d, j]} of its {n} bar(s) "
                f"missing (> {100 * rules.max_missing_day_fraction:g}%); prices filled, asset stays in the panel",
                sources[j],
            ))
    return excluded


def _exclude_outages(open_time, filled, excluded, symbols, rules: AlignRules, issues) -> None:
    """Rule 10: an asset-bar whose trailing signal window (``signal_window_bars``, the bar itself included)
    holds more than ``max_filled_window_share`` filled bars -- its own, or on average over the panel (an
    exchange-wide outage) -- is excluded: a correlation window of forward-filled zeros is no signal."""
    T, N = filled.shape
    if not filled.any() or T == 0:
        return
    W, lim, cap = rules.signal_window_bars, rules.max_filled_window_share, rules.max_reported_timestamps
    csum = np.cumsum(filled, axis=0, dtype=np.int64)
    win = csum.copy()
    win[W:] -= csum[:-W]
    # integer counts against integer limits: 10 of 50 is exactly 20 %, not 20.000000000000004 %
    own_max = math.floor(lim * W + 1e-9)
    own = win > own_max
    market = win.sum(axis=1) > math.floor(lim * W * N + 1e-9)
    if market.any():
        new = market & ~excluded.all(axis=1)
        issues.append(DataIssue(
            "outage_window", "*", int(market.sum()), _ts(open_time[market], cap),
            f"excluded from trading for every asset: the {W}-bar signal window holds more than {100 * lim:g}% "
            f"filled bars on average over the panel (an exchange-wide outage); {int(new.sum())} bar(s) not already "
            "excluded", "",
        ))
        excluded[market, :] = True
    for j in np.flatnonzero((own & ~market[:, None]).any(axis=0)):
        m = own[:, j] & ~market & ~excluded[:, j]
        if m.any():
            issues.append(DataIssue(
                "outage_window", symbols[j], int(m.sum()), _ts(open_time[m], cap),
                f"excluded from trading: its {W}-bar signal window holds more than {100 * lim:g}% filled bars", "",
            ))
            excluded[m, j] = True

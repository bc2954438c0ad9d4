"""Order-book features: pure functions from a book *band summary* to the four features DOLPHIN publishes.

Public API (signatures stable; the live publisher and the ``bookDepth`` archive reader both import them):

    BandDepth(bid_notional, ask_notional)             cumulative quote notional within the band, per side
    BookParams(band_pct, order_notional, depth_half_life_s, price_half_life_s, move_scale)
    BookState(ref_depth, ref_mid, ts_ms)              history carried from one observation to the next
    BookFeatures(imbalance, depth_quality, fill_prob, agreement)
    BookSideError(ValueError)                         an empty / crossed / malformed side (caller names the symbol)
    band_from_levels(bids, asks, band_pct) -> (BandDepth, mid)          live book levels (top-20 or a full book)
    band_from_cumulative(rows, band_pct) -> BandDepth                   archive rows (percentage, notional)
    mid_from_cumulative(rows, band_pct) -> float                        archive rows (percentage, depth, notional)
    ewma(prev, x, dt_s, half_life_s) -> float
    imbalance(band) -> float in [-1, 1]
    depth_quality(band, ref_depth) -> float in [0, 1]
    fill_prob(band, order_notional) -> float in [0, 1]
    agreement(imb, mid, ref_mid, move_scale) -> float in [-1, 1]
    step(state, band, mid, ts_ms, params) -> (BookFeatures, BookState)  all four + the next state

One input shape for both sources. A *band summary* is the cumulative quote notional (price x quantity, USDT)
resting within ``band_pct`` percent of the mid on each side:

* live (``<sym>@depth20@500ms``): ``band_from_levels`` sums ``price * qty`` of the levels with
  ``bid >= mid * (1 - band/100)`` and ``ask <= mid * (1 + band/100)``. A top-20 book often spans less than the
  band (BTCUSDT's 20 levels cover a few basis points): then the band holds what is visible, a lower bound.
* archive (Binance ``bookDepth`` files: rows ``timestamp, percentage, depth, notional``, percentage in
  -5..-1 (bids) and 1..5 (asks), cumulative from the mid, about every 30 s): ``band_from_cumulative`` takes the
  rows at ``-band_pct`` and ``+band_pct``.

Band: 1 % (``BookParams.band_pct``). It is the narrowest band the ``bookDepth`` archive publishes over its
whole history (2023 on), and the depth an exit actually walks: a stressed exit of a DOLPHIN-size order moves
the price by basis points, not percents. Wider bands mostly add quotes that are cancelled before they trade.

Normalisation. The two sources see different absolute depth (top-20 vs a 1 % band), so every feature is either
a ratio within one observation (imbalance), a ratio to the *same source's own* history (depth_quality), or a
ratio of depth to a fixed order size (fill_prob). A history built from one source must not be mixed with the
other's reference state.

Formulas (B = bid notional in band, A = ask notional in band, thin = min(B, A)):

* ``imbalance = (B - A) / (B + A)`` (0 when both are 0). + = bid pressure (matches the engine's flow port).
* ``depth_quality = clip(thin / ref_depth, 0, 1)`` where ``ref_depth`` is an EWMA of ``thin`` with a time
  half-life (``depth_half_life_s`` = 3600 s) taken *before* this observation joins it. The thinner side,
  because an exit of either direction is bounded by it (an empty side is quality 0 whatever the other holds);
  relative to the asset's own usual depth, because "normal" depth differs by orders of magnitude between BTC
  and a small cap; one hour, so that a liquidity withdrawal lasting minutes shows at full strength while the
  intraday session cycle of depth is followed. First observation: the reference is the observation (1.0 when
  thin > 0). Time-based EWMA weights (``1 - 2**(-dt/half_life)``) give a 500 ms feed and a 30 s archive the same
  time constant (a per-sample weight would make the archive's reference 60 times slower).
* ``fill_prob = exp(-order_notional / thin)`` (0 when thin = 0): the probability that an order of
  ``order_notional`` USDT (default 37 500 = 25 000 initial capital x 0.25 capital fraction x 6 max leverage,
  the engine's largest default position) is absorbed within the band. Displayed depth is an upper bound on
  what is still there when the order arrives (quotes are cancelled, others hit them first); we model the depth
  that remains as exponentially distributed with mean ``thin`` (the maximum-entropy law for a positive
  quantity with a known mean), so P(remaining >= order) = exp(-order / thin). Twenty times the order on the
  thin side gives 0.95; the order's own size gives 0.37. Absolute (in USDT) on purpose: the survival stack
  asks "can we get out", which depends on our size, not on the asset's habits.
* ``agreement = imbalance * tanh(log(mid / ref_mid) / move_scale)``: + when the book leans the way the price
  has been moving (bid-heavy and rising, ask-heavy and falling), - when it leans against it. ``ref_mid`` is an
  EWMA of the mid with ``price_half_life_s`` = 300 s (one bar of the 5 m grid the engine trades on), taken
  before this observation; ``move_scale`` = 0.002 (a 20 bp move gives tanh(1) = 0.76 of the imbalance). No
  mid (archive without a price), or no history yet: 0.

Everything here is deterministic and does no I/O; invalid numbers raise ``BookSideError`` / ``ValueError``
with what was wrong (the caller adds the symbol).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, NamedTuple, Sequence

import numpy as np

__all__ = ["cat3_inputs", "BOOK_HEALTHY", "BandDepth", "BookParams", "BookState", "BookFeatures", "BookSideError",
           "band_from_levels",
           "band_from_cumulative", "mid_from_cumulative", "ewma", "imbalance", "depth_quality", "fill_prob",
           "agreement", "step", "DEFAULT_PARAMS"]


class BookSideError(ValueError):
    """A book side that cannot be summarised: empty, crossed, non-finite or negative numbers, missing band."""


class BandDepth(NamedTuple):
    bid_notional: float  # cumulative quote notional (USDT) of bids within band_pct below the mid
    ask_notional: float  # cumulative quote notional (USDT) of asks within band_pct above the mid


class BookFeatures(NamedTuple):
    imbalance: float  # [-1, 1]
    depth_quality: float  # [0, 1]
    fill_prob: float  # [0, 1]
    agreement: float  # [-1, 1]


@dataclass(frozen=True)
class BookParams:
    band_pct: float = 1.0
    order_notional: float = 37_500.0
    depth_half_life_s: float = 3600.0
    price_half_life_s: float = 300.0
    move_scale: float = 0.002

    def __post_init__(self):
        for name in ("band_pct", "order_notional", "depth_half_life_s", "price_half_life_s", "move_scale"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"BookParams.{name} must be a positive finite number, got {v!r}")


DEFAULT_PARAMS = BookParams()


@dataclass(frozen=True)
class BookState:
    """History for one asset and one source: EWMA reference of the thin side, EWMA mid, last event time."""
    ref_depth: float | None = None
    ref_mid: float | None = None
    ts_ms: int | None = None


def _num(x, what: str) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise BookSideError(f"{what}: not a number ({x!r})") from None
    if not math.isfinite(v):
        raise BookSideError(f"{what}: not finite ({x!r})")
    return v


def _check_band(band: BandDepth) -> tuple[float, float]:
    b, a = _num(band.bid_notional, "bid notional"), _num(band.ask_notional, "ask notional")
    if b < 0 or a < 0:
        raise BookSideError(f"negative notional in band (bid {b}, ask {a})")
    return b, a


def band_from_levels(bids: Iterable[Sequence], asks: Iterable[Sequence],
                     band_pct: float = DEFAULT_PARAMS.band_pct) -> tuple[BandDepth, float]:
    """Live book levels ``[[price, qty], ...]`` (strings or numbers, any order) -> (band summary, mid).

    Levels with qty 0 are ignored (a diff-depth removal). Raises ``BookSideError`` for an empty side, a crossed
    or locked book (best bid >= best ask), or a non-finite / non-positive price or negative quantity."""
    def parse(levels, side):
        out = []
        for lv in levels:
            try:
                p, q = lv[0], lv[1]
            except (TypeError, IndexError, KeyError):
                raise BookSideError(f"{side} level {lv!r}: not [price, qty]") from None
            p, q = _num(p, f"{side} price"), _num(q, f"{side} qty")
            if p <= 0 or q < 0:
                raise BookSideError(f"{side} level [{p}, {q}]: price must be > 0 and qty >= 0")
            if q > 0:
                out.append((p, q))
        if not out:
            raise BookSideError(f"empty {side} side")
        return out

    b, a = parse(bids, "bid"), parse(asks, "ask")
    best_bid, best_ask = max(p for p, _ in b), min(p for p, _ in a)
    if best_bid >= best_ask:
        raise BookSideError(f"crossed book: best bid {best_bid:g} >= best ask {best_ask:g}")
    mid = 0.5 * (best_bid + best_ask)
    lo, hi = mid * (1.0 - band_pct / 100.0), mid * (1.0 + band_pct / 100.0)
    return (BandDepth(math.fsum(p * q for p, q in b if p >= lo), math.fsum(p * q for p, q in a if p <= hi)), mid)


def _rows_at(rows, band_pct: float, width: int) -> dict:
    found = {}
    seen = []
    for r in rows:
        if len(r) != width:
            raise BookSideError(f"archive row {r!r}: expected {width} fields")
        pct = _num(r[0], "percentage")
        seen.append(pct)
        for sign in (-1.0, 1.0):
            if math.isclose(pct, sign * band_pct, rel_tol=0, abs_tol=1e-9):
                found[sign] = r
    if -1.0 not in found or 1.0 not in found:
        raise BookSideError(f"no +/-{band_pct:g} % band in archive rows (percentages present: "
                            f"{sorted(set(seen))})")
    return found


def band_from_cumulative(rows: Iterable[Sequence], band_pct: float = DEFAULT_PARAMS.band_pct) -> BandDepth:
    """Archive ``bookDepth`` rows of one snapshot as ``(percentage, notional)`` -> band summary.

    ``percentage`` is signed (negative = bids), ``notional`` cumulative from the mid (Binance's format)."""
    found = _rows_at(rows, band_pct, 2)
    band = BandDepth(_num(found[-1.0][1], "bid notional"), _num(found[1.0][1], "ask notional"))
    _check_band(band)
    return band


def mid_from_cumulative(rows: Iterable[Sequence], band_pct: float = DEFAULT_PARAMS.band_pct) -> float:
    """Archive rows ``(percentage, depth, notional)`` -> a mid proxy: the mean of the two sides' average prices
    within the band (notional / depth). It is biased by the band's shape (a symmetric book cancels it); use a
    traded price (bar close) instead when one is at hand."""
    found = _rows_at(rows, band_pct, 3)
    px = []
    for sign, side in ((-1.0, "bid"), (1.0, "ask")):
        depth, notional = _num(found[sign][1], f"{side} depth"), _num(found[sign][2], f"{side} notional")
        if depth <= 0 or notional <= 0:
            raise BookSideError(f"empty {side} side within {band_pct:g} % (depth {depth:g}, notional {notional:g})")
        px.append(notional / depth)
    return 0.5 * (px[0] + px[1])


def ewma(prev: float | None, x: float, dt_s: float, half_life_s: float) -> float:
    """Time-weighted EWMA: ``prev + (1 - 2**(-dt/half_life)) * (x - prev)``; ``x`` when there is no ``prev``;
    ``prev`` unchanged when ``dt_s <= 0`` (a repeated or out-of-order timestamp adds no weight)."""
    if prev is None:
        return x
    if dt_s <= 0:
        return prev
    return prev + (1.0 - 2.0 ** (-dt_s / half_life_s)) * (x - prev)


def imbalance(band: BandDepth) -> float:
    b, a = _check_band(band)
    tot = b + a
    return 0.0 if tot == 0 else max(-1.0, min(1.0, (b - a) / tot))


def depth_quality(band: BandDepth, ref_depth: float | None) -> float:
    b, a = _check_band(band)
    thin = min(b, a)
    ref = thin if ref_depth is None else ref_depth
    if thin <= 0:
        return 0.0
    return 1.0 if ref <= 0 else max(0.0, min(1.0, thin / ref))


def fill_prob(band: BandDepth, order_notional: float = DEFAULT_PARAMS.order_notional) -> float:
    b, a = _check_band(band)
    thin = min(b, a)
    return 0.0 if thin <= 0 else max(0.0, min(1.0, math.exp(-order_notional / thin)))


def agreement(imb: float, mid: float | None, ref_mid: float | None,
              move_scale: float = DEFAULT_PARAMS.move_scale) -> float:
    if mid is None or ref_mid is None or not (mid > 0 and ref_mid > 0):
        return 0.0
    v = imb * math.tanh(math.log(mid / ref_mid) / move_scale)
    return max(-1.0, min(1.0, v))


def step(state: BookState, band: BandDepth, mid: float | None, ts_ms: int,
         params: BookParams = DEFAULT_PARAMS) -> tuple[BookFeatures, BookState]:
    """One observation at exchange time ``ts_ms``: the four features against the history *before* it, and the
    history after it. ``mid`` may be None (no price: agreement 0, mid reference unchanged)."""
    b, a = _check_band(band)
    if mid is not None:
        mid = _num(mid, "mid")
        if mid <= 0:
            raise BookSideError(f"mid must be > 0, got {mid:g}")
    imb = imbalance(band)
    feats = BookFeatures(imb, depth_quality(band, state.ref_depth), fill_prob(band, params.order_notional),
                         agreement(imb, mid, state.ref_mid, params.move_scale))
    dt_s = 0.0 if state.ts_ms is None else (ts_ms - state.ts_ms) / 1000.0
    thin = min(b, a)
    new = BookState(ref_depth=ewma(state.ref_depth, thin, dt_s, params.depth_half_life_s),
                    ref_mid=state.ref_mid if mid is None else ewma(state.ref_mid, mid, dt_s, params.price_half_life_s),
                    ts_ms=ts_ms if state.ts_ms is None else max(state.ts_ms, ts_ms))
    return feats, new


# a book is healthy enough for a maker (orderly) exit when both its depth quality and its fill probability are
# at least this: depth not below half its own recent normal, and the thinner side of the 1 % band holds at least
# ~54k USDT (fill_prob = exp(-37,500 / thin) >= 0.5), so a resting reduce-only limit is likely to be filled
BOOK_HEALTHY = 0.5


def cat3_inputs(depth_q, fill_p, age_s, max_age_s: float) -> tuple:
    """The survival stack's Cat3 inputs from per-asset books, one rule for the runtime and the backtest:
    ``(median depth_quality, median fill_prob, median age_s)`` over the assets whose book is at most
    ``max_age_s`` old, or ``(None, None, None)`` (stale: Cat3 0.5) unless a majority of the assets has one.

    Why the median over assets, not the minimum: Cat3 measures whether the market as a whole can be traded
    (the seeds' microstructure category); a minimum over 50 assets is the thinnest alt's book, which is thin
    almost always (on the backtest's book history Cat3 = min put the stack in TURTLE 98 % of the time). The
    traded asset's own book decides its orderly vs duress exit (``BOOK_HEALTHY``) and feeds the ranking."""
    d = np.asarray(depth_q, dtype=np.float64)
    f = np.asarray(fill_p, dtype=np.float64)
    a = np.asarray(age_s, dtype=np.float64)
    ok = np.isfinite(d) & np.isfinite(f) & np.isfinite(a) & (a <= max_age_s)
    n = d.size
    if n == 0 or 2 * int(ok.sum()) <= n:
        return None, None, None
    return float(np.median(d[ok])), float(np.median(f[ok])), float(np.median(a[ok]))

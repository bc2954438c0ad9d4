"""ACB v6 -- adaptive circuit breaker: a leverage multiplier ``boost`` and a regime weight ``beta``.

BLUE is SHORT-only. ``boost`` multiplies its leverage (``RiskInputs.acb_boost``; the kernel caps the
product at ``abs_max_leverage``). More stress / more cross-asset correlation -> shorts favoured -> boost
above 1; calm or greedy markets -> boost below 1. Why: crypto's joint (high-correlation) moves are skewed to
the downside (liquidation cascades, risk-off days), which is exactly the move BLUE's vel_div entries short;
calm, greedy tapes drift up and squeeze shorts, so the same signal should be sized down there.

Model (all constants live in ``AcbConfig`` / ``EXF_SIGNALS``; defaults below)
------------------------------------------------------------------------------
1. ExF stress score ``e`` in [-1, 1]: a weighted mean of per-indicator scores s_i in [-1, 1], over the
   indicators that are PRESENT (missing ones are skipped and listed in ``missing``; none present -> e = 0,
   coverage 0, said so in ``notes``). Each s_i = clip(sign * x_i / scale_i, -1, 1), with x_i one of:

   ============== ===== ============================== ====== ===== ======= ==================================
   indicator      form  x                              scale  sign  weight  why
   ============== ===== ============================== ====== ===== ======= ==================================
   fear_greed     level F - 50                         25     -     1.0     F <= 25 ("extreme fear" band of
                                                                            alternative.me) -> +1, F >= 75
                                                                            ("extreme greed") -> -1
   dvol_btc       ratio DVOL / ref - 1                 0.25   +     1.0     implied vol 25 % above its own
                                                                            past month -> +1 (stress)
   funding_btc_8h abs   |f| - 0.0001                   0.0003 +     0.5     either-side crowding: |f| >= 0.04 %
                                                                            /8h -> +1; 0.01 % (Binance's base
                                                                            rate) -> 0; 0 -> -1/3
   fred_BAMLH0..  diff  HY - ref (percentage points)   0.30   +     0.5     HY spread 30 bp wider than its past
                                                                            month -> +1 (credit risk-off)
   dxy            ratio DXY / ref - 1                  0.015  +     0.5     dollar +1.5 % vs past month -> +1
                                                                            (USD liquidity tightening)
   fred_T10Y2Y    diff  curve - ref (pp)               0.25   +     0.25    25 bp steepening -> +1 (bull
                                                                            steepener = cuts priced into
                                                                            weakness); low weight: the sign
                                                                            is ambiguous (bear steepeners)
   ============== ===== ============================== ====== ===== ======= ==================================

   ``ref`` = median of the indicator's daily values of the ``exf_ref_days`` (30) days BEFORE the day (at
   least ``exf_ref_min`` (10) present, else the indicator is missing). In a Mapping input the reference
   travels as ``"<name>:ref"`` (``exf_inputs`` builds it from a daily frame). Values outside an
   indicator's physical range (``ExfSignal.valid``) raise ``ValueError`` naming indicator, value and day.

2. Slow regime score ``r`` in (-1, 1): the daily value of the w750 eigenvalue velocity, d(D) = mean of the
   valid w750 velocities of the bars OPENING on UTC day D (missing when fewer than ``min_valid_frac`` (50 %)
   of the day's bars are valid). For day D: x = d(D-1) (known at D 00:00: that day's last bar closes
   then); the threshold p60 = 60th percentile (numpy 'linear') of the values before x, d(D-31 .. D-2)
   (``regime_window_days`` = 30, at least ``regime_min_days`` = 10 present; x is left out so the score is
   monotone in x), the spread = 1.4826 * MAD of the same values (a robust sigma), and
   r = tanh((x - p60) / spread): >0 when the slow correlation structure is tightening faster than it
   usually does. Intraday (``acb_on_scan``) x becomes an exponential moving average of the
   per-scan w750 velocity, started at d(D-1), with time constant ``ema_tau_hours`` = 12 h: an EMA with
   mean weight age tau averages about 2*tau = 24 h of bars, the same span as the daily mean the threshold
   was built from, so its noise matches the threshold's scale. p60 and spread stay fixed for the day; an
   invalid (NaN) scan neither feeds nor ages the EMA. ExF is daily only (unchanged intraday).

3. Blend: beta = weight of the regime term = w_R*c_R / (w_R*c_R + w_E*c_E), where c_E = present share of
   the ExF weight, c_R = min(1, regime days / regime_window_days) (0 when the regime term is missing),
   w_R = ``regime_weight`` = 1, w_E = ``exf_weight`` = 1 (so beta = 0.5 with full data; it rises when ExF
   sources fail, falls while the w750 history is short; both missing -> beta 0, boost 1, neutral).
   boost = 1 + ``amplitude`` * ((1 - beta) * e + beta * r), amplitude 0.5 -> boost in [0.5, 1.5] (a convex
   blend of two terms in [-1, 1]); 1.0 neutral. Monotone: non-decreasing in every stress input and in x.

4. Adverse turn (DESIGN.md, MIG6.3): a boost drop of MORE than ``adverse_drop`` (0.2) with a position
   open -> exit; limit (maker) order only when the book is known healthy, market otherwise.

Store: the state is one JSON record at ``DOLPHIN_FEATURES/acb_state`` with ``timestamp`` = ``updated_at``.
``publish_acb`` is a compare-and-set loop (``replace_if_same``; no server-side processor): a state never
replaces a newer one (order: updated_at, then last_date -- the daily state of D and the last scan of D-1
share the instant D 00:00, and D wins).

Backtest: ``boost_series`` gives per-bar (boost, beta), bar t of day D = daily state of D then every scan of
D up to and including t -- the same numba step functions as ``acb_on_scan`` (bit-identical).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from datetime import date, datetime, timezone
from typing import Mapping

import numpy as np
import pandas as pd
from numba import njit

from dolphin.store.port import ACB_STATE, FEATURES, FeatureStore, Record, iso_utc, publish_if_newer
from dolphin.timeutil import DAY_MS, day_str

log = logging.getLogger(__name__)

REF_SUFFIX = ":ref"  # Mapping key of an indicator's past reference level: "dvol_btc:ref"
MAD_TO_SIGMA = 1.4826  # MAD of a normal sample * 1.4826 = its standard deviation
W750 = "w750"  # name of the regime term in signals / missing
SOURCES = ("daily", "scan")
LEVEL, ABS_LEVEL, RATIO, DIFF = "level", "abs", "ratio", "diff"


@dataclass(frozen=True)
class ExfSignal:
    """One ExF indicator's contribution: s = clip(sign * x / scale, -1, 1) (see module docstring)."""

    name: str  # indicator name = file stem under <data>/exf
    form: str  # LEVEL: v - center; ABS_LEVEL: |v| - center; RATIO: v / ref - 1; DIFF: v - ref
    scale: float
    sign: float  # +1: higher x = more stress (boost up); -1: the reverse
    weight: float
    center: float = 0.0  # for LEVEL / ABS_LEVEL
    valid: tuple = (-math.inf, math.inf)  # physical range of the raw value (inclusive); outside -> error

    @property
    def needs_ref(self) -> bool:
        return self.form in (RATIO, DIFF)


EXF_SIGNALS: tuple = (
    ExfSignal("fear_greed", LEVEL, 25.0, -1.0, 1.0, center=50.0, valid=(0.0, 100.0)),
    ExfSignal("dvol_btc", RATIO, 0.25, 1.0, 1.0, valid=(1e-9, 500.0)),
    ExfSignal("funding_btc_8h", ABS_LEVEL, 0.0003, 1.0, 0.5, center=0.0001, valid=(-0.05, 0.05)),
    ExfSignal("fred_BAMLH0A0HYM2", DIFF, 0.30, 1.0, 0.5, valid=(0.0, 40.0)),
    ExfSignal("dxy", RATIO, 0.015, 1.0, 0.5, valid=(1e-9, 500.0)),
    ExfSignal("fred_T10Y2Y", DIFF, 0.25, 1.0, 0.25, valid=(-10.0, 10.0)),
)


@dataclass(frozen=True)
class AcbConfig:
    amplitude: float = 0.5  # boost = 1 + amplitude * blend, blend in [-1, 1] -> boost in [0.5, 1.5]
    exf_weight: float = 1.0  # w_E
    regime_weight: float = 1.0  # w_R
    regime_window_days: int = 30  # daily w750 values forming p60 / spread (the days before D-1)
    regime_min_days: int = 10  # fewer present -> regime term missing
    regime_percentile: float = 60.0
    min_valid_frac: float = 0.5  # share of a day's bars with a valid w750 velocity for a daily value
    ema_tau_hours: float = 12.0  # intraday EMA time constant (see docstring, point 2)
    exf_ref_days: int = 30  # past daily values forming an indicator's reference (median)
    exf_ref_min: int = 10
    adverse_drop: float = 0.2
    exf_signals: tuple = EXF_SIGNALS

    def __post_init__(self):
        if not 0 < self.amplitude < 1:
            raise ValueError(f"AcbConfig.amplitude must be in (0, 1) so boost stays positive, got {self.amplitude}")
        if self.exf_weight < 0 or self.regime_weight < 0 or self.exf_weight + self.regime_weight <= 0:
            raise ValueError("AcbConfig.exf_weight / regime_weight must be >= 0 and not both 0")
        if not 1 <= self.regime_min_days <= self.regime_window_days:
            raise ValueError("AcbConfig: need 1 <= regime_min_days <= regime_window_days")
        if not 1 <= self.exf_ref_min <= self.exf_ref_days:
            raise ValueError("AcbConfig: need 1 <= exf_ref_min <= exf_ref_days")
        if not 0 <= self.regime_percentile <= 100 or not 0 < self.min_valid_frac <= 1:
            raise ValueError("AcbConfig: regime_percentile in [0, 100], min_valid_frac in (0, 1]")
        if not self.ema_tau_hours > 0 or not self.adverse_drop > 0:
            raise ValueError("AcbConfig: ema_tau_hours and adverse_drop must be > 0")
        for s in self.exf_signals:
            if s.form not in (LEVEL, ABS_LEVEL, RATIO, DIFF) or not s.scale > 0 or s.weight < 0:
                raise ValueError(f"AcbConfig.exf_signals: bad entry {s}")

    @property
    def boost_range(self) -> tuple:
        return 1.0 - self.amplitude, 1.0 + self.amplitude

    @property
    def tau_ms(self) -> float:
        return self.ema_tau_hours * 3_600_000.0


DEFAULT = AcbConfig()


@dataclass(frozen=True)
class AcbState:
    boost: float
    beta: float
    exf_score: float  # e
    exf_coverage: float  # c_E: present share of the ExF weight
    regime_score: float  # r (0 when the regime term is missing)
    regime_days: int  # daily w750 values behind p60 (0: none)
    w750_value: float | None  # x: d(D-1) at 00:00, then the intraday EMA
    w750_threshold: float | None  # p60 of the past window
    w750_spread: float | None  # 1.4826 * MAD of the past window
    signals: dict  # name -> {"value", "ref", "score", "weight"}; "w750" -> regime breakdown
    missing: tuple  # indicators (and "w750") skipped
    notes: tuple  # why they were skipped, neutral fallbacks
    last_date: str  # UTC day (YYYY-MM-DD) the state belongs to
    updated_at: int  # epoch ms the state is as of
    source: str  # "daily" | "scan"

    @property
    def order_key(self) -> tuple:
        return int(self.updated_at), self.last_date

    def to_record(self) -> Record:
        v = {k: getattr(self, k) for k in ("boost", "beta", "exf_score", "exf_coverage", "regime_score",
                                           "regime_days", "w750_value", "w750_threshold", "w750_spread",
                                           "signals", "last_date", "source")}
        v["missing"], v["notes"] = list(self.missing), list(self.notes)
        return Record(v, iso_utc(int(self.updated_at)))

    @classmethod
    def from_record(cls, rec: Record) -> "AcbState":
        v = rec.value

        def num(name, lo=-math.inf, hi=math.inf, optional=False):
            x = v.get(name)
            if x is None and optional:
                return None
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or not lo <= x <= hi:
                raise ValueError(f"{FEATURES}/{ACB_STATE} @ {rec.timestamp}: field {name!r} = {x!r} is not a "
                                 f"finite number in [{lo}, {hi}]")
            return float(x)

        src = v.get("source")
        if src not in SOURCES:
            raise ValueError(f"{FEATURES}/{ACB_STATE} @ {rec.timestamp}: field 'source' = {src!r}, expected {SOURCES}")
        last = v.get("last_date")
        try:
            date.fromisoformat(last)
        except (TypeError, ValueError):
            raise ValueError(f"{FEATURES}/{ACB_STATE} @ {rec.timestamp}: field 'last_date' = {last!r} is not "
                             f"YYYY-MM-DD") from None
        for name in ("signals", "missing", "notes"):
            want = dict if name == "signals" else list
            if not isinstance(v.get(name), want):
                raise ValueError(f"{FEATURES}/{ACB_STATE} @ {rec.timestamp}: field {name!r} missing or not a "
                                 f"{want.__name__}")
        return cls(boost=num("boost", 0.0), beta=num("beta", 0.0, 1.0), exf_score=num("exf_score", -1.0, 1.0),
                   exf_coverage=num("exf_coverage", 0.0, 1.0), regime_score=num("regime_score", -1.0, 1.0),
                   regime_days=int(num("regime_days", 0)), w750_value=num("w750_value", optional=True),
                   w750_threshold=num("w750_threshold", optional=True),
                   w750_spread=num("w750_spread", 0.0, optional=True), signals=v["signals"],
                   missing=tuple(v["missing"]), notes=tuple(v["notes"]), last_date=last,
                   updated_at=rec.timestamp_ms, source=src)


# ---------------------------------------------------------------- numba step functions (shared live/backtest)
@njit(cache=True)
def _ema_step(ema, v, dt_ms, tau_ms):
    """Time-aware EMA: weight of the new value = 1 - exp(-dt / tau). NaN ema (no start value) -> v."""
    if not np.isfinite(ema):
        return v
    a = 1.0 - np.exp(-dt_ms / tau_ms)
    return ema + a * (v - ema)


@njit(cache=True)
def _combine(e, c_e, x, thr, spread, c_r, amp, w_e, w_r):
    """(boost, beta, r). Regime term present iff x, thr, spread are finite and spread > 0."""
    if np.isfinite(x) and np.isfinite(thr) and np.isfinite(spread) and spread > 0.0:
        r = np.tanh((x - thr) / spread)
        wr = w_r * c_r
    else:
        r = 0.0
        wr = 0.0
    we = w_e * c_e
    if wr + we <= 0.0:
        return 1.0, 0.0, 0.0
    beta = wr / (wr + we)
    blend = (1.0 - beta) * e + beta * r
    blend = min(1.0, max(-1.0, blend))  # float guard; mathematically already in [-1, 1]
    return 1.0 + amp * blend, beta, r


@njit(cache=True)
def _intraday(day_idx, ts, v, day_start, x0, thr, spread, c_r, e, c_e, amp, w_e, w_r, tau_ms):
    """Per bar: reset to the day's daily state on a new day, then one EMA step per valid scan."""
    T = ts.shape[0]
    boost = np.empty(T)
    beta = np.empty(T)
    cur = -1
    ema = np.nan
    last = 0
    for t in range(T):
        d = day_idx[t]
        if d != cur:
            cur = d
            ema = x0[d]
            last = day_start[d]
        if np.isfinite(v[t]):
            ema = _ema_step(ema, v[t], float(ts[t] - last), tau_ms)
        last = ts[t]
        b, bt, _ = _combine(e[d], c_e[d], ema, thr[d], spread[d], c_r[d], amp, w_e, w_r)
        boost[t] = b
        beta[t] = bt
    return boost, beta


# ---------------------------------------------------------------- helpers
def _day_ms(day) -> int:
    """UTC day start (epoch ms) from 'YYYY-MM-DD', date, datetime, pandas Timestamp or epoch ms at 00:00."""
    if isinstance(day, (int, np.integer)) and not isinstance(day, bool):
        ms = int(day)
        if ms % DAY_MS:
            raise ValueError(f"day {ms} (epoch ms) is not a UTC midnight")
        return ms
    if isinstance(day, str):
        day = date.fromisoformat(day[:10])
    if isinstance(day, datetime):  # includes pandas Timestamp
        dt = day.astimezone(timezone.utc) if day.tzinfo else day.replace(tzinfo=timezone.utc)
        ms = int(dt.timestamp() * 1000)
        if ms % DAY_MS:
            raise ValueError(f"day {day!r} is not a UTC midnight")
        return ms
    if isinstance(day, date):
        return int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp() * 1000)
    raise TypeError(f"day must be 'YYYY-MM-DD', a date/datetime or epoch ms, got {day!r}")


def _num(x, what: str) -> float | None:
    """None / NaN -> None (missing); other non-finite or non-numeric -> ValueError naming ``what``."""
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise ValueError(f"{what}: {x!r} is not a number")
    x = float(x)
    if math.isnan(x):
        return None
    if not math.isfinite(x):
        raise ValueError(f"{what}: {x!r} is not finite")
    return x


def _exf_term(exf: Mapping, day_label: str, cfg: AcbConfig) -> tuple:
    """(e, c_E, signals, missing, notes) from indicator values (+ ':ref' references)."""
    signals, missing, notes = {}, [], []
    num = den = total = 0.0
    for s in cfg.exf_signals:
        total += s.weight
        v = _num(exf.get(s.name), f"ExF {s.name} on {day_label}")
        if v is None:
            missing.append(s.name)
            notes.append(f"{s.name}: no value as of {day_label}")
            continue
        if not s.valid[0] <= v <= s.valid[1]:
            raise ValueError(f"ExF {s.name} on {day_label}: {v!r} outside its valid range {s.valid}")
        ref = None
        if s.needs_ref:
            ref = _num(exf.get(s.name + REF_SUFFIX), f"ExF {s.name}{REF_SUFFIX} on {day_label}")
            if ref is None:
                missing.append(s.name)
                notes.append(f"{s.name}: no past reference as of {day_label} (needs >= {cfg.exf_ref_min} of "
                             f"the {cfg.exf_ref_days} days before)")
                continue
            if not s.valid[0] <= ref <= s.valid[1]:
                raise ValueError(f"ExF {s.name}{REF_SUFFIX} on {day_label}: {ref!r} outside {s.valid}")
        if s.form == LEVEL:
            x = v - s.center
        elif s.form == ABS_LEVEL:
            x = abs(v) - s.center
        elif s.form == RATIO:
            x = v / ref - 1.0
        else:
            x = v - ref
        score = min(1.0, max(-1.0, s.sign * x / s.scale))
        signals[s.name] = {"value": v, "ref": ref, "score": score, "weight": s.weight}
        num += s.weight * score
        den += s.weight
    if den <= 0.0:
        notes.append("ExF term neutral: no indicator present")
        return 0.0, 0.0, signals, missing, notes
    return num / den, (den / total if total > 0 else 0.0), signals, missing, notes


def _regime_stats(past: np.ndarray, cfg: AcbConfig) -> tuple:
    """(x, p60, spread, n_days, note) from the daily w750 values before the day (last = the day before =
    x; p60 / spread from the ``regime_window_days`` values before x)."""
    past = np.asarray(past, dtype=np.float64).reshape(-1)
    if np.isinf(past).any():
        raise ValueError(f"w750_velocity_past: infinite value at index {int(np.flatnonzero(np.isinf(past))[0])}")
    # x = the day before; its threshold comes from the window BEFORE x, so the score is monotone in x
    win = past[max(0, past.size - 1 - cfg.regime_window_days):past.size - 1]
    fin = win[np.isfinite(win)]
    x = float(past[-1]) if past.size and np.isfinite(past[-1]) else None
    if fin.size < cfg.regime_min_days:
        return x, None, None, int(fin.size), (f"w750: {fin.size} daily values in the "
                                              f"{cfg.regime_window_days} days before the last, need "
                                              f"{cfg.regime_min_days}")
    thr = float(np.percentile(fin, cfg.regime_percentile))
    spread = float(MAD_TO_SIGMA * np.median(np.abs(fin - np.median(fin))))
    if not spread > 0.0:
        return x, thr, None, int(fin.size), "w750: past daily values have no spread (MAD 0)"
    note = None if x is not None else ("w750: no daily value for the previous day (the intraday EMA starts at "
                                       "the first valid scan)")
    return x, thr, spread, int(fin.size), note


def _f(x) -> float:
    return np.nan if x is None else float(x)


def _assemble(cfg, e, c_e, x, thr, spread, n_days, signals, missing, notes, last_date, updated_at, source) -> AcbState:
    c_r = min(1.0, n_days / cfg.regime_window_days)
    boost, beta, r = _combine(e, c_e, _f(x), _f(thr), _f(spread), c_r, cfg.amplitude, cfg.exf_weight,
                              cfg.regime_weight)
    present = x is not None and thr is not None and spread is not None
    signals = {k: v for k, v in signals.items() if k != W750}
    signals[W750] = {"value": x, "threshold": thr, "spread": spread, "days": n_days,
                     "score": float(r) if present else None}
    missing = [m for m in missing if m != W750] + ([] if present else [W750])
    return AcbState(boost=float(boost), beta=float(beta), exf_score=float(e), exf_coverage=float(c_e),
                    regime_score=float(r), regime_days=int(n_days), w750_value=x, w750_threshold=thr,
                    w750_spread=spread, signals=signals, missing=tuple(missing), notes=tuple(notes),
                    last_date=last_date, updated_at=int(updated_at), source=source)


# ---------------------------------------------------------------- public API
def acb_daily(exf: Mapping, w750_velocity_past: np.ndarray, day, cfg: AcbConfig = DEFAULT) -> AcbState:
    """Daily state of UTC ``day``, as of its 00:00.

    ``exf``: indicator values known at ``day`` 00:00 (+ ``"<name>:ref"`` references for dvol_btc, dxy,
    fred_BAMLH0A0HYM2, fred_T10Y2Y -- see ``exf_inputs``); None/NaN = missing. ``w750_velocity_past``: the
    daily w750 values (``daily_w750``) of the days BEFORE ``day``, oldest first, last = the day before
    (NaN = no value that day); the last ``regime_window_days + 1`` are used."""
    d0 = _day_ms(day)
    label = day_str(d0)
    e, c_e, signals, missing, notes = _exf_term(exf, label, cfg)
    x, thr, spread, n, note = _regime_stats(w750_velocity_past, cfg)
    if note:
        notes.append(note)
    return _assemble(cfg, e, c_e, x, thr, spread, n, signals, missing, notes, label, d0, "daily")


def acb_on_scan(state: AcbState, scan_row_w750_velocity: float, scan_ts: int, cfg: AcbConfig = DEFAULT) -> AcbState:
    """Intraday update with one scan (``scan_ts`` = scan time, epoch ms, bar close): x <- EMA step, regime
    term re-evaluated against the day's fixed p60/spread; ExF term unchanged. Scans with close time in
    (D 00:00, D+1 00:00] belong to day D; a scan of another day or not after ``updated_at`` raises."""
    scan_ts = int(scan_ts)
    d0 = _day_ms(state.last_date)
    if not d0 < scan_ts <= d0 + DAY_MS:
        raise ValueError(f"scan at {iso_utc(scan_ts)} does not belong to the ACB state's day {state.last_date} "
                         f"(compute the daily state of its day first)")
    if scan_ts <= state.updated_at:
        raise ValueError(f"scan at {iso_utc(scan_ts)} is not after the ACB state's updated_at "
                         f"{iso_utc(state.updated_at)} (out of order or duplicate)")
    v = _num(scan_row_w750_velocity, f"w750 velocity of the scan at {iso_utc(scan_ts)}")
    if v is None:  # invalid scan: neither feeds nor ages the EMA
        return replace(state, updated_at=scan_ts, source="scan")
    x = float(_ema_step(_f(state.w750_value), v, float(scan_ts - state.updated_at), cfg.tau_ms))
    n = state.regime_days
    return _assemble(cfg, state.exf_score, state.exf_coverage, x, state.w750_threshold, state.w750_spread, n,
                     state.signals, state.missing, state.notes, state.last_date, scan_ts, "scan")


def adverse_turn(old_boost: float, new_boost: float, has_open_position: bool, drop: float = 0.2) -> bool:
    """True when the boost fell by MORE than ``drop`` with a position open. A drop equal to ``drop`` up to
    float rounding (1e-9; boosts are O(1)) is not adverse: 1.2 - 1.0 == 0.19999999999999996 and
    0.9 - 0.7 == 0.20000000000000007 must both read as 'exactly 0.2'."""
    return bool(has_open_position) and (float(old_boost) - float(new_boost)) > float(drop) + 1e-9


def adverse_exit_order_type(book_healthy: bool | None) -> str:
    """'limit' (maker, orderly) only when the book / fill quality is KNOWN healthy; unknown -> 'market'."""
    return "limit" if book_healthy is True else "market"


def _frame_days(frame: pd.DataFrame) -> np.ndarray:
    idx = frame.index
    if not isinstance(idx, pd.DatetimeIndex):
        try:
            idx = pd.DatetimeIndex(pd.to_datetime(idx, utc=True))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"ExF daily frame: index must be UTC days ({exc})") from None
    if idx.tz is None:
        idx = idx.tz_localize("UTC")
    ms = idx.tz_convert("UTC").as_unit("ns").asi8 // 1_000_000
    bad = ms % DAY_MS != 0
    if bad.any():
        raise ValueError(f"ExF daily frame: index value {idx[int(np.flatnonzero(bad)[0])]} is not a UTC midnight")
    if (np.diff(ms) <= 0).any():
        i = int(np.flatnonzero(np.diff(ms) <= 0)[0]) + 1
        raise ValueError(f"ExF daily frame: index not strictly increasing at {idx[i]} (duplicate or out of order)")
    return ms


def _exf_arrays(frame: pd.DataFrame | None, day0: int, n_days: int, cfg: AcbConfig) -> dict:
    """name -> (values (n_days,), refs (n_days,)) on the calendar days day0 + i*DAY; refs = median of the
    ``exf_ref_days`` calendar days before (NaN with fewer than ``exf_ref_min`` present)."""
    out = {}
    R = cfg.exf_ref_days
    ms = _frame_days(frame) if frame is not None and len(frame) else np.zeros(0, np.int64)
    for s in cfg.exf_signals:
        vals = np.full(n_days + R, np.nan)  # R days of history before day0
        if frame is not None and s.name in frame.columns and ms.size:
            try:
                col = pd.to_numeric(frame[s.name], errors="raise").to_numpy(np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"ExF daily frame: column {s.name!r} is not numeric") from None
            pos = (ms - (day0 - R * DAY_MS)) // DAY_MS
            keep = (pos >= 0) & (pos < n_days + R)
            vals[pos[keep]] = col[keep]
        if np.isinf(vals).any():
            i = int(np.flatnonzero(np.isinf(vals))[0])
            raise ValueError(f"ExF {s.name} on {day_str(day0 + (i - R) * DAY_MS)}: infinite value")
        refs = np.full(n_days, np.nan)
        if s.needs_ref:
            win = np.lib.stride_tricks.sliding_window_view(vals, R)[:n_days]  # row i = days i-R .. i-1
            cnt = np.isfinite(win).sum(axis=1)
            ok = cnt >= cfg.exf_ref_min
            if ok.any():
                refs[ok] = np.nanmedian(win[ok], axis=1)
        out[s.name] = (vals[R:], refs)
    return out


def exf_inputs(exf_daily: pd.DataFrame, day, cfg: AcbConfig = DEFAULT) -> dict:
    """The ``acb_daily`` Mapping for ``day`` from a daily ExF frame (index = UTC days, columns = indicator
    names, values known at that day's 00:00 -- ``ExfHistory.daily_frame``): the day's row plus
    ``"<name>:ref"`` = median of the ``exf_ref_days`` rows before it. Rows after ``day`` are never read."""
    d0 = _day_ms(day)
    arr = _exf_arrays(exf_daily, d0, 1, cfg)
    out = {}
    for s in cfg.exf_signals:
        v, r = arr[s.name]
        out[s.name] = None if np.isnan(v[0]) else float(v[0])
        if s.needs_ref:
            out[s.name + REF_SUFFIX] = None if np.isnan(r[0]) else float(r[0])
    return out


def daily_w750(scans, cfg: AcbConfig = DEFAULT) -> tuple:
    """(day_ms (D,), d (D,)): calendar UTC days from the first to the last bar's day and the mean valid
    w750 velocity of the bars opening that day (NaN below ``min_valid_frac`` of a full day's bars)."""
    k = scans.window_index(750)
    v = np.asarray(scans.velocity[:, k], dtype=np.float64)
    ot = np.asarray(scans.open_time, dtype=np.int64)
    if ot.size == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    first = (ot[0] // DAY_MS) * DAY_MS
    di = (ot - first) // DAY_MS
    n = int(di[-1]) + 1
    ok = np.isfinite(v)
    s = np.bincount(di[ok], weights=v[ok], minlength=n)
    c = np.bincount(di[ok], minlength=n)
    need = cfg.min_valid_frac * (DAY_MS / int(scans.bar_ms))
    d = np.full(n, np.nan)
    good = (c >= need) & (c > 0)
    d[good] = s[good] / c[good]
    return first + np.arange(n, dtype=np.int64) * DAY_MS, d


def daily_states(scans, exf_daily: pd.DataFrame | None, cfg: AcbConfig = DEFAULT) -> list:
    """The daily ``AcbState`` of every calendar day the scans touch (as of each day's 00:00)."""
    days, d = daily_w750(scans, cfg)
    if not days.size:
        return []
    arr = _exf_arrays(exf_daily, int(days[0]), days.size, cfg)
    W = cfg.regime_window_days
    states = []
    for i, d0 in enumerate(days):
        exf = {}
        for s in cfg.exf_signals:
            v, r = arr[s.name]
            exf[s.name] = v[i]
            if s.needs_ref:
                exf[s.name + REF_SUFFIX] = r[i]
        states.append(acb_daily(exf, d[max(0, i - W - 1):i], int(d0), cfg))
    return states


def boost_series(scans, exf_daily: pd.DataFrame | None, cfg: AcbConfig = DEFAULT) -> tuple:
    """Per-bar (boost (T,), beta (T,)) for a backtest, past-only: bar t of day D = daily state of D (ExF as
    of D 00:00, w750 daily values before D) then the scans of D up to and including t. Identical to
    running ``acb_daily`` + ``acb_on_scan`` scan by scan."""
    T = len(scans)
    if T == 0:
        return np.zeros(0), np.zeros(0)
    ot = np.asarray(scans.open_time, dtype=np.int64)
    if (np.diff(ot) <= 0).any():
        i = int(np.flatnonzero(np.diff(ot) <= 0)[0]) + 1
        raise ValueError(f"scans: open_time not strictly increasing at row {i} ({iso_utc(int(ot[i]))})")
    v = np.ascontiguousarray(scans.velocity[:, scans.window_index(750)], dtype=np.float64)
    if np.isinf(v).any():
        i = int(np.flatnonzero(np.isinf(v))[0])
        raise ValueError(f"scans: infinite w750 velocity at {iso_utc(int(ot[i]))}")
    states = daily_states(scans, exf_daily, cfg)
    day_start = np.array([_day_ms(s.last_date) for s in states], dtype=np.int64)
    x0 = np.array([_f(s.w750_value) for s in states])
    thr = np.array([_f(s.w750_threshold) for s in states])
    spread = np.array([_f(s.w750_spread) for s in states])
    c_r = np.array([min(1.0, s.regime_days / cfg.regime_window_days) for s in states])
    e = np.array([s.exf_score for s in states])
    c_e = np.array([s.exf_coverage for s in states])
    day_idx = (ot - day_start[0]) // DAY_MS
    ts = ot + int(scans.bar_ms)
    return _intraday(day_idx, ts, v, day_start, x0, thr, spread, c_r, e, c_e, cfg.amplitude, cfg.exf_weight,
                     cfg.regime_weight, cfg.tau_ms)


# ---------------------------------------------------------------- feature store
def _newer(new: AcbState):
    def newer(_rec: Record, old_rec: Record) -> bool:
        try:
            old = AcbState.from_record(old_rec)
        except ValueError as exc:  # unreadable stored value: a valid state replaces it
            log.warning("replacing unreadable %s/%s: %s", FEATURES, ACB_STATE, exc)
            return True
        return new.order_key > old.order_key

    return newer


def publish_acb(store: FeatureStore, state: AcbState, attempts: int = 50) -> bool:
    """Store ``state`` at DOLPHIN_FEATURES/acb_state unless the stored state is at least as new (by
    (updated_at, last_date)); compare-and-set, so concurrent publishers never put an older state over a
    newer one. Returns whether it was stored. ``StoreUnavailableError`` propagates (never dropped silently);
    ``TimeoutError`` after ``attempts`` lost races."""
    return publish_if_newer(store, FEATURES, ACB_STATE, state.to_record(), newer=_newer(state), attempts=attempts)


def read_acb(store: FeatureStore) -> AcbState | None:
    """The stored ACB state (None if none); ``ValueError`` naming the field if it is malformed."""
    rec = store.get(FEATURES, ACB_STATE)
    return None if rec is None else AcbState.from_record(rec)

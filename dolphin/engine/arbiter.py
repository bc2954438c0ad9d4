"""GREEN's capital arbiter: per UTC day, weights {short, long} (sum 1, both > 0) for the two legs.

The rule (``regime_weighted``), for day D, from data a live system has at D 00:00 UTC only:

  * ``s_vd``    = mean(vel_div/N) / mean(|vel_div/N|) over the last ``arbiter_trend_bars`` scans closed by
                  D 00:00: the net direction of the velocity divergence, in [-1, 1] (+1: every scan above
                  zero, where LONG signals live; -1: every scan below, SHORT's side);
  * ``s_btc``   = tanh(r / (sigma * sqrt(L))): BTC's log return r over the same L bars against the move its
                  own bar volatility sigma would give by chance (a t-statistic of the drift, squashed into
                  [-1, 1]); +: up-trend, favours LONG. Without BTCUSDT in the universe the equal-weight
                  market (mean log return of the tradable assets) stands in, and the notes say so;
  * ``stress``  = mean of the available ExF stress terms as of D 00:00, in [0, 1]: fear & greed below 50
                  ((50 - fng) / 50, clipped) and Deribit BTC DVOL's rank among its last 90 daily values above
                  the median ((rank - 0.5) / 0.5, clipped). No ExF value known: stress 0 (neutral);
  * ``score``   = (s_vd + s_btc - stress) / 3, in [-1, 1];
  * ``w_long``  = 0.5 + arbiter_tilt * score, ``w_short`` = 1 - w_long. ``arbiter_tilt`` < 0.5 keeps both
                  weights > 0 (default 0.4: each leg gets 10 % .. 90 %).

``equal_weight``: 0.5 / 0.5 every day. A day without history (the first bars of a set) is equal-weighted.
A scan whose bar closes at time c uses the weights of day floor(c / 1 day), i.e. the day's 00:00 scan already
trades with that day's weights, computed from bars up to and including it: nothing later is read.
"""

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dolphin.engine.config import EngineConfig
from dolphin.timeutil import DAY_MS

DVOL_RANK_DAYS = 90


@dataclass
class ArbiterWeights:
    mode: str
    days_ms: np.ndarray  # (D,) UTC day starts
    w_short: np.ndarray  # (D,)
    w_long: np.ndarray  # (D,)
    components: pd.DataFrame  # per day: s_vd, s_btc, stress, score
    notes: list = field(default_factory=list)

    def per_bar(self, close_time: np.ndarray) -> np.ndarray:
        """(T, 2) [short, long] weight of each scan (the weights of its close's UTC day)."""
        day = (np.asarray(close_time, np.int64) // DAY_MS) * DAY_MS
        i = np.searchsorted(self.days_ms, day)
        if np.any(i >= len(self.days_ms)) or not np.array_equal(self.days_ms[np.minimum(i, len(self.days_ms) - 1)], day):
            raise ValueError("arbiter weights do not cover every scan's day")
        return np.ascontiguousarray(np.stack([self.w_short[i], self.w_long[i]], axis=1))

    def frame(self) -> pd.DataFrame:
        """One row per day: day, w_short, w_long and the rule's components."""
        df = self.components.copy()
        df.insert(0, "day", pd.to_datetime(self.days_ms, unit="ms", utc=True).strftime("%Y-%m-%d"))
        df.insert(1, "w_short", self.w_short)
        df.insert(2, "w_long", self.w_long)
        return df


def _exf_stress(exf, days_ms: np.ndarray) -> tuple[np.ndarray, list]:
    """Stress in [0, 1] per day from fear & greed and DVOL as of each day's 00:00 (0 where nothing is known)."""
    if exf is None or len(days_ms) == 0:
        return np.zeros(len(days_ms)), ["ExF stress: no ExF history given: stress 0 (neutral)"]
    from dolphin.metrics.types import day_label

    d0 = int(days_ms[0]) - DVOL_RANK_DAYS * DAY_MS
    frame = exf.daily_frame(day_label(d0), day_label(int(days_ms[-1])))
    fng = frame["fear_greed"].to_numpy() if "fear_greed" in frame else np.full(len(frame), np.nan)
    dvol = frame["dvol_btc"].to_numpy() if "dvol_btc" in frame else np.full(len(frame), np.nan)
    off = DVOL_RANK_DAYS
    terms = np.full((len(days_ms), 2), np.nan)
    terms[:, 0] = np.clip((50.0 - fng[off:]) / 50.0, 0.0, 1.0)
    for k in range(len(days_ms)):
        v = dvol[off + k]
        if not np.isfinite(v):
            continue
        past = dvol[off + k - DVOL_RANK_DAYS:off + k]
        past = past[np.isfinite(past)]
        if len(past) >= 10:  # a rank over fewer than 10 days says nothing
            rank = float((past < v).mean())
            terms[k, 1] = min(1.0, max(0.0, (rank - 0.5) / 0.5))
    known = np.isfinite(terms)
    n = known.sum(axis=1)
    stress = np.where(n > 0, np.nansum(np.where(known, terms, 0.0), axis=1) / np.maximum(n, 1), 0.0)
    notes = [f"ExF stress: fear & greed known on {int(known[:, 0].sum())} of {len(days_ms)} days, "
             f"DVOL rank on {int(known[:, 1].sum())}; no value -> stress 0"]
    return stress, notes


def arbiter_weights(panel, vel_div_norm: np.ndarray, cfg: EngineConfig, exf=None,
                    mode: str | None = None) -> ArbiterWeights:
    """Weights for every UTC day touched by the panel's scans. ``vel_div_norm``: vel_div / N per bar (what the
    engine's thresholds apply to). ``exf``: an ``ExfHistory`` (None: stress 0). ``mode`` overrides cfg.arbiter."""
    mode = mode or cfg.arbiter
    if mode not in ("equal_weight", "regime_weighted"):
        raise ValueError(f"arbiter mode must be equal_weight or regime_weighted, got {mode!r}")
    ct = np.asarray(panel.close_time, np.int64)
    days = np.unique((ct // DAY_MS) * DAY_MS)
    D = len(days)
    cols = {k: np.zeros(D) for k in ("s_vd", "s_btc", "stress", "score")}
    if mode == "equal_weight":
        half = np.full(D, 0.5)
        return ArbiterWeights(mode, days, half, half.copy(), pd.DataFrame(cols), ["arbiter: equal_weight (0.5 / 0.5)"])
    L = int(cfg.arbiter_trend_bars)
    vd = np.asarray(vel_div_norm, np.float64)
    close = np.asarray(panel.close, np.float64)
    notes = []
    if "BTCUSDT" in panel.symbols:
        b = panel.symbols.index("BTCUSDT")
        lr = np.r_[np.nan, np.diff(np.log(close[:, b]))]
        notes.append(f"BTC trend: BTCUSDT over the last {L} bars")
    else:
        tradable = ~(panel.filled | panel.excluded)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.diff(np.log(close), axis=0)
        r = np.where(tradable[1:] & tradable[:-1], r, np.nan)
        lr = np.r_[np.nan, np.nanmean(np.where(np.isfinite(r), r, np.nan), axis=1)]
        notes.append(f"BTC trend: no BTCUSDT in the universe: the equal-weight market over the last {L} bars stands in")
    # last scan closed by each day's 00:00 (inclusive)
    j = np.searchsorted(ct, days, side="right") - 1
    for k in range(D):
        hi = int(j[k]) + 1
        lo = max(0, hi - L)
        if hi - lo < 2:
            continue  # no history yet: neutral
        w = vd[lo:hi]
        w = w[np.isfinite(w)]
        den = np.abs(w).sum()
        cols["s_vd"][k] = float(w.sum() / den) if den > 0 else 0.0
        r = lr[lo + 1:hi]
        r = r[np.isfinite(r)]
        if len(r) >= 2:
            sd = r.std()
            cols["s_btc"][k] = float(np.tanh(r.sum() / (sd * np.sqrt(len(r))))) if sd > 0 else 0.0
    stress, exf_notes = _exf_stress(exf, days)
    notes += exf_notes
    cols["stress"] = stress
    cols["score"] = (cols["s_vd"] + cols["s_btc"] - cols["stress"]) / 3.0
    w_long = 0.5 + cfg.arbiter_tilt * cols["score"]
    notes.insert(0, f"arbiter: regime_weighted, w_long = 0.5 + {cfg.arbiter_tilt} x (s_vd + s_btc - stress) / 3")
    return ArbiterWeights(mode, days, 1.0 - w_long, w_long, pd.DataFrame(cols), notes)

"""DVOL spike detection for the survival stack's Cat4 (DESIGN.md "Survival stack": DVOL spike).

A spike is an observation whose value is strictly above mean + 2σ of the observations in the 30 days
before it: the window is ``[t - 30 d, t)``, so the observation itself never enters its own baseline
(past only). σ is the sample standard deviation (ddof = 1). With fewer than ``min_obs`` observations in
the window no spike is called (a 3-day baseline is noise, not a regime).

Works on any cadence: daily closes (backtests, ``exf/dvol_btc.csv``) give a 30-observation window; intraday
live values give a time window of whatever arrived. Feed each value at the instant it became known (a
daily close labelled 00:00 of day D is known at the end of D) -- the detector cannot know better.
"""

from __future__ import annotations

import csv
import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dolphin.timeutil import DAY_MS, fmt_ms, parse_time

MINUTE_MS = 60_000


class DvolDataError(ValueError):
    """Malformed DVOL input (names the file / timestamp / value)."""


@dataclass(frozen=True)
class DvolConfig:
    window_days: float = 30.0
    k_sigma: float = 2.0
    min_obs: int = 20

    def __post_init__(self):
        if not self.window_days > 0 or not self.k_sigma > 0 or self.min_obs < 2:
            raise ValueError(f"DvolConfig: need window_days > 0, k_sigma > 0, min_obs >= 2; got {self}")


class DvolSpikeDetector:
    """Feed ``(ts_ms, value)`` in time order with ``update``; ask ``minutes_since_spike(ts_ms)`` for Cat4."""

    def __init__(self, cfg: DvolConfig = DvolConfig()):
        self.cfg = cfg
        self._window_ms = int(round(cfg.window_days * DAY_MS))
        self._hist: deque[tuple[int, float]] = deque()
        self.last_ts: int | None = None
        self.last_spike_ts: int | None = None

    def baseline(self) -> tuple[float, float, int] | None:
        """(mean, sample σ, n) of the current window, or None when it holds fewer than ``min_obs``."""
        n = len(self._hist)
        if n < self.cfg.min_obs:
            return None
        v = np.fromiter((x for _, x in self._hist), dtype=np.float64, count=n)
        return float(v.mean()), float(v.std(ddof=1)), n

    def update(self, ts_ms: int, value: float) -> bool:
        """Add one observation; returns whether it is a spike against the 30 days before it."""
        if isinstance(ts_ms, bool) or not isinstance(ts_ms, (int, np.integer)):
            raise DvolDataError(f"DVOL timestamp must be integer epoch ms, got {ts_ms!r}")
        ts_ms = int(ts_ms)
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
                or not math.isfinite(value) or value <= 0:
            raise DvolDataError(f"DVOL at {fmt_ms(ts_ms)}: value must be a finite positive number, got {value!r}")
        if self.last_ts is not None and ts_ms <= self.last_ts:
            raise DvolDataError(f"DVOL at {fmt_ms(ts_ms)}: not after the previous observation "
                                f"{fmt_ms(self.last_ts)} (timestamps must increase)")
        lo = ts_ms - self._window_ms
        while self._hist and self._hist[0][0] < lo:
            self._hist.popleft()
        base = self.baseline()
        spike = base is not None and float(value) > base[0] + self.cfg.k_sigma * base[1]
        if spike:
            self.last_spike_ts = ts_ms
        self._hist.append((ts_ms, float(value)))
        self.last_ts = ts_ms
        return spike

    def minutes_since_spike(self, ts_ms: int) -> float | None:
        """Minutes from the last spike seen so far to ``ts_ms``; None when no spike is remembered. Asking
        about a time before the last observation fed is refused (it would mix in later data)."""
        ts_ms = int(ts_ms)
        if self.last_ts is not None and ts_ms < self.last_ts:
            raise DvolDataError(f"minutes_since_spike({fmt_ms(ts_ms)}): before the last observation "
                                f"{fmt_ms(self.last_ts)} already fed (look-ahead)")
        if self.last_spike_ts is None:
            return None
        return (ts_ms - self.last_spike_ts) / MINUTE_MS


def detect_spikes(times_ms, values, cfg: DvolConfig = DvolConfig()) -> list[int]:
    """Timestamps (ms) of every spike in a series, in order (runs a fresh detector over it)."""
    det = DvolSpikeDetector(cfg)
    return [int(t) for t, v in zip(times_ms, values) if det.update(int(t), float(v))]


def load_dvol_csv(path) -> tuple[np.ndarray, np.ndarray]:
    """``time,value`` CSV (``exf/dvol_btc.csv``) -> (epoch-ms int64, float64), validated: a bad row is an
    error naming the file and the line."""
    path = Path(path)
    times, vals = [], []
    try:
        fh = path.open(newline="")
    except OSError as e:
        raise DvolDataError(f"{path}: cannot open: {e}") from e
    with fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["time", "value"]:
            raise DvolDataError(f"{path}: expected header 'time,value', got {header!r}")
        for lineno, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) < 2:
                raise DvolDataError(f"{path}:{lineno}: expected time,value, got {row!r}")
            try:
                t = parse_time(row[0])
            except ValueError as e:
                raise DvolDataError(f"{path}:{lineno}: bad time {row[0]!r}: {e}") from None
            try:
                v = float(row[1])
            except ValueError:
                raise DvolDataError(f"{path}:{lineno} ({row[0]}): value {row[1]!r} is not a number") from None
            if not math.isfinite(v) or v <= 0:
                raise DvolDataError(f"{path}:{lineno} ({row[0]}): value {v!r} is not a finite positive number")
            if times and t <= times[-1]:
                raise DvolDataError(f"{path}:{lineno} ({row[0]}): time not after the previous row "
                                    f"({fmt_ms(times[-1])})")
            times.append(t)
            vals.append(v)
    if not times:
        raise DvolDataError(f"{path}: no rows")
    return np.asarray(times, dtype=np.int64), np.asarray(vals, dtype=np.float64)

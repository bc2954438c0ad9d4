"""Historical ExF for backtests: recorded ``<data>/exf/*.csv`` -> point-in-time snapshots.

``as_of(t)`` returns, per indicator, the latest value whose availability instant (observation time + the
registry's publication rule) is <= t -- never a value a live system could not have had at t -- and ``None``
with a reason when there is none or it is older than the indicator's max age. The live fetchers build the
same ``ExfHistory`` from fetched series, so backtest and live share one as-of rule.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from dolphin.exf.indicators import DAY_MS, INDICATOR_NAMES, REGISTRY, iso_ms
from dolphin.paths import data_root
from dolphin.store.port import Record

log = logging.getLogger(__name__)

FRED_MISSING = (".", "")  # FRED writes "." for days without an observation


class ExfDataError(ValueError):
    """A recorded ExF file is malformed; the message names file and line."""


def to_ms(ts) -> int:
    """Tz-aware datetime (incl. pandas Timestamp) or integer epoch ms -> epoch ms. Naive datetimes are refused:
    guessing a zone shifts every as-of by hours."""
    if isinstance(ts, datetime):
        if ts.tzinfo is None or ts.tzinfo.utcoffset(ts) is None:
            raise ValueError(f"timestamp {ts!r} is timezone-naive; pass a tz-aware datetime (UTC) or epoch ms")
        return int(round(ts.timestamp() * 1000))
    if isinstance(ts, (bool, np.bool_)) or not isinstance(ts, (int, np.integer)):
        raise TypeError(f"timestamp {ts!r}: expected a tz-aware datetime or integer epoch milliseconds")
    return int(ts)


@dataclass(frozen=True)
class Series:
    """One indicator's observations, sorted by time; ``source`` names the file / URL for messages."""

    name: str
    obs_ms: np.ndarray  # int64, strictly increasing
    values: np.ndarray  # float64, finite
    source: str

    def __post_init__(self):
        if len(self.obs_ms) != len(self.values):
            raise ValueError(f"{self.source}: {len(self.obs_ms)} times but {len(self.values)} values")
        if len(self.obs_ms) > 1 and not np.all(np.diff(self.obs_ms) > 0):
            raise ValueError(f"{self.source}: observation times must be strictly increasing")
        if not np.all(np.isfinite(self.values)):
            raise ValueError(f"{self.source}: non-finite value")

    @classmethod
    def from_pairs(cls, name: str, pairs: list[tuple[int, float]], source: str) -> "Series":
        """Sort by time; identical duplicates collapse, conflicting duplicates are an error."""
        by_t: dict[int, float] = {}
        for t, v in pairs:
            if t in by_t and by_t[t] != v:
                raise ExfDataError(f"{source}: {iso_ms(t)} appears twice with different values {by_t[t]!r} and {v!r}")
            by_t[t] = v
        ts = np.array(sorted(by_t), dtype=np.int64)
        return cls(name, ts, np.array([by_t[t] for t in ts.tolist()], dtype=np.float64), source)


def read_exf_csv(path: Path, name: str | None = None) -> Series:
    """Parse one ``time,value`` file. Errors name the file and line (line 1 = header)."""
    path = Path(path)
    label = f"exf/{path.name}"
    name = name or path.stem
    by_t: dict[int, float] = {}
    first_line: dict[int, int] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        rows = csv.reader(fh)
        header = next(rows, None)
        if header is None:
            raise ExfDataError(f"{label}: empty file (expected header 'time,value')")
        if [h.strip().lower() for h in header] != ["time", "value"]:
            raise ExfDataError(f"{label} line 1: header {','.join(header)!r}, expected 'time,value'")
        for row in rows:
            line = rows.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != 2:
                raise ExfDataError(f"{label} line {line}: expected 2 columns (time,value), got {len(row)}: {row!r}")
            t_txt, v_txt = row[0].strip(), row[1].strip()
            try:
                dt = datetime.fromisoformat(t_txt)
            except ValueError:
                raise ExfDataError(f"{label} line {line}: unparseable time {t_txt!r} (expected ISO 8601 UTC)") from None
            if dt.tzinfo is None:
                raise ExfDataError(f"{label} line {line}: time {t_txt!r} has no UTC offset (expected e.g. "
                                   f"2024-01-31T00:00:00Z)")
            t = int(round(dt.timestamp() * 1000))
            if v_txt in FRED_MISSING:
                continue
            try:
                v = float(v_txt)
            except ValueError:
                raise ExfDataError(f"{label} line {line} ({t_txt}): non-numeric value {v_txt!r}") from None
            if not math.isfinite(v):
                raise ExfDataError(f"{label} line {line} ({t_txt}): non-finite value {v_txt!r}")
            if t in first_line:
                if by_t[t] != v:
                    raise ExfDataError(f"{label} line {line}: duplicate time {t_txt} with value {v_txt} "
                                       f"(line {first_line[t]} has {by_t[t]!r})")
                continue
            first_line[t] = line
            by_t[t] = v
    return Series.from_pairs(name, list(by_t.items()), label)


@dataclass(frozen=True)
class ExfSnapshot:
    """Values knowable at ``as_of``: ``values`` name -> float | None, ``reasons`` for every None,
    ``observed`` name -> ISO time of the observation used, ``sources`` per family status (live fetches)."""

    as_of: datetime
    values: dict[str, float | None]
    reasons: dict[str, str]
    observed: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        missing = [n for n, v in self.values.items() if v is None and n not in self.reasons]
        if missing:
            raise ValueError(f"ExfSnapshot: None without a reason for {missing}")

    @property
    def as_of_ms(self) -> int:
        return to_ms(self.as_of)

    @property
    def timestamp(self) -> str:
        return iso_ms(self.as_of_ms)

    @property
    def non_null_count(self) -> int:
        return sum(v is not None for v in self.values.values())

    def to_record(self) -> dict:
        """JSON object for ``DOLPHIN_FEATURES/exf_latest``: every indicator at top level (seeds' schema
        ``{indicator: value, timestamp, date}``) plus reasons / observation times / source status."""
        rec: dict = dict(self.values)
        rec.update(timestamp=self.timestamp, date=self.timestamp[:10], non_null_count=self.non_null_count,
                   reasons=dict(self.reasons), observed=dict(self.observed))
        if self.sources:
            rec["sources"] = dict(self.sources)
        json.dumps(rec, allow_nan=False)  # fail here, not in the store, if anything is not JSON
        return rec

    def to_store_record(self) -> Record:
        rec = self.to_record()
        ts = rec.pop("timestamp")
        return Record(rec, ts)


def _resolve_dir(root) -> Path:
    if root is None:
        return data_root() / "exf"
    p = Path(root).expanduser()
    if (p / "exf").is_dir():
        return p / "exf"
    if p.is_dir():
        return p
    raise FileNotFoundError(f"ExF data: {p} is not a directory (expected the data root holding exf/ or exf/ itself)")


class ExfHistory:
    """Point-in-time ExF over a set of series (recorded files or live fetches)."""

    def __init__(self, series: Mapping[str, Series], missing: Mapping[str, str] | None = None):
        unknown = sorted(set(series) - set(REGISTRY))
        if unknown:
            raise KeyError(f"unknown ExF indicator(s) {unknown}; known: {', '.join(INDICATOR_NAMES)}")
        self._series = dict(series)
        self._missing = dict(missing or {})
        # availability index per indicator: sorted availability instants and, for each prefix, the index of
        # the latest observation available by then (robust to non-monotone rules such as late releases)
        self._avail: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name, s in self._series.items():
            pub = REGISTRY[name].publication
            avail = pub.available_ms(s.obs_ms)
            order = np.argsort(avail, kind="stable")
            self._avail[name] = (avail[order], np.maximum.accumulate(order))

    @classmethod
    def load(cls, root=None) -> "ExfHistory":
        """Read every registered ``<root>/exf/<indicator>.csv`` (root: the data root or the exf directory;
        default ``dolphin.paths.data_root()``). Unregistered files are skipped with a warning: without a
        publication rule their as-of values cannot be trusted."""
        d = _resolve_dir(root)
        series: dict[str, Series] = {}
        missing: dict[str, str] = {}
        for f in sorted(d.glob("*.csv")):
            if f.stem not in REGISTRY:
                log.warning("ExF: %s is not a registered indicator; skipped", f)
                continue
            series[f.stem] = read_exf_csv(f)
        for name, ind in REGISTRY.items():
            if name in series:
                continue
            if not ind.has_history:
                missing[name] = f"no recorded history ({ind.source} not available)"
            else:
                missing[name] = f"no recorded history (exf/{name}.csv not found in {d})"
        return cls(series, missing)

    @property
    def names(self) -> tuple[str, ...]:
        return INDICATOR_NAMES

    def series(self, name: str) -> Series | None:
        if name not in REGISTRY:
            raise KeyError(f"unknown ExF indicator {name!r}")
        return self._series.get(name)

    def _pick(self, name: str, t: np.ndarray) -> np.ndarray:
        """Index of the latest available observation at each t, -1 where none."""
        avail, best = self._avail[name]
        pos = np.searchsorted(avail, t, side="right") - 1
        return np.where(pos >= 0, best[np.maximum(pos, 0)], -1)

    def as_of(self, ts) -> ExfSnapshot:
        t = to_ms(ts)
        values: dict[str, float | None] = {}
        reasons: dict[str, str] = {}
        observed: dict[str, str] = {}
        for name, ind in REGISTRY.items():
            s = self._series.get(name)
            if s is None or len(s.obs_ms) == 0:
                values[name] = None
                reasons[name] = self._missing.get(name, "no recorded history")
                continue
            i = int(self._pick(name, np.array([t], dtype=np.int64))[0])
            if i < 0:
                avail, best = self._avail[name]
                values[name] = None
                reasons[name] = (f"before first record (first value {iso_ms(s.obs_ms[best[0]])} "
                                 f"available {iso_ms(avail[0])})")
                continue
            obs = int(s.obs_ms[i])
            observed[name] = iso_ms(obs)
            if ind.max_age_ms is not None and t - obs > ind.max_age_ms:
                values[name] = None
                reasons[name] = (f"stale: last value {iso_ms(obs)} is {(t - obs) / DAY_MS:.1f} d old "
                                 f"(max {ind.max_age_days:g} d)")
                continue
            values[name] = float(s.values[i])
        when = datetime.fromtimestamp(t / 1000, tz=timezone.utc)
        return ExfSnapshot(when, values, reasons, observed)

    def daily_frame(self, start_day, end_day) -> pd.DataFrame:
        """Rows = UTC days start..end inclusive, columns = every indicator; each row holds the values as of that
        day's 00:00 UTC (what a run starting that day may know). NaN where ``as_of`` would give None."""
        start, end = _day(start_day), _day(end_day)
        if end < start:
            raise ValueError(f"daily_frame: end day {end} is before start day {start}")
        idx = pd.date_range(start, end, freq="D", tz="UTC", name="day")
        t = idx.asi8 // 1_000_000  # ns -> ms
        cols: dict[str, np.ndarray] = {}
        for name, ind in REGISTRY.items():
            s = self._series.get(name)
            col = np.full(len(t), np.nan)
            if s is not None and len(s.obs_ms):
                i = self._pick(name, t)
                ok = i >= 0
                if ind.max_age_ms is not None:
                    ok &= (t - s.obs_ms[np.maximum(i, 0)]) <= ind.max_age_ms
                col[ok] = s.values[i[ok]]
            cols[name] = col
        return pd.DataFrame(cols, index=idx)


def _day(d) -> date:
    if isinstance(d, datetime):
        if d.tzinfo is None:
            raise ValueError(f"day {d!r} is timezone-naive; pass a date, 'YYYY-MM-DD' or a tz-aware datetime")
        return d.astimezone(timezone.utc).date()
    if isinstance(d, date):
        return d
    if isinstance(d, str):
        try:
            return date.fromisoformat(d)
        except ValueError:
            raise ValueError(f"day {d!r}: expected 'YYYY-MM-DD'") from None
    raise TypeError(f"day {d!r}: expected a date, 'YYYY-MM-DD' or a tz-aware datetime")

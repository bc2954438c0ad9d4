"""MC forewarner: Monte Carlo envelope of the current configuration (DESIGN.md "MC forewarner").

Input: a (n_variants, n_days) matrix of recent DAILY fractional returns of the current configuration,
one row per parameter-perturbation variant (``dolphin.mc.variants.engine_daily_variants``); a 1-D
series is one variant.

Paths (pure numpy, vectorised over paths): each of ``n_paths`` paths picks one variant uniformly at
random, then block-bootstraps ``horizon_days`` days from that variant's row (blocks of recent days keep
their serial dependence -- losing streaks, vol clusters) and compounds them into an equity path starting
at 1. Bootstraps:

- ``"stationary"`` (default; Politis & Romano 1994): block lengths are geometric with mean ``block_days``,
  block starts uniform, blocks wrap circularly, so every recent day has the same weight -- the newest
  days are not under-sampled as they are by a moving-block bootstrap.
- ``"fixed"``: moving blocks of exactly ``block_days`` contiguous days, starts uniform over the
  ``n_days - block_days + 1`` possible positions (no wrap-around).

Per path: max drawdown = largest peak-to-trough fall of the compounded equity as a fraction of the peak,
the starting equity counting as a peak (a loss on day 1 is a drawdown); terminal return = final equity - 1.

Outputs (``MCEnvelope``):

- ``catastrophic_prob`` = share of paths whose max drawdown exceeds ``dd_threshold`` (20 %), with its
  binomial standard error sqrt(p (1 - p) / n_paths).
- ``envelope_score`` in [0, 1], 1 = safest: the geometric mean of
  ``s_dd = clip(1 - dd_p95 / dd_threshold, 0, 1)`` (95th-percentile drawdown against the threshold) and
  ``s_ret = clip(1 + terminal_p05 / dd_threshold, 0, 1)`` (5th-percentile terminal return: 1 when the bad
  tail still does not lose, 0 when it loses the threshold or more). It is 0 as soon as either tail
  reaches the threshold, 1 when 95 % of paths never draw down and the 5 % tail does not lose.
- terminal return quantiles p05/p50/p95, drawdown quantiles p50/p95, n_paths, n_variants, n_days.

Status (thresholds in ``MCConfig``): GREEN if catastrophic_prob < 0.05, RED if >= 0.20, else ORANGE.
With fewer than ``min_history_days`` (20) days of history the numbers are still computed but the status
is at least ORANGE (a RED stays RED) and ``reason`` says why: too little history to call the
configuration safe.

Staleness (``effective_status``): an envelope older than ``staleness_hours`` (6 h) counts as ORANGE (a RED
stays RED); no envelope at all counts as ORANGE ("no MC envelope"); an unreadable one too.

The record published under ``DOLPHIN_FEATURES/mc_forewarner_latest`` is ``MCEnvelope.to_record()``: a
JSON-able dict with ``status``, ``catastrophic_prob``, ``envelope_score``, ..., and ``timestamp`` (ISO 8601
UTC, the ``as_of`` instant).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta, timezone
from typing import Any, Sequence

import numpy as np

from dolphin.engine.config import GREEN, MC_NAMES, ORANGE, RED
from dolphin.store.port import Record, iso_utc

BOOTSTRAPS = ("stationary", "fixed")
MIN_PATHS = 1000
DEFAULT_STALENESS_HOURS = 6.0
# a timestamp this far ahead of ``now`` is a clock or producer fault, not a fresh envelope
FUTURE_TOLERANCE = timedelta(minutes=5)


class MCInputError(ValueError):
    """Bad daily-return input (shape, NaN/inf, a return below -100 %)."""


@dataclass(frozen=True)
class MCConfig:
    n_paths: int = 2000  # >= 1000: below that the 5 % / 20 % status cuts carry > 1 pp standard error
    horizon_days: int = 30
    block_days: int = 5  # mean (stationary) or exact (fixed) block length in days
    bootstrap: str = "stationary"  # "stationary" | "fixed"
    dd_threshold: float = 0.20  # catastrophic = max drawdown beyond this fraction
    seed: int = 20240601
    green_below: float = 0.05  # GREEN if catastrophic_prob < green_below
    red_at: float = 0.20  # RED if catastrophic_prob >= red_at; ORANGE in between
    min_history_days: int = 20  # fewer days of history -> at least ORANGE
    staleness_hours: float = DEFAULT_STALENESS_HOURS  # older envelopes count as ORANGE

    def __post_init__(self):
        if not isinstance(self.n_paths, (int, np.integer)) or self.n_paths < MIN_PATHS:
            raise ValueError(f"MCConfig.n_paths must be an integer >= {MIN_PATHS}, got {self.n_paths!r}")
        for f in ("horizon_days", "block_days", "min_history_days"):
            v = getattr(self, f)
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"MCConfig.{f} must be an integer >= 1, got {v!r}")
        if self.bootstrap not in BOOTSTRAPS:
            raise ValueError(f"MCConfig.bootstrap must be one of {BOOTSTRAPS}, got {self.bootstrap!r}")
        if not 0.0 < self.dd_threshold < 1.0:
            raise ValueError(f"MCConfig.dd_threshold must be in (0, 1), got {self.dd_threshold}")
        if not 0.0 < self.green_below <= self.red_at <= 1.0:
            raise ValueError(f"MCConfig needs 0 < green_below <= red_at <= 1, got {self.green_below}, {self.red_at}")
        if not self.staleness_hours > 0:
            raise ValueError(f"MCConfig.staleness_hours must be > 0, got {self.staleness_hours}")
        if not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"MCConfig.seed must be a non-negative integer, got {self.seed!r}")


@dataclass(frozen=True)
class MCEnvelope:
    status: str  # "GREEN" | "ORANGE" | "RED"
    reason: str
    catastrophic_prob: float
    catastrophic_prob_se: float
    envelope_score: float
    terminal_p05: float
    terminal_p50: float
    terminal_p95: float
    dd_p50: float
    dd_p95: float
    n_paths: int
    n_variants: int
    n_days: int
    horizon_days: int
    block_days: int
    bootstrap: str
    dd_threshold: float
    seed: int
    timestamp: datetime  # as_of, tz-aware UTC, millisecond precision (what the store keeps)
    variants: tuple = field(default_factory=tuple)  # variant names, row order

    def __post_init__(self):
        if self.status not in MC_NAMES:
            raise ValueError(f"MCEnvelope.status must be one of {MC_NAMES}, got {self.status!r}")
        if self.timestamp.tzinfo is None:
            raise ValueError("MCEnvelope.timestamp must be timezone-aware (UTC)")

    @property
    def code(self) -> int:
        """Status as the engine's int code (GREEN / ORANGE / RED from dolphin.engine.config)."""
        return MC_NAMES.index(self.status)

    def to_record(self) -> dict:
        """JSON-able dict for ``DOLPHIN_FEATURES/mc_forewarner_latest`` (``timestamp`` ISO 8601 UTC)."""
        d = asdict(self)
        d["timestamp"] = iso_utc(self.timestamp)
        d["variants"] = list(self.variants)
        return d

    def to_store_record(self) -> Record:
        """The feature-store ``Record`` (value without ``timestamp``, which is the record's own field)."""
        d = self.to_record()
        ts = d.pop("timestamp")
        return Record(d, ts)

    @classmethod
    def from_record(cls, rec: "dict | Record") -> "MCEnvelope":
        """Inverse of ``to_record`` / ``to_store_record``; a missing or mistyped field is a ValueError
        naming it."""
        if isinstance(rec, Record):
            d = {**rec.value, "timestamp": rec.timestamp}
        elif isinstance(rec, dict):
            d = dict(rec)
        else:
            raise ValueError(f"MC envelope record must be a dict or Record, got {type(rec).__name__}")
        kw: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in d:
                if f.name == "variants":
                    kw[f.name] = ()
                    continue
                raise ValueError(f"MC envelope record lacks field {f.name!r}")
            v = d[f.name]
            try:
                if f.name == "timestamp":
                    v = _parse_ts(v)
                elif f.name == "variants":
                    v = tuple(str(x) for x in v)
                elif f.name in ("status", "reason", "bootstrap"):
                    if not isinstance(v, str):
                        raise TypeError("expected a string")
                elif f.name in ("n_paths", "n_variants", "n_days", "horizon_days", "block_days", "seed"):
                    if isinstance(v, bool) or int(v) != v:
                        raise TypeError("expected an integer")
                    v = int(v)
                else:
                    if isinstance(v, bool):
                        raise TypeError("expected a number")
                    v = float(v)
            except (TypeError, ValueError) as e:
                raise ValueError(f"MC envelope record field {f.name!r}={v!r}: {e}") from e
            kw[f.name] = v
        return cls(**kw)


# ---------------------------------------------------------------- inputs and time


def _as_matrix(daily_returns) -> np.ndarray:
    r = np.asarray(daily_returns, dtype=np.float64)
    if r.ndim == 1:
        r = r[None, :]
    if r.ndim != 2:
        raise MCInputError(f"daily_returns must be 1-D (one variant) or 2-D (n_variants, n_days), got shape {r.shape}")
    if r.shape[0] == 0 or r.shape[1] == 0:
        raise MCInputError(f"daily_returns is empty (shape {r.shape}): no variant or no day to resample")
    bad = ~np.isfinite(r)
    if bad.any():
        v, d = np.argwhere(bad)[0]
        raise MCInputError(f"daily_returns: non-finite value {r[v, d]} at variant row {v}, day index {d} "
                           f"({int(bad.sum())} non-finite value(s) in total)")
    if (r < -1.0).any():
        v, d = np.argwhere(r < -1.0)[0]
        raise MCInputError(f"daily_returns: {r[v, d]} at variant row {v}, day index {d} is below -100 % "
                           f"(a daily return cannot lose more than the whole capital)")
    return r


def _to_utc(t, what: str) -> datetime:
    """A tz-aware datetime (any zone) or epoch ms -> UTC datetime truncated to the millisecond."""
    if isinstance(t, datetime):
        if t.tzinfo is None:
            raise ValueError(f"{what} must be timezone-aware (UTC), got naive {t!r}")
        dt = t.astimezone(timezone.utc)
    elif isinstance(t, (int, np.integer)) and not isinstance(t, bool):
        dt = datetime.fromtimestamp(int(t) / 1000, tz=timezone.utc)
    else:
        raise ValueError(f"{what} must be a timezone-aware datetime or epoch milliseconds, got {t!r}")
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000)


def _parse_ts(v) -> datetime:
    if isinstance(v, datetime):
        return _to_utc(v, "timestamp")
    if not isinstance(v, str):
        raise TypeError("expected an ISO 8601 string")
    dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        raise ValueError("timestamp has no timezone")
    return _to_utc(dt, "timestamp")


# ---------------------------------------------------------------- the simulation


def bootstrap_indices(n_days: int, n_paths: int, horizon: int, block_days: int, kind: str,
                      rng: np.random.Generator) -> np.ndarray:
    """(n_paths, horizon) day indices into a series of ``n_days`` days (see the module docstring)."""
    if kind == "fixed":
        b = min(block_days, n_days)  # a shorter history than one block: the whole history is the block
        n_blocks = -(-horizon // b)
        starts = rng.integers(0, n_days - b + 1, size=(n_paths, n_blocks))
        return (starts[:, :, None] + np.arange(b)).reshape(n_paths, n_blocks * b)[:, :horizon]
    if kind == "stationary":
        new = rng.random((n_paths, horizon)) < 1.0 / block_days
        new[:, 0] = True
        starts = rng.integers(0, n_days, size=(n_paths, horizon))
        pos = np.arange(horizon)
        last = np.maximum.accumulate(np.where(new, pos, 0), axis=1)  # where the current block began
        return (np.take_along_axis(starts, last, axis=1) + (pos - last)) % n_days
    raise ValueError(f"bootstrap must be one of {BOOTSTRAPS}, got {kind!r}")


def resample_paths(daily_returns, cfg: MCConfig) -> np.ndarray:
    """(n_paths, horizon_days) resampled daily returns: a variant per path, then block-bootstrapped days.
    Deterministic in ``cfg.seed``."""
    r = _as_matrix(daily_returns)
    n_var, n_days = r.shape
    rng = np.random.default_rng(cfg.seed)
    variant = rng.integers(0, n_var, size=cfg.n_paths)
    idx = bootstrap_indices(n_days, cfg.n_paths, cfg.horizon_days, cfg.block_days, cfg.bootstrap, rng)
    return r[variant[:, None], idx]


def path_stats(paths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(max drawdown, terminal return) per path of daily returns; equity starts at 1, which counts as a peak."""
    eq = np.cumprod(1.0 + paths, axis=1)
    peak = np.maximum(np.maximum.accumulate(eq, axis=1), 1.0)
    max_dd = (1.0 - eq / peak).max(axis=1)
    return max_dd, eq[:, -1] - 1.0


def _status(prob: float, cfg: MCConfig) -> str:
    if prob >= cfg.red_at:
        return MC_NAMES[RED]
    if prob < cfg.green_below:
        return MC_NAMES[GREEN]
    return MC_NAMES[ORANGE]


def forewarn(daily_returns, cfg: MCConfig | None = None, *, as_of, variant_names: Sequence[str] | None = None
             ) -> MCEnvelope:
    """The MC envelope of ``daily_returns`` (n_variants, n_days) as of ``as_of`` (tz-aware datetime or
    epoch ms). Raises ``MCInputError`` on NaN/inf (naming variant row and day index) or returns < -100 %."""
    cfg = cfg or MCConfig()
    r = _as_matrix(daily_returns)
    ts = _to_utc(as_of, "as_of")
    n_var, n_days = r.shape
    if variant_names is not None and len(variant_names) != n_var:
        raise ValueError(f"variant_names has {len(variant_names)} names for {n_var} variant rows")
    max_dd, term = path_stats(resample_paths(r, cfg))
    p = float(np.count_nonzero(max_dd > cfg.dd_threshold)) / cfg.n_paths
    se = math.sqrt(p * (1.0 - p) / cfg.n_paths)
    t05, t50, t95 = (float(x) for x in np.quantile(term, [0.05, 0.5, 0.95]))
    d50, d95 = (float(x) for x in np.quantile(max_dd, [0.5, 0.95]))
    s_dd = min(max(1.0 - d95 / cfg.dd_threshold, 0.0), 1.0)
    s_ret = min(max(1.0 + t05 / cfg.dd_threshold, 0.0), 1.0)
    score = math.sqrt(s_dd * s_ret)
    status = _status(p, cfg)
    reason = (f"P(maxDD > {cfg.dd_threshold:.0%} over {cfg.horizon_days} d) = {p:.4f} ± {se:.4f} "
              f"({cfg.n_paths} paths, {n_var} variant(s), {n_days} days)")
    if n_days < cfg.min_history_days:
        reason = f"only {n_days} day(s) of history (< {cfg.min_history_days}): at least ORANGE; " + reason
        if status == MC_NAMES[GREEN]:
            status = MC_NAMES[ORANGE]
    return MCEnvelope(status, reason, p, se, score, t05, t50, t95, d50, d95, cfg.n_paths, n_var, n_days,
                      cfg.horizon_days, cfg.block_days, cfg.bootstrap, cfg.dd_threshold, int(cfg.seed), ts,
                      tuple(str(n) for n in variant_names) if variant_names is not None else ())


# ---------------------------------------------------------------- consumers


def _read(envelope_or_record) -> tuple[str | None, datetime | None, str]:
    """(status, timestamp, problem) from an envelope, a Record or a record dict; problem '' if readable."""
    x = envelope_or_record
    if isinstance(x, MCEnvelope):
        return x.status, x.timestamp, ""
    if isinstance(x, Record):
        raw, ts_raw = x.value.get("status"), x.timestamp
    elif isinstance(x, dict):
        raw, ts_raw = x.get("status"), x.get("timestamp")
    else:
        return None, None, f"unreadable MC envelope of type {type(x).__name__}"
    status = raw if raw in MC_NAMES else None
    try:
        ts = _parse_ts(ts_raw)
    except (TypeError, ValueError) as e:
        return status, None, f"unreadable MC envelope timestamp {ts_raw!r}: {e}"
    if status is None:
        return None, ts, f"unreadable MC envelope status {raw!r}"
    return status, ts, ""


def age_hours(envelope_or_record, now) -> float | None:
    """Hours since the envelope's timestamp (None when missing / unreadable); for Cat2's decay."""
    if envelope_or_record is None:
        return None
    _, ts, _ = _read(envelope_or_record)
    if ts is None:
        return None
    return (_to_utc(now, "now") - ts).total_seconds() / 3600.0


def effective_status(envelope_or_record, now, *, staleness_hours: float = DEFAULT_STALENESS_HOURS
                     ) -> tuple[str, str]:
    """(status, reason) a consumer should act on at ``now`` (tz-aware datetime or epoch ms).

    Missing -> ORANGE "no MC envelope"; unreadable -> ORANGE (RED if its status says RED); older than
    ``staleness_hours`` -> ORANGE unless RED; a timestamp more than 5 min in the future -> ORANGE unless
    RED (clock or producer fault); else the envelope's own status."""
    now_dt = _to_utc(now, "now")
    if envelope_or_record is None:
        return MC_NAMES[ORANGE], "no MC envelope"
    status, ts, problem = _read(envelope_or_record)
    red = status == MC_NAMES[RED]
    if problem:
        return (MC_NAMES[RED] if red else MC_NAMES[ORANGE]), problem
    age = now_dt - ts
    if age > timedelta(hours=staleness_hours):
        why = f"MC envelope is stale: {age.total_seconds() / 3600:.2f} h old (> {staleness_hours:g} h)"
        return (status, why + "; RED stays RED") if red else (MC_NAMES[ORANGE], why)
    if -age > FUTURE_TOLERANCE:
        why = f"MC envelope timestamp {iso_utc(ts)} is {-age.total_seconds():.0f} s in the future"
        return (status, why + "; RED stays RED") if red else (MC_NAMES[ORANGE], why)
    return status, f"MC envelope {status}, {age.total_seconds() / 3600:.2f} h old"

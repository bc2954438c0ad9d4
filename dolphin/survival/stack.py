"""Survival stack (DESIGN.md "Survival stack", the seeds' MIG3): Rm = Cat1·Cat2·Cat3·Cat4·Cat5, posture
with hysteresis, and the ``DOLPHIN_SAFETY`` record.

Pure: ``compute_rm`` and ``PostureController`` do no I/O; ``publish_safety`` / ``read_safety`` talk only to
the ``FeatureStore`` port. Decisions taken where DESIGN.md and the seeds leave room (each one tested in
tests/unit/dolphin/survival/test_survival.py):

* Cat1 (invariants): store unreachable, heartbeat missing, or heartbeat older than 30 s -> 0. An age of
  exactly 30 s is still fresh (the rule is "> 30 s").
* Cat2 (MC forewarner): base GREEN 1.0 / ORANGE 0.5 / RED 0.1. DESIGN.md also says an MC status older than
  6 h counts as ORANGE, so past 6 h the base is the worse of the status and ORANGE, then decays:
  ``min(base, 0.5) * exp(-(age_h - 6) / 3)``. A missing MC (no status) counts as ORANGE without decay:
  there is no age to decay from, and the watchdog reports the missing MC separately. A status with an
  unknown age is treated the same way (at most ORANGE, no decay).
* Cat3 (microstructure): ``clip(0.3 + 0.7 * min(depth_quality, fill_prob), 0.3, 1.0)`` on a book no older
  than 30 s; 0.5 when the book is older than 30 s or absent (absent = stale: we know nothing fresh).
* Cat4 (DVOL spike): ``0.3 + 0.7 * (1 - exp(-t_min / tau))``. DESIGN.md asks for a fast attack to 0.3 and
  a 60-minute recovery; the seeds' test wants Cat4 >= 0.9 at 60 min, i.e. ``exp(-60/tau) <= 1/7``,
  ``tau <= 60 / ln 7 = 30.8 min``. We read "60-minute recovery" as the usual settling time of a first-order
  system, three time constants (95 % of the gap closed): ``tau = 60 / 3 = 20 min``, so Cat4(60) = 0.965.
  (The seeds' ``tau = 60`` would give 0.742 at 60 min.)
* Cat5 (capital stress): ``1 / (1 + exp(20 * (dd - 0.12)))`` exactly as DESIGN.md writes it. Note its
  ceiling: Cat5(0) = 0.9168, so Rm never exceeds 0.917 and APEX (>= 0.85) needs a drawdown of at most 3.327 %.
* Postures: APEX >= 0.85, STALKER >= 0.40, TURTLE >= 0.10, else HIBERNATE (boundaries inclusive).
* Hysteresis: a step down needs 2 consecutive checks whose target is below the current posture, a step up
  5 consecutive checks whose target is above it; a check that agrees with the current posture, or points
  the other way, restarts the count. When a step is taken it goes straight to the mildest posture that
  every check of the run agreed on (down: the least severe of their targets; up: the least improved), so
  APEX -> HIBERNATE takes 2 checks, not 6. Cat1 = 0 is an invariant kill: it bypasses hysteresis and
  moves to HIBERNATE on that very check. Leaving HIBERNATE afterwards needs the usual 5 checks.
"""

from __future__ import annotations

import logging
import math
import numbers
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping, NamedTuple

from dolphin.engine.config import APEX, GREEN, HIBERNATE, MC_NAMES, ORANGE, POSTURE_NAMES, RED, STALKER, TURTLE
from dolphin.store.port import SAFETY, FeatureStore, Record, iso_utc, publish_if_newer

log = logging.getLogger("dolphin.survival")

SAFETY_KEY = "latest"  # key in DOLPHIN_SAFETY (the port defines no constant; dolphin.status reads "latest")
CATS = ("Cat1", "Cat2", "Cat3", "Cat4", "Cat5")
DOWN, UP = "down", "up"


class SurvivalInputError(ValueError):
    """An input to the survival stack is malformed (names the field and the value)."""


@dataclass(frozen=True)
class SurvivalConfig:
    # Cat1
    heartbeat_max_age_s: float = 30.0
    # Cat2
    mc_base: tuple = (1.0, 0.5, 0.1)  # indexed by GREEN, ORANGE, RED
    mc_fresh_hours: float = 6.0
    mc_decay_hours: float = 3.0
    # Cat3
    ob_max_age_s: float = 30.0
    ob_floor: float = 0.3
    ob_stale_value: float = 0.5
    # Cat4
    dvol_floor: float = 0.3
    dvol_recovery_min: float = 60.0
    dvol_recovery_time_constants: float = 3.0  # 60-min recovery = 3 tau (95 % settled) -> tau = 20 min
    # Cat5
    dd_steepness: float = 20.0
    dd_center: float = 0.12
    cat5_peak_days: float = 30.0  # drawdown from the highest equity of the last N days (DESIGN.md); 0 = all-time
    # postures (Rm lower bounds, inclusive)
    apex_min: float = 0.85
    stalker_min: float = 0.40
    turtle_min: float = 0.10
    # hysteresis
    checks_down: int = 2
    checks_up: int = 5
    # ages below zero within this tolerance (clock skew between processes) count as 0; beyond it, an error
    clock_skew_s: float = 2.0

    def __post_init__(self):
        if len(self.mc_base) != 3 or not all(0.0 <= b <= 1.0 for b in self.mc_base):
            raise ValueError(f"SurvivalConfig.mc_base must be 3 values in [0, 1] (GREEN, ORANGE, RED): {self.mc_base}")
        if not 1.0 >= self.apex_min > self.stalker_min > self.turtle_min > 0.0:
            raise ValueError("SurvivalConfig: need 1 >= apex_min > stalker_min > turtle_min > 0, got "
                             f"{self.apex_min}, {self.stalker_min}, {self.turtle_min}")
        if self.checks_down < 1 or self.checks_up < 1:
            raise ValueError(f"SurvivalConfig: checks_down/checks_up must be >= 1, got "
                             f"{self.checks_down}/{self.checks_up}")
        for f in ("heartbeat_max_age_s", "mc_fresh_hours", "mc_decay_hours", "ob_max_age_s", "dvol_recovery_min",
                  "dvol_recovery_time_constants", "dd_steepness"):
            if not getattr(self, f) > 0:
                raise ValueError(f"SurvivalConfig.{f} must be > 0, got {getattr(self, f)}")

    @property
    def dvol_tau_min(self) -> float:
        return self.dvol_recovery_min / self.dvol_recovery_time_constants


@dataclass(frozen=True)
class SurvivalInputs:
    store_reachable: bool
    heartbeat_age_s: float | None
    mc_status: int | None  # dolphin.engine.config GREEN / ORANGE / RED; None = no MC value visible
    mc_age_hours: float | None
    ob_depth_quality: float | None
    ob_fill_prob: float | None
    ob_age_s: float | None
    minutes_since_dvol_spike: float | None  # None = no spike in memory
    drawdown: float  # 1 - capital / peak, fraction in [0, 1]

    def __post_init__(self):
        if not isinstance(self.store_reachable, bool):
            raise SurvivalInputError(f"store_reachable must be a bool, got {self.store_reachable!r}")
        st = self.mc_status
        if st is not None and (isinstance(st, bool) or not isinstance(st, numbers.Integral)
                               or st not in (GREEN, ORANGE, RED)):
            raise SurvivalInputError(f"mc_status must be GREEN/ORANGE/RED ({GREEN}/{ORANGE}/{RED}) or None, "
                                     f"got {self.mc_status!r}")
        for f in ("heartbeat_age_s", "mc_age_hours", "ob_age_s", "minutes_since_dvol_spike"):
            _number(f, getattr(self, f), optional=True)
        for f in ("ob_depth_quality", "ob_fill_prob"):
            v = _number(f, getattr(self, f), optional=True)
            if v is not None and not 0.0 <= v <= 1.0:
                raise SurvivalInputError(f"{f} must be in [0, 1], got {v!r}")
        dd = _number("drawdown", self.drawdown, optional=False)
        if not 0.0 <= dd <= 1.0:
            raise SurvivalInputError(f"drawdown must be a fraction in [0, 1] (1 - capital/peak), got {dd!r}")


def _number(name: str, v: Any, optional: bool) -> float | None:
    if v is None:
        if optional:
            return None
        raise SurvivalInputError(f"{name} is required, got None")
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise SurvivalInputError(f"{name} must be a number, got {v!r}")
    if not math.isfinite(v):
        raise SurvivalInputError(f"{name} must be finite, got {v!r}")
    return float(v)


def _age(name: str, v: float | None, cfg: SurvivalConfig, scale_s: float) -> float | None:
    """Clamp clock-skew negatives to 0; reject an age further in the future (a value from the future
    would be look-ahead or a broken clock)."""
    if v is None:
        return None
    if v < 0:
        if v * scale_s < -cfg.clock_skew_s:
            raise SurvivalInputError(f"{name} = {v!r} is negative beyond the {cfg.clock_skew_s} s clock-skew "
                                     f"tolerance (a timestamp from the future)")
        return 0.0
    return float(v)


@dataclass(frozen=True)
class RmBreakdown:
    rm: float
    cat1: float
    cat2: float
    cat3: float
    cat4: float
    cat5: float
    reasons: Mapping[str, str] = field(default_factory=dict)  # "Cat1".."Cat5" -> short human text

    def as_dict(self) -> dict:
        return dict(zip(CATS, (self.cat1, self.cat2, self.cat3, self.cat4, self.cat5)))

    def describe(self) -> str:
        cats = " ".join(f"{k}={v:.3f}" for k, v in self.as_dict().items())
        why = "; ".join(f"{k}: {self.reasons[k]}" for k in CATS if k in self.reasons)
        return f"Rm={self.rm:.4f} [{cats}] ({why})"


# ------------------------------------------------------------------ the five categories


def cat1_invariants(store_reachable: bool, heartbeat_age_s: float | None, cfg: SurvivalConfig) -> tuple[float, str]:
    if not store_reachable:
        return 0.0, "store unreachable"
    if heartbeat_age_s is None:
        return 0.0, "runtime heartbeat missing"
    if heartbeat_age_s > cfg.heartbeat_max_age_s:
        return 0.0, f"heartbeat {heartbeat_age_s:.1f} s old > {cfg.heartbeat_max_age_s:g} s"
    return 1.0, f"store reachable, heartbeat {heartbeat_age_s:.1f} s old"


def cat2_mc(mc_status: int | None, mc_age_hours: float | None, cfg: SurvivalConfig) -> tuple[float, str]:
    orange = cfg.mc_base[ORANGE]
    if mc_status is None:
        return orange, "MC status missing: counted as ORANGE (no age to decay from)"
    base, name = cfg.mc_base[mc_status], MC_NAMES[mc_status]
    if mc_age_hours is None:
        return min(base, orange), f"MC {name}, age unknown: counted as at most ORANGE"
    if mc_age_hours <= cfg.mc_fresh_hours:
        return base, f"MC {name}, {mc_age_hours:.2f} h old"
    decay = math.exp(-(mc_age_hours - cfg.mc_fresh_hours) / cfg.mc_decay_hours)
    return min(base, orange) * decay, (f"MC {name} stale ({mc_age_hours:.2f} h > {cfg.mc_fresh_hours:g} h): "
                                       f"at most ORANGE, decay x{decay:.3f}")


def cat3_microstructure(depth_quality: float | None, fill_prob: float | None, ob_age_s: float | None,
                        cfg: SurvivalConfig) -> tuple[float, str]:
    if depth_quality is None or fill_prob is None or ob_age_s is None:
        return cfg.ob_stale_value, "order book absent (counted as stale)"
    if ob_age_s > cfg.ob_max_age_s:
        return cfg.ob_stale_value, f"order book stale ({ob_age_s:.1f} s > {cfg.ob_max_age_s:g} s)"
    q = min(depth_quality, fill_prob)
    v = min(1.0, max(cfg.ob_floor, cfg.ob_floor + (1.0 - cfg.ob_floor) * q))
    return v, f"book depth {depth_quality:.2f}, fill prob {fill_prob:.2f}"


def cat4_dvol(minutes_since_spike: float | None, cfg: SurvivalConfig) -> tuple[float, str]:
    if minutes_since_spike is None:
        return 1.0, "no DVOL spike in memory"
    v = cfg.dvol_floor + (1.0 - cfg.dvol_floor) * (1.0 - math.exp(-minutes_since_spike / cfg.dvol_tau_min))
    return v, f"DVOL spike {minutes_since_spike:.1f} min ago"


def cat5_drawdown(drawdown: float, cfg: SurvivalConfig) -> tuple[float, str]:
    z = cfg.dd_steepness * (drawdown - cfg.dd_center)
    # 1/(1+e^z) written to avoid overflow for large z
    v = 1.0 / (1.0 + math.exp(z)) if z < 700 else 0.0
    return v, f"drawdown {drawdown * 100:.2f} %"


def compute_rm(inputs: SurvivalInputs, cfg: SurvivalConfig = SurvivalConfig()) -> RmBreakdown:
    """Rm and its five factors. Raises ``SurvivalInputError`` on malformed inputs."""
    if not isinstance(inputs, SurvivalInputs):
        raise SurvivalInputError(f"compute_rm needs SurvivalInputs, got {type(inputs).__name__}")
    hb = _age("heartbeat_age_s", inputs.heartbeat_age_s, cfg, 1.0)
    mc_age = _age("mc_age_hours", inputs.mc_age_hours, cfg, 3600.0)
    ob_age = _age("ob_age_s", inputs.ob_age_s, cfg, 1.0)
    spike = _age("minutes_since_dvol_spike", inputs.minutes_since_dvol_spike, cfg, 60.0)
    parts = (cat1_invariants(inputs.store_reachable, hb, cfg),
             cat2_mc(inputs.mc_status, mc_age, cfg),
             cat3_microstructure(inputs.ob_depth_quality, inputs.ob_fill_prob, ob_age, cfg),
             cat4_dvol(spike, cfg),
             cat5_drawdown(float(inputs.drawdown), cfg))
    vals = [p[0] for p in parts]
    rm = 0.0 if vals[0] == 0.0 else vals[0] * vals[1] * vals[2] * vals[3] * vals[4]
    return RmBreakdown(min(1.0, max(0.0, rm)), *vals, reasons={c: p[1] for c, p in zip(CATS, parts)})


def posture_for(rm: float, cfg: SurvivalConfig = SurvivalConfig()) -> int:
    """Posture code (dolphin.engine.config) for an Rm, without hysteresis; lower bounds inclusive."""
    if not isinstance(rm, numbers.Real) or isinstance(rm, bool) or not math.isfinite(rm):
        raise SurvivalInputError(f"Rm must be a finite number, got {rm!r}")
    if rm >= cfg.apex_min:
        return APEX
    if rm >= cfg.stalker_min:
        return STALKER
    if rm >= cfg.turtle_min:
        return TURTLE
    return HIBERNATE


# ------------------------------------------------------------------ posture with hysteresis


@dataclass(frozen=True)
class PostureDecision:
    posture: int
    previous: int
    changed: bool
    rm: float
    breakdown: RmBreakdown
    pending_direction: str | None  # "down" / "up" / None
    pending_count: int
    ts: datetime
    invariant_kill: bool = False  # Cat1 = 0 applied without hysteresis

    @property
    def posture_name(self) -> str:
        return POSTURE_NAMES[self.posture]


def _utc(ts: Any, what: str) -> datetime:
    if not isinstance(ts, datetime):
        raise SurvivalInputError(f"{what} must be a timezone-aware datetime, got {ts!r}")
    if ts.tzinfo is None:
        raise SurvivalInputError(f"{what} {ts.isoformat()} is naive: give a timezone-aware (UTC) datetime")
    return ts.astimezone(timezone.utc)


class PostureController:
    """Hysteresis over ``posture_for(Rm)`` (see the module docstring for the rules). One ``update`` per
    survival check. ``to_dict`` / ``from_dict`` carry posture and counters across a process restart;
    ``changes`` (this process's posture changes) is a log, not state."""

    def __init__(self, cfg: SurvivalConfig = SurvivalConfig(), initial: int = APEX):
        if initial not in (APEX, STALKER, TURTLE, HIBERNATE) or isinstance(initial, bool):
            raise SurvivalInputError(f"initial posture must be one of APEX..HIBERNATE (0..3), got {initial!r}")
        self.cfg = cfg
        self.posture = int(initial)
        self.pending_direction: str | None = None
        self.pending_count = 0
        self.pending_target: int | None = None  # mildest posture every check of the current run agreed on
        self.last_ts: datetime | None = None
        self.changes: list[PostureDecision] = []

    def _reset(self) -> None:
        self.pending_direction, self.pending_count, self.pending_target = None, 0, None

    def update(self, breakdown: RmBreakdown, ts: datetime) -> PostureDecision:
        if not isinstance(breakdown, RmBreakdown):
            raise SurvivalInputError(f"update needs an RmBreakdown, got {type(breakdown).__name__}")
        ts = _utc(ts, "check timestamp")
        if self.last_ts is not None and ts < self.last_ts:
            raise SurvivalInputError(f"check timestamp {ts.isoformat()} is before the previous check "
                                     f"{self.last_ts.isoformat()}")
        previous, kill = self.posture, breakdown.cat1 == 0.0
        if kill:
            self.posture = HIBERNATE
            self._reset()
        else:
            target = posture_for(breakdown.rm, self.cfg)
            direction = None if target == self.posture else (DOWN if target > self.posture else UP)
            if direction is None:
                self._reset()
            else:
                if direction != self.pending_direction:
                    self._reset()
                    self.pending_direction = direction
                self.pending_count += 1
                # down: every check was at least as bad as the mildest target; up: at least as good as
                # the least improved one
                t = self.pending_target
                self.pending_target = target if t is None else (min(t, target) if direction == DOWN else max(t, target))
                needed = self.cfg.checks_down if direction == DOWN else self.cfg.checks_up
                if self.pending_count >= needed:
                    self.posture = self.pending_target
                    self._reset()
        self.last_ts = ts
        d = PostureDecision(self.posture, previous, self.posture != previous, breakdown.rm, breakdown,
                            self.pending_direction, self.pending_count, ts, kill)
        if d.changed:
            self.changes.append(d)
            log.warning("posture %s -> %s%s at %s: %s", POSTURE_NAMES[previous], POSTURE_NAMES[d.posture],
                        " (invariant kill, no hysteresis)" if kill else "", iso_utc(ts), breakdown.describe(),
                        extra={"survival": safety_record(d)})
        return d

    def to_dict(self) -> dict:
        return {"posture": POSTURE_NAMES[self.posture], "pending_direction": self.pending_direction,
                "pending_count": self.pending_count,
                "pending_target": None if self.pending_target is None else POSTURE_NAMES[self.pending_target],
                "last_ts": None if self.last_ts is None else iso_utc(self.last_ts),
                "checks_down": self.cfg.checks_down, "checks_up": self.cfg.checks_up}

    @classmethod
    def from_dict(cls, d: Mapping, cfg: SurvivalConfig = SurvivalConfig()) -> "PostureController":
        def name(field_: str, v: Any, optional: bool) -> int | None:
            if v is None and optional:
                return None
            if v not in POSTURE_NAMES:
                raise SurvivalInputError(f"controller state: {field_} {v!r} is not one of {POSTURE_NAMES}")
            return POSTURE_NAMES.index(v)

        try:
            c = cls(cfg, name("posture", d["posture"], False))
            direction, count = d["pending_direction"], d["pending_count"]
            target = name("pending_target", d["pending_target"], True)
            last = d["last_ts"]
        except KeyError as e:
            raise SurvivalInputError(f"controller state: missing field {e.args[0]!r}") from None
        if (d.get("checks_down"), d.get("checks_up")) != (cfg.checks_down, cfg.checks_up):
            raise SurvivalInputError(f"controller state was saved with checks_down/up = {d.get('checks_down')}/"
                                     f"{d.get('checks_up')}, config now has {cfg.checks_down}/{cfg.checks_up}")
        if direction not in (None, DOWN, UP) or isinstance(count, bool) or not isinstance(count, int) or count < 0 \
                or (direction is None) != (count == 0) or (direction is None) != (target is None):
            raise SurvivalInputError(f"controller state: inconsistent pending run {direction!r}/{count!r}/{target!r}")
        c.pending_direction, c.pending_count, c.pending_target = direction, count, target
        c.last_ts = None if last is None else _utc(datetime.fromisoformat(str(last).replace("Z", "+00:00")), "last_ts")
        return c


# ------------------------------------------------------------------ DOLPHIN_SAFETY


def safety_record(decision: PostureDecision) -> dict:
    """The ``DOLPHIN_SAFETY`` value (JSON-ready) for one decision."""
    b = decision.breakdown
    return {"posture": POSTURE_NAMES[decision.posture], "Rm": float(decision.rm), "breakdown": b.as_dict(),
            "reasons": {k: b.reasons.get(k, "") for k in CATS}, "timestamp": iso_utc(decision.ts),
            "changed": bool(decision.changed), "previous": POSTURE_NAMES[decision.previous]}


def publish_safety(store: FeatureStore, decision: PostureDecision) -> bool:
    """Write the decision to ``DOLPHIN_SAFETY/latest`` with compare-and-set; a record with an equal or newer
    timestamp already there is kept (returns False). Raises ``StoreUnavailableError`` when the store
    cannot be reached (a write is never silently dropped)."""
    value = safety_record(decision)
    ts = value.pop("timestamp")
    return publish_if_newer(store, SAFETY, SAFETY_KEY, Record(value, ts))


class SafetyReading(NamedTuple):
    posture: int  # dolphin.engine.config code
    rm: float
    breakdown: dict  # "Cat1".."Cat5" -> float


def read_safety(store: FeatureStore) -> SafetyReading | None:
    """The published posture, Rm and breakdown; None when nothing is published. Raises
    ``StoreUnavailableError`` when the store cannot be reached, ``ValueError`` on a malformed record."""
    rec = store.get(SAFETY, SAFETY_KEY)
    if rec is None:
        return None
    v, where = rec.value, f"{SAFETY}/{SAFETY_KEY} @ {rec.timestamp}"
    if v.get("posture") not in POSTURE_NAMES:
        raise ValueError(f"{where}: posture {v.get('posture')!r} is not one of {POSTURE_NAMES}")
    rm, bd = v.get("Rm"), v.get("breakdown")
    if isinstance(rm, bool) or not isinstance(rm, (int, float)) or not 0.0 <= rm <= 1.0:
        raise ValueError(f"{where}: Rm {rm!r} is not a number in [0, 1]")
    if not isinstance(bd, dict) or set(bd) != set(CATS) or not all(
            isinstance(bd[k], (int, float)) and not isinstance(bd[k], bool) for k in CATS):
        raise ValueError(f"{where}: breakdown {bd!r} must map {CATS} to numbers")
    return SafetyReading(POSTURE_NAMES.index(v["posture"]), float(rm), {k: float(bd[k]) for k in CATS})

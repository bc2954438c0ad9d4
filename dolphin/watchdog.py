"""System-health watchdog (DESIGN.md: Dagster runs it every 10 min; result in ``DOLPHIN_SYSTEM_HEALTH``).

Pure checks over timestamps the caller gathers (``collect_inputs`` reads the ones the feature store holds,
and turns an unreachable store into a failed check instead of an exception). Each check is
``{name, ok, value, limit, detail}``; a check whose input is missing (None) is not ok. Overall status is
``"GREEN"`` when every check is ok, else ``"DEGRADED"``.

Limits (``HealthConfig``; all boundaries inclusive, ages in the unit the check names):
- ``store``: feature store reachable.
- ``scan_age_s`` <= 900 (15 min): latest eigenvalue scan.
- ``daily_partition_age_days`` <= 1, with a grace period: the daily paper day for D runs at 00:05 UTC on
  D+1, so until ``now - grace`` has crossed midnight the day before yesterday still counts as current.
  A partition dated in the future is not ok.
- ``exf_age_h`` <= 26 (daily ExF at 23:00 UTC plus 3 h slack).
- ``mc_age_h`` <= 6 (DESIGN.md: an older MC status counts as ORANGE).
- ``heartbeat_age_s`` <= 30 (the survival stack's Cat1 limit).
A timestamp more than ``clock_skew_s`` in the future is not ok either (a broken clock hides staleness).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from dolphin.store.port import (EXF_LATEST, FEATURES, MC_FOREWARNER_LATEST, SCAN_LATEST, SYSTEM_HEALTH,
                                FeatureStore, Record, StoreUnavailableError, iso_utc, publish_if_newer)

HEALTH_KEY = "latest"  # key in DOLPHIN_SYSTEM_HEALTH (the port defines no constant)
STATUS_GREEN, STATUS_DEGRADED = "GREEN", "DEGRADED"


@dataclass(frozen=True)
class HealthConfig:
    scan_max_age_s: float = 15 * 60.0
    partition_max_age_days: int = 1
    partition_grace: timedelta = timedelta(hours=2)
    exf_max_age_h: float = 26.0
    mc_max_age_h: float = 6.0
    heartbeat_max_age_s: float = 30.0
    clock_skew_s: float = 2.0


@dataclass(frozen=True)
class HealthInputs:
    store_reachable: bool
    latest_scan_ts: datetime | None
    latest_daily_partition: date | None
    exf_ts: datetime | None
    mc_ts: datetime | None
    runtime_heartbeat_ts: datetime | None
    now: datetime

    def __post_init__(self):
        if not isinstance(self.store_reachable, bool):
            raise ValueError(f"HealthInputs.store_reachable must be a bool, got {self.store_reachable!r}")
        for f in ("latest_scan_ts", "exf_ts", "mc_ts", "runtime_heartbeat_ts", "now"):
            v = getattr(self, f)
            if v is None and f != "now":
                continue
            if not isinstance(v, datetime) or v.tzinfo is None:
                raise ValueError(f"HealthInputs.{f} must be a timezone-aware datetime, got {v!r}")
        p = self.latest_daily_partition
        if p is not None and (isinstance(p, datetime) or not isinstance(p, date)):
            raise ValueError(f"HealthInputs.latest_daily_partition must be a date, got {p!r}")


@dataclass(frozen=True)
class HealthCheck:
    name: str
    ok: bool
    value: Any  # the measured age (or reachability); None when missing
    limit: Any
    detail: str

    def as_dict(self) -> dict:
        return {"name": self.name, "ok": self.ok, "value": self.value, "limit": self.limit, "detail": self.detail}


@dataclass(frozen=True)
class HealthReport:
    now: datetime
    checks: tuple[HealthCheck, ...]

    @property
    def status(self) -> str:
        return STATUS_GREEN if all(c.ok for c in self.checks) else STATUS_DEGRADED

    @property
    def failing(self) -> list[str]:
        return [c.name for c in self.checks if not c.ok]

    def check(self, name: str) -> HealthCheck:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(f"no health check named {name!r} (have {[c.name for c in self.checks]})")

    def to_record(self) -> dict:
        """JSON-ready ``DOLPHIN_SYSTEM_HEALTH`` value, with ``timestamp`` = the instant checked."""
        return {"status": self.status, "failing": self.failing, "checks": [c.as_dict() for c in self.checks],
                "timestamp": iso_utc(self.now)}


def _age_check(name: str, ts: datetime | None, now: datetime, limit: float, unit_s: float, unit: str,
               what: str, skew_s: float) -> HealthCheck:
    if ts is None:
        return HealthCheck(name, False, None, limit, f"{what}: missing")
    age = (now - ts).total_seconds()
    if age < -skew_s:
        return HealthCheck(name, False, age / unit_s, limit,
                           f"{what}: timestamp {iso_utc(ts)} is {-age:.0f} s in the future (clock problem)")
    age_u = max(0.0, age) / unit_s
    ok = age_u <= limit
    return HealthCheck(name, ok, age_u, limit,
                       f"{what}: {age_u:.3g} {unit} old {'<=' if ok else '>'} {limit:g} {unit} (as of {iso_utc(ts)})")


def check_health(inputs: HealthInputs, cfg: HealthConfig = HealthConfig()) -> HealthReport:
    now = inputs.now.astimezone(timezone.utc)
    checks = [HealthCheck("store", inputs.store_reachable, inputs.store_reachable, True,
                          "feature store reachable" if inputs.store_reachable else "feature store unreachable")]
    checks.append(_age_check("scan_age_s", inputs.latest_scan_ts, now, cfg.scan_max_age_s, 1.0, "s",
                             "latest scan", cfg.clock_skew_s))
    p = inputs.latest_daily_partition
    if p is None:
        checks.append(HealthCheck("daily_partition_age_days", False, None, cfg.partition_max_age_days,
                                  "latest daily partition: missing"))
    else:
        age_days = (now.date() - p).days
        oldest_ok = (now - cfg.partition_grace).date() - timedelta(days=cfg.partition_max_age_days)
        if p > now.date():
            ok, why = False, f"latest daily partition {p} is after today {now.date()} (clock problem)"
        else:
            ok = p >= oldest_ok
            why = (f"latest daily partition {p}: {age_days} day(s) old; oldest acceptable now is {oldest_ok} "
                   f"({cfg.partition_max_age_days} day + {cfg.partition_grace} grace)")
        checks.append(HealthCheck("daily_partition_age_days", ok, age_days, cfg.partition_max_age_days, why))
    checks.append(_age_check("exf_age_h", inputs.exf_ts, now, cfg.exf_max_age_h, 3600.0, "h", "ExF",
                             cfg.clock_skew_s))
    checks.append(_age_check("mc_age_h", inputs.mc_ts, now, cfg.mc_max_age_h, 3600.0, "h", "MC forewarner",
                             cfg.clock_skew_s))
    checks.append(_age_check("heartbeat_age_s", inputs.runtime_heartbeat_ts, now, cfg.heartbeat_max_age_s, 1.0,
                             "s", "runtime heartbeat", cfg.clock_skew_s))
    return HealthReport(now, tuple(checks))


def collect_inputs(store: FeatureStore | None, now: datetime, *, latest_daily_partition: date | None,
                   runtime_heartbeat_ts: datetime | None, latest_scan_ts: datetime | None = None) -> HealthInputs:
    """Read the scan / ExF / MC timestamps from the feature store (``DOLPHIN_FEATURES``). An unreachable
    store (or ``store=None``) never raises: it gives ``store_reachable=False`` and missing timestamps,
    which the checks then report. ``latest_scan_ts`` given by the caller (e.g. from the scan files) wins
    over the store's ``scan_latest``."""
    stamps: dict[str, datetime | None] = {SCAN_LATEST: None, EXF_LATEST: None, MC_FOREWARNER_LATEST: None}
    reachable = store is not None
    if store is not None:
        try:
            for key in stamps:
                rec = store.get(FEATURES, key)
                if rec is not None:
                    stamps[key] = datetime.fromisoformat(rec.timestamp.replace("Z", "+00:00"))
        except StoreUnavailableError:
            reachable = False
            stamps = dict.fromkeys(stamps)
    return HealthInputs(reachable, latest_scan_ts or stamps[SCAN_LATEST], latest_daily_partition,
                        stamps[EXF_LATEST], stamps[MC_FOREWARNER_LATEST], runtime_heartbeat_ts, now)


def publish_health(store: FeatureStore, report: HealthReport) -> bool:
    """Write the report to ``DOLPHIN_SYSTEM_HEALTH/latest`` unless a record at least as new is there
    (compare-and-set). Raises ``StoreUnavailableError`` when the store cannot be reached."""
    value = report.to_record()
    ts = value.pop("timestamp")
    return publish_if_newer(store, SYSTEM_HEALTH, HEALTH_KEY, Record(value, ts))


def read_health(store: FeatureStore) -> dict | None:
    """The published health record (with ``timestamp``), or None."""
    rec = store.get(SYSTEM_HEALTH, HEALTH_KEY)
    return None if rec is None else {**rec.value, "timestamp": rec.timestamp}

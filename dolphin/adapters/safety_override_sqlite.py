"""The operator's manual safety override (DESIGN.md "Survival stack"; the seeds' runbook "manual override,
EMERGENCY ONLY"): a posture set by hand for a limited time, with a reason, audited in the ledger.

Storage: table ``safety_overrides`` in the capital ledger's SQLite file (the same file, so the audit lives
with the capital it protects; its layout: ``dolphin.ledger.schema``, version 3). Append-only: a ``set`` row
(posture, reason, who, set at, until) and a ``clear`` row (who, reason) are the only writes; nothing is ever
updated or deleted, so the table is the audit trail. The override in force at ``now`` is the newest row
stamped at or before ``now``: a ``set`` whose ``until`` is after ``now`` (it expires by itself, no process has
to remove it), or nothing after a ``clear``. Times are UTC epoch nanoseconds (the runtime's clock), so a
replay on the bar clock asks "as of that bar" and an override set today never reaches a past bar.

How the runtime honours it (``runtime.risk.StoreRiskSource``): the survival stack still computes Rm and runs
its hysteresis (so the posture it reaches is ready when the override ends), but the posture used is the
override's, and Rm is clipped into that posture's band (APEX [0.85, 1], STALKER [0.40, 0.85), TURTLE
[0.10, 0.40), HIBERNATE [0, 0.10)) so posture and leverage agree. One thing an override cannot lift: an
invariant kill (Cat1 = 0, the store unreachable) stays HIBERNATE, because the runtime cannot then see what
it is doing.
"""

import getpass
import os
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from dolphin.engine.config import POSTURE_NAMES
from dolphin.ledger import db
from dolphin.ledger.schema import LEDGER


MAX_TTL_S = 7 * 86400  # an emergency measure, not a configuration: a week at most
# Rm band of each posture (inclusive lower bound, exclusive upper except APEX's 1.0), DESIGN.md thresholds
RM_BANDS = {0: (0.85, 1.0), 1: (0.40, 0.85 - 1e-9), 2: (0.10, 0.40 - 1e-9), 3: (0.0, 0.10 - 1e-9)}


class OverrideError(ValueError):
    pass


@dataclass(frozen=True)
class Override:
    seq: int
    kind: str  # 'set' | 'clear'
    posture: int | None  # dolphin.engine.config APEX..HIBERNATE; None for 'clear'
    reason: str
    who: str
    at_ns: int
    until_ns: int | None

    @property
    def posture_name(self) -> str | None:
        return None if self.posture is None else POSTURE_NAMES[self.posture]

    @property
    def at(self) -> str:
        return _iso(self.at_ns)

    @property
    def until(self) -> str | None:
        return None if self.until_ns is None else _iso(self.until_ns)

    def active(self, now_ns: int) -> bool:
        return self.kind == "set" and self.at_ns <= now_ns < self.until_ns

    def remaining_s(self, now_ns: int) -> float:
        return max(0.0, (self.until_ns - now_ns) / 1e9) if self.until_ns is not None else 0.0

    def clip_rm(self, rm: float) -> float:
        lo, hi = RM_BANDS[self.posture]
        return min(hi, max(lo, float(rm)))

    def to_dict(self) -> dict:
        return {**asdict(self), "posture_name": self.posture_name, "at": self.at, "until": self.until}

    def describe(self, now_ns: int | None = None) -> str:
        if self.kind == "clear":
            return f"cleared by {self.who} at {self.at}: {self.reason}"
        left = "" if now_ns is None else (f", {_dur(self.remaining_s(now_ns))} left" if self.active(now_ns)
                                          else ", expired" if now_ns >= self.until_ns else ", not yet in force")
        return f"{self.posture_name} until {self.until} (set by {self.who} at {self.at}: {self.reason}{left})"


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _dur(s: float) -> str:
    s = int(round(s))
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 60}m {s % 60:02d}s"


def parse_duration(text: str) -> float:
    """'90s', '15m', '2h', '1h30m', '1d' or a number of seconds -> seconds (> 0)."""
    t = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        s = float(t)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)([smhd])", t)
        if not parts or "".join(a + b for a, b in parts) != t:
            raise OverrideError(f"duration {text!r}: use e.g. 90s, 15m, 2h, 1h30m, 1d")
        s = sum(float(a) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[u] for a, u in parts)
    if not s > 0:
        raise OverrideError(f"duration {text!r} must be positive")
    return s


def parse_posture(p) -> int:
    if isinstance(p, int) and not isinstance(p, bool) and 0 <= p < len(POSTURE_NAMES):
        return p
    name = str(p).strip().upper()
    if name not in POSTURE_NAMES:
        raise OverrideError(f"posture {p!r}: one of {', '.join(POSTURE_NAMES)}")
    return POSTURE_NAMES.index(name)


def _path(db_or_path) -> Path:
    if isinstance(db_or_path, (str, os.PathLike)):
        return Path(db_or_path)
    p = getattr(db_or_path, "path", None)  # CapitalLedger, FillJournal
    if p is None:
        raise OverrideError(f"not a ledger or a ledger path: {db_or_path!r}")
    return Path(p)


def _has_table(con) -> bool:
    return con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'safety_overrides'"
                       ).fetchone() is not None


def _row(r) -> Override:
    return Override(seq=r["seq"], kind=r["kind"], posture=None if r["posture"] is None else
                    POSTURE_NAMES.index(r["posture"]), reason=r["reason"], who=r["who"], at_ns=r["at_ns"],
                    until_ns=r["until_ns"])


def default_who() -> str:
    try:
        return os.environ.get("DOLPHIN_OPERATOR") or getpass.getuser()
    except Exception:
        return "unknown"


def _now_ns() -> int:
    import time
    return time.time_ns()


def _append(path: Path, kind, posture, reason, who, at_ns, until_ns) -> Override:
    db.init(path, LEDGER)
    with db.write(path) as con:
        cur = con.execute(
            "INSERT INTO safety_overrides (kind, posture, reason, who, at_ns, until_ns, recorded_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (kind, None if posture is None else POSTURE_NAMES[posture], reason, who, int(at_ns), until_ns,
             _iso(at_ns)))
        return _row(con.execute("SELECT * FROM safety_overrides WHERE seq = ?", (cur.lastrowid,)).fetchone())


def set_override(db_or_path, posture, reason: str, ttl_s: float, who: str | None = None, *,
                 now_ns: int | None = None) -> Override:
    """Set ``posture`` for ``ttl_s`` seconds from now (at most ``MAX_TTL_S``), with a reason (required)."""
    p = parse_posture(posture)
    reason = (reason or "").strip()
    if not reason:
        raise OverrideError("an override needs a reason (it is audited)")
    try:
        ttl = float(ttl_s)
    except (TypeError, ValueError):
        raise OverrideError(f"ttl {ttl_s!r} is not a number of seconds") from None
    if not 0 < ttl <= MAX_TTL_S:
        raise OverrideError(f"ttl {ttl_s!r} s: must be > 0 and at most {MAX_TTL_S} s (7 days)")
    at = _now_ns() if now_ns is None else int(now_ns)
    return _append(_path(db_or_path), "set", p, reason, who or default_who(), at, at + int(ttl * 1e9))


def clear_override(db_or_path, reason: str = "cleared by operator", who: str | None = None, *,
                   now_ns: int | None = None) -> Override:
    """End any override now (appends a ``clear`` row; the set row stays in the audit)."""
    at = _now_ns() if now_ns is None else int(now_ns)
    return _append(_path(db_or_path), "clear", None, (reason or "").strip() or "cleared by operator",
                   who or default_who(), at, None)


def list_overrides(db_or_path, limit: int | None = None) -> list:
    """Every row, oldest first (the last ``limit`` when given). A ledger without the table: []."""
    path = _path(db_or_path)
    if not path.is_file():
        return []
    with db.connect(path) as con:
        if not _has_table(con):
            return []
        rows = [_row(r) for r in con.execute("SELECT * FROM safety_overrides ORDER BY seq")]
    return rows[-limit:] if limit else rows


def active_override(db_or_path, now_ns: int) -> Override | None:
    """The override in force at ``now_ns``, or None (rules: module docstring). Never creates the file."""
    path = _path(db_or_path)
    if not path.is_file():
        return None
    with db.connect(path) as con:
        if not _has_table(con):
            return None
        r = con.execute("SELECT * FROM safety_overrides WHERE at_ns <= ? ORDER BY at_ns DESC, seq DESC LIMIT 1",
                        (int(now_ns),)).fetchone()
    if r is None:
        return None
    o = _row(r)
    return o if o.active(int(now_ns)) else None


# ------------------------------------------------------------------ CLI: dolphin safety override | clear | list

def _ledger_arg(args) -> Path:
    if args.ledger:
        return Path(args.ledger)
    from dolphin.status import ledger_path
    return ledger_path()


def _cmd_override(args) -> int:
    import sys
    try:
        o = set_override(_ledger_arg(args), args.posture, args.reason, parse_duration(args.ttl), args.who)
    except OverrideError as e:
        print(f"dolphin safety override: {e}", file=sys.stderr)
        return 2
    print(f"override set: {o.describe()}; the runtime applies it at its next check; it expires by itself "
          f"(dolphin safety clear ends it sooner)")
    return 0


def _cmd_clear(args) -> int:
    now = _now_ns()
    path = _ledger_arg(args)
    was = active_override(path, now)
    o = clear_override(path, args.reason, args.who, now_ns=now)
    print(f"override {'ended: ' + was.describe() if was else 'none was in force'}; {o.describe()}")
    return 0


def _cmd_list(args) -> int:
    now = _now_ns()
    path = _ledger_arg(args)
    cur = active_override(path, now)
    print(f"in force: {cur.describe(now) if cur else 'none'}")
    for o in list_overrides(path, args.limit):
        print(f"  #{o.seq} {o.kind:5s} {o.describe(now)}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("safety", help="manual safety override (audited in the ledger, expires by itself)",
                       description="Set, clear or list the operator's manual posture override. "
                                   "EMERGENCY ONLY: the survival stack is the normal authority.")
    ss = p.add_subparsers(dest="safety_cmd", metavar="{override,clear,list}")
    common = {"ledger": dict(default=None, help="ledger SQLite file (default <data home>/ledger/ledger.sqlite)"),
              "who": dict(default=None, help="operator name (default $DOLPHIN_OPERATOR or the login name)")}
    o = ss.add_parser("override", help="force a posture for a limited time")
    o.add_argument("--posture", required=True, type=str.upper, choices=POSTURE_NAMES)
    o.add_argument("--reason", required=True, help="why (stored in the audit)")
    o.add_argument("--ttl", required=True, help="how long: 90s, 15m, 2h, 1d (at most 7 days)")
    c = ss.add_parser("clear", help="end the override in force now")
    c.add_argument("--reason", default="cleared by operator")
    ls = ss.add_parser("list", help="the override in force and the audit trail")
    ls.add_argument("--limit", type=int, default=20)
    for sp in (o, c, ls):
        sp.add_argument("--ledger", **common["ledger"])
    for sp in (o, c):
        sp.add_argument("--who", **common["who"])
    o.set_defaults(func=_cmd_override)
    c.set_defaults(func=_cmd_clear)
    ls.set_defaults(func=_cmd_list)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])

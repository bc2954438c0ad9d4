"""Feature store port: map names and keys (DESIGN.md "Feature store keys"), typed records, operations.

Values are JSON objects that always carry ``timestamp`` (ISO 8601 UTC, the instant the value is as of).
The operations are the plain IMap subset every backend offers (Hazelcast 4.2 / 5.x open source, the
embedded SQLite store): get, put, replace_if_same (compare-and-set), delete, keys; ``update`` (bounded
compare-and-set loop with back-off) on top; entry listeners (``listen`` / ``unlisten``) and topics
(``publish`` / ``subscribe`` / ``unsubscribe``) for scan events; ``close``.

Failure contract: when the backend cannot be reached, reads raise ``StoreUnavailableError`` quickly (the
survival stack's Cat1 sees it) and writes raise it too -- a write is never silently dropped.
"""

import json
import logging
import re
import time
from abc import ABC, abstractmethod
import random
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

log = logging.getLogger("dolphin.store")

# ---- map names and keys, exactly as DESIGN.md names them
FEATURES = "DOLPHIN_FEATURES"
SCAN_LATEST = "scan_latest"
EXF_LATEST = "exf_latest"
ESOF_LATEST = "esof_latest"
ACB_STATE = "acb_state"
VOL_REGIME = "vol_regime"
MC_FOREWARNER_LATEST = "mc_forewarner_latest"
FEATURE_KEYS = (SCAN_LATEST, EXF_LATEST, ESOF_LATEST, ACB_STATE, VOL_REGIME, MC_FOREWARNER_LATEST)
SAFETY = "DOLPHIN_SAFETY"  # posture, Rm, breakdown
SYSTEM_HEALTH = "DOLPHIN_SYSTEM_HEALTH"
STATE_LATEST = "latest"  # key in DOLPHIN_STATE_<STRATEGY> holding capital, peak, drawdown
SCAN_TOPIC = "DOLPHIN_SCAN_EVENTS"  # topic: one message per published scan

_STRATEGY = re.compile(r"^[A-Z][A-Z0-9]*$")
_MAP = re.compile(r"^DOLPHIN_(FEATURES|SAFETY|SYSTEM_HEALTH|STATE_[A-Z][A-Z0-9]*|PNL_[A-Z][A-Z0-9]*)$")
_OB_KEY = re.compile(r"^asset_[A-Z0-9]+_ob$")
_TOPIC = re.compile(r"^DOLPHIN_[A-Z0-9_]+$")


class StoreKeyError(ValueError):
    pass


class MalformedRecordError(ValueError):
    """A stored value is not a valid record (not JSON, not an object, no/invalid ``timestamp``). Raised by
    ``Record.from_json``; on the read path the port turns it into "missing" (``FeatureStore.parse_stored``)."""


class StoreUnavailableError(ConnectionError):
    """The feature store cannot be reached (Hazelcast members down / client disconnected, SQLite file gone
    or unreadable). Raised quickly by reads and by writes (writes are never silently dropped)."""


def check_topic(topic: str) -> None:
    if not isinstance(topic, str) or not _TOPIC.match(topic):
        raise StoreKeyError(f"topic name {topic!r}: expected DOLPHIN_<NAME> (e.g. {SCAN_TOPIC})")


def _strategy(s: str) -> str:
    s = str(s).upper()
    if not _STRATEGY.match(s):
        raise StoreKeyError(f"strategy name {s!r}: expected letters/digits, e.g. BLUE")
    return s


def state_map(strategy: str) -> str:
    """``DOLPHIN_STATE_<STRATEGY>``: key ``latest`` -> capital, peak, drawdown."""
    return f"DOLPHIN_STATE_{_strategy(strategy)}"


def pnl_map(strategy: str) -> str:
    """``DOLPHIN_PNL_<STRATEGY>``: key ``YYYY-MM-DD`` -> that day's results."""
    return f"DOLPHIN_PNL_{_strategy(strategy)}"


def asset_ob_key(symbol: str) -> str:
    return f"asset_{str(symbol).upper()}_ob"


def check_key(map_name: str, key: str | None = None) -> None:
    """Refuse map names / DOLPHIN_FEATURES keys that DESIGN.md does not define (typos would silently
    publish where no reader looks)."""
    if not _MAP.match(str(map_name)):
        raise StoreKeyError(f"unknown feature-store map {map_name!r} (DESIGN.md: DOLPHIN_FEATURES, "
                            f"DOLPHIN_STATE_<STRATEGY>, DOLPHIN_PNL_<STRATEGY>, DOLPHIN_SAFETY, DOLPHIN_SYSTEM_HEALTH)")
    if key is None:
        return
    if not isinstance(key, str) or not key:
        raise StoreKeyError(f"{map_name}: key must be a non-empty string, got {key!r}")
    if map_name == FEATURES and key not in FEATURE_KEYS and not _OB_KEY.match(key):
        raise StoreKeyError(f"unknown {FEATURES} key {key!r} (expected one of {', '.join(FEATURE_KEYS)} "
                            f"or asset_<SYMBOL>_ob)")


def iso_utc(t=None) -> str:
    """ISO 8601 UTC with milliseconds and 'Z' from epoch ms (int), a datetime, or now (None)."""
    if t is None:
        dt = datetime.now(timezone.utc)
    elif isinstance(t, datetime):
        dt = t.astimezone(timezone.utc) if t.tzinfo else t.replace(tzinfo=timezone.utc)
    else:
        dt = datetime.fromtimestamp(int(t) / 1000, tz=timezone.utc)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Record:
    """A JSON object plus the instant it is as of. Stored as one JSON text with a ``timestamp`` field."""

    value: dict = field(default_factory=dict)
    timestamp: str = field(default_factory=iso_utc)

    def __post_init__(self):
        if "timestamp" in self.value:
            raise ValueError("Record.value must not contain 'timestamp' (it is the record's own field)")
        datetime.fromisoformat(self.timestamp.replace("Z", "+00:00"))  # validates

    @property
    def timestamp_ms(self) -> int:
        return int(datetime.fromisoformat(self.timestamp.replace("Z", "+00:00")).timestamp() * 1000)

    def to_json(self) -> str:
        # canonical text: compare-and-set compares stored text, so equal records must serialise equally
        return json.dumps({**self.value, "timestamp": self.timestamp}, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "Record":
        try:
            d = json.loads(text)
            if not isinstance(d, dict) or not isinstance(d.get("timestamp"), str):
                raise ValueError("not a JSON object with a string 'timestamp'")
            ts = d.pop("timestamp")
            return cls(d, ts)
        except (ValueError, TypeError) as e:
            raise MalformedRecordError(f"feature-store value is not a valid record ({e}): {str(text)[:120]!r}") \
                from None


ADDED, UPDATED, REMOVED = "added", "updated", "removed"


@dataclass(frozen=True)
class EntryEvent:
    """One change of one entry, delivered to ``listen`` callbacks in order per key. ``record`` is the new
    value (added / updated) or the removed value (removed; ``None`` if the backend does not know it)."""

    map_name: str
    key: str
    type: str  # ADDED | UPDATED | REMOVED
    record: "Record | None"


class FeatureStore(ABC):
    """The port. Implementations: ``dolphin.adapters.sqlite_store.EmbeddedStore`` (SQLite, cross-process) and
    ``dolphin.adapters.hazelcast_store.HazelcastStore``.

    Malformed values (another writer's bug, a hand edit): every adapter parses stored text with
    ``parse_stored``, which reports the map/key once per distinct bad value (log warning + ``malformed()``)
    and treats it as missing. ``update`` / ``publish_if_newer`` replace a malformed value by compare-and-set
    on its raw text (``replace_text_if_same``), so a bad record never blocks its writers either."""

    def parse_stored(self, map_name: str, key: str, text: "str | None") -> "Record | None":
        """Stored text -> ``Record``; ``None`` for absent AND for malformed (reported by map/key)."""
        k = (map_name, key)
        bad = self.__dict__.setdefault("_malformed", {})
        if text is None:
            bad.pop(k, None)
            return None
        try:
            rec = Record.from_json(text)
        except MalformedRecordError as e:
            if bad.get(k, (None,))[0] != text:
                log.warning("feature store: malformed record at %s/%s treated as missing: %s", map_name, key, e)
            bad[k] = (text, str(e), time.time())
            return None
        bad.pop(k, None)
        return rec

    @staticmethod
    def parse_event(map_name: str, key: str, text: "str | None") -> "Record | None":
        """An entry event's value: ``None`` when absent or malformed (reported), never an exception on the
        listener thread."""
        if text is None:
            return None
        try:
            return Record.from_json(text)
        except MalformedRecordError as e:
            log.warning("feature store: malformed record in a change event for %s/%s: %s", map_name, key, e)
            return None

    def malformed(self) -> dict:
        """``{(map, key): (error text, unix time last seen)}`` for values last read as malformed."""
        return {k: (v[1], v[2]) for k, v in self.__dict__.get("_malformed", {}).items()}

    def _malformed_text(self, map_name: str, key: str) -> "str | None":
        v = self.__dict__.get("_malformed", {}).get((map_name, key))
        return v[0] if v else None

    def replace_text_if_same(self, map_name: str, key: str, expected_text: str, new: Record) -> bool:
        """Compare-and-set against the raw stored text (used to replace a malformed value)."""
        raise NotImplementedError(f"{type(self).__name__} cannot compare-and-set raw text")

    def _cas(self, map_name: str, key: str, cur: "Record | None", new: Record) -> bool:
        if cur is None:
            bad = self._malformed_text(map_name, key)
            if bad is not None:
                ok = self.replace_text_if_same(map_name, key, bad, new)
                if ok:
                    self.__dict__.get("_malformed", {}).pop((map_name, key), None)
                    log.warning("feature store: malformed record at %s/%s replaced", map_name, key)
                return ok
        return self.replace_if_same(map_name, key, cur, new)

    @abstractmethod
    def get(self, map_name: str, key: str) -> Record | None: ...

    @abstractmethod
    def put(self, map_name: str, key: str, record: Record) -> None: ...

    @abstractmethod
    def replace_if_same(self, map_name: str, key: str, expected: Record | None, new: Record) -> bool:
        """Atomically store ``new`` if the current value equals ``expected`` (``None``: only if the key is
        absent -- Hazelcast's put_if_absent). Returns whether it was stored."""

    @abstractmethod
    def delete(self, map_name: str, key: str) -> bool: ...

    @abstractmethod
    def keys(self, map_name: str) -> list: ...

    def update(self, map_name: str, key: str, fn: Callable[["Record | None"], "Record | None"],
               attempts: int = 50) -> "Record | None":
        """Read-modify-write without lost updates: ``fn(current) -> new`` (``None``: leave as is), stored with
        ``replace_if_same`` (``put_if_absent`` when the key is absent), retried with bounded jittered
        back-off. Returns the stored record (or the current one when ``fn`` returned ``None``); raises
        ``TimeoutError`` after ``attempts`` lost races. ``fn`` may run several times: keep it pure."""
        for i in range(attempts):
            cur = self.get(map_name, key)
            new = fn(cur)
            if new is None:
                return cur
            if self._cas(map_name, key, cur, new):
                return new
            time.sleep(random.uniform(0, min(0.001 * 2 ** i, 0.05)))
        raise TimeoutError(f"{map_name}/{key}: compare-and-set lost {attempts} times in a row")

    # ---- change events and topics (default: not supported by this adapter)
    def listen(self, map_name: str, callback: Callable[[EntryEvent], None]):
        """Call ``callback(EntryEvent)`` for every later change in ``map_name`` (from any process / client),
        in order per key, on a background thread. Returns a handle for ``unlisten``."""
        raise NotImplementedError(f"{type(self).__name__} has no entry listeners")

    def unlisten(self, handle) -> None:
        raise NotImplementedError(f"{type(self).__name__} has no entry listeners")

    def publish(self, topic: str, payload: dict) -> None:
        """Publish a JSON object on ``topic`` (e.g. ``SCAN_TOPIC``) to every current subscriber."""
        raise NotImplementedError(f"{type(self).__name__} has no topics")

    def subscribe(self, topic: str, callback: Callable[[dict], None]):
        """Call ``callback(payload)`` for every later message on ``topic``, in publish order, on a background
        thread. Returns a handle for ``unsubscribe``."""
        raise NotImplementedError(f"{type(self).__name__} has no topics")

    def unsubscribe(self, handle) -> None:
        raise NotImplementedError(f"{type(self).__name__} has no topics")

    def add_reconnect_listener(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` after the adapter has re-established its connection (a new client after an outage,
        listeners and subscriptions re-registered): changes made meanwhile produced no events, so caches
        built on events must drop what they hold. Adapters that never reconnect (embedded) never call it."""
        self.__dict__.setdefault("_reconnect_listeners", []).append(fn)

    def _fire_reconnected(self) -> None:
        for fn in list(self.__dict__.get("_reconnect_listeners", [])):
            try:
                fn()
            except Exception:
                log.exception("feature store reconnect listener failed")

    def close(self) -> None:
        """Stop listeners / subscriptions and release connections. Idempotent."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def publish_if_newer(store: FeatureStore, map_name: str, key: str, record: Record, *, newer=None,
                     attempts: int = 50) -> bool:
    """Store ``record`` unless the current value is at least as new (default: by timestamp), with
    compare-and-set so concurrent publishers never overwrite a newer value (no read-modify-write race).
    Returns whether ``record`` was stored."""
    newer = newer or (lambda new, old: new.timestamp_ms > old.timestamp_ms)
    for i in range(attempts):
        cur = store.get(map_name, key)
        if cur is not None and not newer(record, cur):
            return False
        if store._cas(map_name, key, cur, record):
            return True
        time.sleep(min(0.001 * 2 ** i, 0.05))
    raise TimeoutError(f"{map_name}/{key}: compare-and-set lost {attempts} times in a row")

"""Near cache of PARSED records over any feature-store adapter (the runtime's hot-path reads).

Hazelcast's own near cache keeps the JSON text, so every read still pays the JSON parse (~50 µs for a 50-asset
scan); this keeps the parsed ``Record`` and answers from memory. Open it with
``dolphin.adapters.store_factory.open_cached_store`` / ``open_cached_store_from_env``: they give it an UNCACHED
inner adapter (Hazelcast near cache off), so no second cache sits underneath whose invalidation can lag the entry
events (members batch near-cache invalidations, 10 s by default; the entry event arrives first).

What is cached: ``DOLPHIN_FEATURES`` only, by default. Safety-critical maps (DOLPHIN_SAFETY and its kill
switch, the runtime's own DOLPHIN_STATE_*) are read from the backend on every call; pass ``maps=`` only for
maps whose readers accept ``staleness_bound_s``.

Rules, per key (they hold for ANY order of entry events and inner-cache invalidations):

- Entry events win. Every change (any client, any process) arrives as an entry event carrying the new record,
  in order per key. The event's record becomes the cached value at once (removed: absent). A malformed new
  value only drops the entry, so the next read goes to the backend, which reports it by map/key.
- A read never overrides a later event. A backend read during which an event arrived returns the event's
  value. A read that returns something other than the last event's value (no newer event) is overruled by
  the event until ``inner_staleness_s`` after the event: the inner store may legitimately still serve the
  pre-event value that long (its own cache's stated bound, ``inner.staleness_bound_s``; 0 when uncached).
  After that the read wins (the write it shows had its event lost).
- Own writes (put, replace_if_same, delete, update, the compare-and-set of ``publish_if_newer``) go to the
  inner store and drop the entry; a write whose result is known is remembered like an event.
- After a reconnect (``inner.add_reconnect_listener``) everything is dropped: changes made during the outage
  produced no events.
- Outages stay visible: an entry is served for at most ``max_age_s`` (default 1 s) after it was read or
  confirmed by an event; then the read goes to the backend, which raises ``StoreUnavailableError`` when down.

Staleness bound (``staleness_bound_s = max_age_s + inner_staleness_s``): another client's write is returned,
or superseded, at most that long after it (or after the key's previous event, if that arrived later) even if
its event is lost. While events flow, the write is visible as soon as its event arrives (Hazelcast: one push
from the member; embedded: ``poll_interval``), and no read after that returns an older value.

Returned records are shared between readers: treat them as read-only (``Record`` is frozen; do not mutate its
``value`` dict).
"""

import logging
import threading
import time

from dolphin.store.port import FEATURES, REMOVED, FeatureStore, Record

log = logging.getLogger("dolphin.adapters.near_cache")
_ABSENT = object()


def _out(v):
    return None if v is _ABSENT else v


def _same(a, b) -> bool:
    return a is b or (a is not _ABSENT and b is not _ABSENT and a == b)


class NearCachedStore(FeatureStore):
    def __init__(self, inner: FeatureStore, maps=(FEATURES,), *, max_age_s: float = 1.0,
                 inner_staleness_s: float | None = None):
        self.inner = inner
        self.maps = frozenset(maps)
        self.max_age_s = float(max_age_s)
        if inner_staleness_s is None:  # an uncached adapter (embedded, Hazelcast without near cache): 0
            inner_staleness_s = getattr(inner, "staleness_bound_s", 0.0) or 0.0
        self.inner_staleness_s = float(inner_staleness_s)
        self.staleness_bound_s = self.max_age_s + self.inner_staleness_s
        self._cache: dict = {}  # (map, key) -> (Record | _ABSENT, monotonic time cached)
        self._last: dict = {}  # (map, key) -> (Record | _ABSENT, monotonic time): last event / known own write
        self._seq: dict = {}  # (map, key) -> changes seen (events, own writes): a read spanning one is superseded
        self._epoch = 0  # clear() count: a read spanning a clear caches nothing
        self._lock = threading.Lock()
        self.hits = self.misses = 0
        inner.add_reconnect_listener(self.clear)
        self._handles = [(m, inner.listen(m, self._on_event)) for m in sorted(self.maps)]

    def __repr__(self):
        return (f"NearCachedStore({self.inner!r}, maps={sorted(self.maps)}, max_age_s={self.max_age_s}, "
                f"staleness_bound_s={self.staleness_bound_s})")

    # ------------------------------------------------------------------ what we learn about a key
    def _on_event(self, ev) -> None:
        if ev.type == REMOVED:  # ev.record is the REMOVED value, not the new one
            self._learn(ev.map_name, ev.key, _ABSENT, pin=True)
        elif ev.record is None:  # malformed new value: reads as missing; let the backend read report it
            self._learn(ev.map_name, ev.key, _ABSENT, pin=False)
        else:
            self._learn(ev.map_name, ev.key, ev.record, pin=True)

    def _learn(self, map_name, key, value, *, pin: bool) -> None:
        k = (map_name, key)
        now = time.monotonic()
        with self._lock:
            self._seq[k] = self._seq.get(k, 0) + 1
            self._last[k] = (value, now)
            if pin:
                self._cache[k] = (value, now)
            else:
                self._cache.pop(k, None)

    def _invalidate(self, map_name: str, key: str) -> None:
        """Drop the entry; reads in flight cache nothing. What the last event said still holds."""
        k = (map_name, key)
        with self._lock:
            self._seq[k] = self._seq.get(k, 0) + 1
            self._cache.pop(k, None)

    def clear(self) -> None:
        with self._lock:
            self._epoch += 1
            self._cache.clear()
            self._last.clear()

    # ------------------------------------------------------------------ reads
    def get(self, map_name: str, key: str) -> Record | None:
        if map_name not in self.maps:
            return self.inner.get(map_name, key)
        k = (map_name, key)
        hit = self._cache.get(k)
        if hit is not None and time.monotonic() - hit[1] <= self.max_age_s:
            self.hits += 1
            return _out(hit[0])
        self.misses += 1
        with self._lock:
            before = (self._epoch, self._seq.get(k, 0))
        rec = self.inner.get(map_name, key)  # StoreUnavailableError propagates: outages are never cached
        got = _ABSENT if rec is None else rec
        with self._lock:
            now = time.monotonic()
            last = self._last.get(k)
            if (self._epoch, self._seq.get(k, 0)) != before:
                # an event arrived while the read was in flight: it is at least as new as what we read
                return rec if last is None else _out(last[0])
            if last is not None and not _same(last[0], got) and now - last[1] < self.inner_staleness_s:
                got = last[0]  # the inner cache may still hold the pre-event value: the event wins
            self._cache[k] = (got, now)
        return _out(got)

    def keys(self, map_name: str) -> list:
        return self.inner.keys(map_name)

    def malformed(self) -> dict:
        return self.inner.malformed()  # the inner store parses the stored text, so it knows what was bad

    # ------------------------------------------------------------------ writes go to the inner store
    def _write(self, map_name, key, fn, known):
        """Run the inner write ``fn()``; ``known(result)`` -> the key's value now, or ``None`` if unknown."""
        if map_name not in self.maps:
            return fn()
        try:
            result = fn()
        except BaseException:
            self._invalidate(map_name, key)
            raise
        value = known(result)
        if value is None:
            self._invalidate(map_name, key)
        else:
            self._learn(map_name, key, value, pin=False)  # not pinned: the next read confirms it
        return result

    def put(self, map_name: str, key: str, record: Record) -> None:
        self._write(map_name, key, lambda: self.inner.put(map_name, key, record), lambda _: record)

    def replace_if_same(self, map_name: str, key: str, expected, new: Record) -> bool:
        return self._write(map_name, key, lambda: self.inner.replace_if_same(map_name, key, expected, new),
                           lambda ok: new if ok else None)

    def replace_text_if_same(self, map_name: str, key: str, expected_text: str, new: Record) -> bool:
        return self._write(map_name, key,
                           lambda: self.inner.replace_text_if_same(map_name, key, expected_text, new),
                           lambda ok: new if ok else None)

    def _cas(self, map_name: str, key: str, cur, new: Record) -> bool:
        # the inner store's compare-and-set: it knows the raw text of a malformed value (publish_if_newer)
        return self._write(map_name, key, lambda: self.inner._cas(map_name, key, cur, new),
                           lambda ok: new if ok else None)

    def delete(self, map_name: str, key: str) -> bool:
        return self._write(map_name, key, lambda: self.inner.delete(map_name, key), lambda _: _ABSENT)

    def update(self, map_name, key, fn, attempts: int = 50):
        # compare-and-set must read the backend's current value, not a cached one: the inner store does it
        last = []

        def f(cur):
            new = fn(cur)
            last.append(new)
            return new

        # stored iff fn's last call proposed a record (update returns only after its compare-and-set won)
        return self._write(map_name, key, lambda: self.inner.update(map_name, key, f, attempts),
                           lambda res: res if last and last[-1] is not None else None)

    # ------------------------------------------------------------------ events, topics, lifecycle
    def listen(self, map_name, callback):
        return self.inner.listen(map_name, callback)

    def unlisten(self, handle) -> None:
        self.inner.unlisten(handle)

    def publish(self, topic, payload) -> None:
        self.inner.publish(topic, payload)

    def subscribe(self, topic, callback):
        return self.inner.subscribe(topic, callback)

    def unsubscribe(self, handle) -> None:
        self.inner.unsubscribe(handle)

    def add_reconnect_listener(self, fn) -> None:
        self.inner.add_reconnect_listener(fn)

    def close(self) -> None:
        for _, h in self._handles:
            try:
                self.inner.unlisten(h)
            except Exception:  # closing: the backend may already be gone
                log.debug("unlisten failed on close", exc_info=True)
        self._handles = []
        self.clear()
        self.inner.close()

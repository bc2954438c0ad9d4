"""Near cache of PARSED records over any feature-store adapter (the runtime's hot-path reads).

Hazelcast's own near cache keeps the JSON text, so every read still pays the JSON parse (~50 µs for a
50-asset scan); this keeps the parsed ``Record`` and answers from memory. Rules:

- Invalidation on change: an entry listener on each cached map (``FeatureStore.listen``: Hazelcast entry
  listeners; the embedded store's change log, polled every ``poll_interval``) drops the key when any client
  or process writes it; this client's own writes drop it at once. A read racing an invalidation never
  re-caches the older value (per-key generation counter).
- Outages stay visible: an entry is served for at most ``max_age_s`` (default 1 s); after that the read
  goes to the backend, which raises ``StoreUnavailableError`` when it is down -- so the survival stack's
  Cat1 sees an outage within ``max_age_s`` even while nothing changes.
- Returned records are shared between readers: treat them as read-only (``Record`` is frozen; do not
  mutate its ``value`` dict).
"""

import logging
import threading
import time

from dolphin.store.port import FEATURES, SAFETY, FeatureStore, Record

log = logging.getLogger("dolphin.store.nearcache")
_ABSENT = object()


class NearCachedStore(FeatureStore):
    def __init__(self, inner: FeatureStore, maps=(FEATURES, SAFETY), *, max_age_s: float = 1.0):
        self.inner = inner
        self.maps = frozenset(maps)
        self.max_age_s = float(max_age_s)
        self._cache: dict = {}  # (map, key) -> (record | _ABSENT, monotonic time cached)
        self._gen: dict = {}  # (map, key) -> invalidation count
        self._lock = threading.Lock()
        self.hits = self.misses = 0
        self._handles = [(m, inner.listen(m, self._on_event)) for m in sorted(self.maps)]

    def __repr__(self):
        return f"NearCachedStore({self.inner!r}, maps={sorted(self.maps)}, max_age_s={self.max_age_s})"

    def _on_event(self, ev) -> None:
        self._invalidate(ev.map_name, ev.key)

    def _invalidate(self, map_name: str, key: str) -> None:
        k = (map_name, key)
        with self._lock:
            self._gen[k] = self._gen.get(k, 0) + 1
            self._cache.pop(k, None)

    def clear(self) -> None:
        with self._lock:
            for k in list(self._cache):
                self._gen[k] = self._gen.get(k, 0) + 1
            self._cache.clear()

    # ------------------------------------------------------------------ reads
    def get(self, map_name: str, key: str) -> Record | None:
        if map_name not in self.maps:
            return self.inner.get(map_name, key)
        k = (map_name, key)
        hit = self._cache.get(k)
        if hit is not None and time.monotonic() - hit[1] <= self.max_age_s:
            self.hits += 1
            return None if hit[0] is _ABSENT else hit[0]
        self.misses += 1
        gen = self._gen.get(k, 0)
        rec = self.inner.get(map_name, key)  # StoreUnavailableError propagates: outages are never cached
        with self._lock:
            if self._gen.get(k, 0) == gen:
                self._cache[k] = (_ABSENT if rec is None else rec, time.monotonic())
        return rec

    def keys(self, map_name: str) -> list:
        return self.inner.keys(map_name)

    # ------------------------------------------------------------------ writes (write-through, then drop the key)
    def put(self, map_name: str, key: str, record: Record) -> None:
        try:
            self.inner.put(map_name, key, record)
        finally:
            self._invalidate(map_name, key)

    def replace_if_same(self, map_name: str, key: str, expected, new: Record) -> bool:
        try:
            return self.inner.replace_if_same(map_name, key, expected, new)
        finally:
            self._invalidate(map_name, key)

    def delete(self, map_name: str, key: str) -> bool:
        try:
            return self.inner.delete(map_name, key)
        finally:
            self._invalidate(map_name, key)

    def update(self, map_name, key, fn, attempts: int = 50):
        # compare-and-set must read the backend's current value, not a cached one
        try:
            return self.inner.update(map_name, key, fn, attempts)
        finally:
            self._invalidate(map_name, key)

    # ------------------------------------------------------------------ events, topics
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

    def close(self) -> None:
        for _, h in self._handles:
            try:
                self.inner.unlisten(h)
            except Exception:  # closing: the backend may already be gone
                log.debug("unlisten failed on close", exc_info=True)
        self._handles = []
        self.clear()
        self.inner.close()

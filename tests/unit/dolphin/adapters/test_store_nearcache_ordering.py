"""Parsed-record near cache over an inner store that has its OWN stale layer (Hazelcast's near cache, whose
invalidation members batch and deliver after the entry event): no order of entry event, inner invalidation
and reads may make the parsed cache return the old value after the event, and without events a write is
visible within ``staleness_bound_s``. Driven deterministically: a fake inner store and a fake clock."""

import itertools

import pytest

from dolphin.adapters import near_cache as nc
from dolphin.adapters.store_factory import open_cached_store, open_cached_store_from_env
from dolphin.store import (FEATURES, REMOVED, SAFETY, SCAN_LATEST, UPDATED, EntryEvent, FeatureStore, Record,
                           state_map)
from dolphin.adapters.sqlite_store import EmbeddedStore

MAX_AGE, INNER_BOUND, STEP = 1.0, 2.0, 0.05
K = (FEATURES, SCAN_LATEST)
A, B = Record({"v": "A"}), Record({"v": "B"})


class Clock:
    def __init__(self):
        self.t = 1000.0

    def monotonic(self):
        return self.t


class StaleInner(FeatureStore):
    """``truth`` (the members) seen through ``near`` (this client's text cache). Another client's write
    changes ``truth`` only; ``invalidate`` is the member's (late) invalidation and ``event`` the entry event,
    delivered separately in any order. Own writes invalidate ``near`` at once, as Hazelcast's client does.
    The fake keeps its declared bound: tests invalidate within ``INNER_BOUND`` of a write."""

    staleness_bound_s = INNER_BOUND

    def __init__(self):
        self.truth, self.near, self.callbacks, self.gets = {}, {}, [], 0
        self.during_get = None  # runs inside the next get, after it read its (possibly stale) text

    def get(self, m, k):
        self.gets += 1
        if (m, k) not in self.near:
            self.near[(m, k)] = self.truth.get((m, k))
        text = self.near[(m, k)]
        hook, self.during_get = self.during_get, None
        if hook:
            hook()
        return self.parse_stored(m, k, text)

    def other_client_writes(self, rec):  # None: deletes
        old = self.truth.pop(K, None)
        if rec is not None:
            self.truth[K] = rec.to_json()
        return old

    def invalidate(self):
        self.near.pop(K, None)

    def event(self, kind, rec):
        for cb in self.callbacks:
            cb(EntryEvent(*K, kind, rec))

    def _own(self, m, k, rec):
        self.near.pop((m, k), None)
        if rec is None:
            return self.truth.pop((m, k), None) is not None
        self.truth[(m, k)] = rec.to_json()

    def put(self, m, k, record):
        self._own(m, k, record)

    def replace_if_same(self, m, k, expected, new):
        if self.truth.get((m, k)) != (None if expected is None else expected.to_json()):
            return False
        self._own(m, k, new)
        return True

    def replace_text_if_same(self, m, k, expected_text, new):
        if self.truth.get((m, k)) != expected_text:
            return False
        self._own(m, k, new)
        return True

    def delete(self, m, k):
        return self._own(m, k, None)

    def keys(self, m):
        return sorted(k for mm, k in self.truth if mm == m)

    def listen(self, m, cb):
        self.callbacks.append(cb)
        return cb

    def unlisten(self, h):
        self.callbacks.remove(h)


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(nc, "time", c)
    return c


@pytest.fixture
def world(clock):
    """A cache holding A, confirmed by A's entry event; the inner near cache holds A's text too."""
    inner = StaleInner()
    inner.other_client_writes(A)
    c = nc.NearCachedStore(inner, max_age_s=MAX_AGE)
    inner.event(UPDATED, A)
    assert c.get(*K) == A and inner.get(*K) == A  # the latter fills the inner near cache
    return inner, c, clock


def _reads_until(c, clock, until, expect, invalidate_at=None, inner=None):
    """Read every STEP until ``until`` (clock time); each read must be ``expect``. The inner near cache is
    invalidated at ``invalidate_at`` (its declared bound allows it that late)."""
    while clock.t < until:
        clock.t += STEP
        if invalidate_at is not None and clock.t >= invalidate_at:
            inner.invalidate()
            invalidate_at = None
        assert c.get(*K) == expect, f"{clock.t - 1000:.2f}s: old value returned after the event"


@pytest.mark.parametrize("new", [B, None], ids=["updated", "deleted"])
@pytest.mark.parametrize("order", list(itertools.permutations(["event", "invalidate", "expire"])),
                         ids=lambda o: "-".join(o))
def test_no_order_of_event_and_inner_invalidation_returns_the_old_value_after_the_event(world, order, new):
    inner, c, clock = world
    clock.t += 0.1
    removed = inner.other_client_writes(new)
    t_write, seen_event = clock.t, False
    for step in order:
        clock.t += STEP
        if step == "event":
            # removed: the event carries the REMOVED value, which must not be taken for the new one
            inner.event(*((REMOVED, Record.from_json(removed)) if new is None else (UPDATED, new)))
            seen_event = True
        elif step == "invalidate":
            inner.invalidate()
        else:  # the parsed entry's max age passes: the next read goes to the inner store
            clock.t += MAX_AGE
        got = c.get(*K)
        assert got == new if seen_event else got in (A, new), (step, got)
    # the inner store must be fresh INNER_BOUND after the write: its worst case, if not invalidated yet
    _reads_until(c, clock, t_write + c.staleness_bound_s + 2 * MAX_AGE, new, t_write + INNER_BOUND - STEP, inner)


def test_a_read_racing_an_event_keeps_the_events_value(world):
    inner, c, clock = world
    clock.t += MAX_AGE + STEP  # the next read goes to the inner store, which still holds A
    inner.other_client_writes(B)
    inner.during_get = lambda: inner.event(UPDATED, B)  # the event arrives while the read is in flight
    assert c.get(*K) == B
    _reads_until(c, clock, clock.t + INNER_BOUND + 2 * MAX_AGE, B, clock.t + INNER_BOUND - STEP, inner)


def test_without_events_a_write_is_visible_within_the_stated_bound(world):
    inner, c, clock = world
    assert c.staleness_bound_s == MAX_AGE + INNER_BOUND
    clock.t += 0.3
    inner.other_client_writes(B)  # its event is lost; the inner cache is invalidated as late as it may be
    t_write, inval = clock.t, clock.t + INNER_BOUND - STEP
    while c.get(*K) != B:
        assert c.get(*K) == A
        clock.t += STEP
        if clock.t >= inval:
            inner.invalidate()
        assert clock.t <= t_write + c.staleness_bound_s, "stale beyond staleness_bound_s"
    _reads_until(c, clock, clock.t + 3 * MAX_AGE, B)


def test_a_reconnect_drops_what_events_may_have_missed(world):
    inner, c, clock = world
    inner.other_client_writes(B)  # during an outage: no event
    inner.invalidate()  # the client's own near cache is rebuilt on reconnect as well
    inner._fire_reconnected()
    assert c.get(*K) == B


def test_own_writes_go_to_the_inner_store_and_are_read_back(world):
    inner, c, clock = world
    c.put(*K, B)
    assert inner.truth[K] == B.to_json() and c.get(*K) == B
    got = c.update(*K, lambda cur: Record({"v": cur.value["v"] + "+"}))
    assert got.value == {"v": "B+"} and inner.truth[K] == got.to_json() and c.get(*K) == got
    assert c.delete(*K) and c.get(*K) is None and K not in inner.truth


def test_a_malformed_value_is_reported_by_the_inner_store_and_replaced_through_it(world):
    inner, c, clock = world
    inner.truth[K] = "{not json"
    inner.invalidate()
    inner.event(UPDATED, None)  # the adapter's parse_event: a malformed new value arrives as record None
    assert c.get(*K) is None
    assert set(c.malformed()) == {K}
    assert c.update(*K, lambda cur: Record({"v": "C"}) if cur is None else None).value == {"v": "C"}
    assert c.get(*K).value == {"v": "C"} and c.malformed() == {}


def test_only_features_are_cached_by_default_and_safety_reads_hit_the_backend(clock):
    inner = StaleInner()
    c = nc.NearCachedStore(inner)
    assert c.maps == {FEATURES}
    for m, k in ((SAFETY, "latest"), (state_map("BLUE"), "latest")):
        n = inner.gets
        c.get(m, k)
        c.get(m, k)
        assert inner.gets == n + 2, m


def test_the_factory_gives_the_parsed_cache_an_uncached_adapter(tmp_path, monkeypatch):
    c = open_cached_store("embedded", path=tmp_path / "f.sqlite", max_age_s=2.0)
    assert isinstance(c.inner, EmbeddedStore) and c.maps == {FEATURES} and c.staleness_bound_s == 2.0
    c.close()
    import dolphin.adapters.hazelcast_store as hz

    opened = {}

    class FakeHazelcast(StaleInner):
        staleness_bound_s = 0.0  # near cache off

        def __init__(self, members, cluster, **kw):
            super().__init__()
            opened.update(kw, members=members, cluster=cluster)

    monkeypatch.setattr(hz, "HazelcastStore", FakeHazelcast)
    c = open_cached_store_from_env({"DOLPHIN_FEATURE_STORE": "hazelcast", "DOLPHIN_HZ_MEMBERS": "10.0.0.7:5701"},
                                   max_age_s=0.5, connect_timeout=3)
    assert opened == {"near_cache": False, "connect_timeout": 3, "members": ["10.0.0.7:5701"], "cluster": "dolphin"}
    assert isinstance(c, nc.NearCachedStore) and c.staleness_bound_s == 0.5

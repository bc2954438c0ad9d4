"""HazelcastStore against the client's lifecycle, without a member.

A fake client (``FakeClient``) implements the few calls the adapter makes (IMap get/set/put_if_absent/
replace_if_same/remove/key_set/entry listeners, the reliable topic's ringbuffer, publish, shutdown) and fires
lifecycle states to the listeners the adapter passes in its config, the way hazelcast-python-client 5.7
does: DISCONNECTED on a lost connection, CONNECTED when back, SHUTTING_DOWN + SHUTDOWN when the client gives
up after ``cluster_connect_timeout``. Several fake clients share one ``FakeCluster`` (the member's data), so
one store's writes reach the other's listeners, and a cluster restart loses everything.
"""

import itertools
import logging
import threading
import time

import pytest

pytest.importorskip("hazelcast")

from hazelcast.errors import (ClientOfflineError, HazelcastClientNotActiveError, IllegalArgumentError,  # noqa: E402
                              IllegalStateError)
from hazelcast.proxy.ringbuffer import ReadResult  # noqa: E402
from hazelcast.serialization.objects import ReliableTopicMessage  # noqa: E402

from dolphin.adapters.hazelcast_store import RINGBUFFER_PREFIX, HazelcastStore  # noqa: E402
from dolphin.store.port import (ACB_STATE, FEATURES, SAFETY, SCAN_LATEST, SCAN_TOPIC, UPDATED, Record,  # noqa: E402
                                StoreUnavailableError, state_map)

LOG = "dolphin.adapters.hazelcast_store"


# ------------------------------------------------------------------------------------------ the fake
class FakeCluster:
    """The members' state: maps, ringbuffers, and which clients are listening."""

    def __init__(self):
        self.lock = threading.RLock()
        self.up = True
        self.maps: dict = {}
        self.rbs: dict = {}
        self.clients: list = []
        self.capacity = 10_000
        self.read_faults = 0  # the next N read_many calls raise ClientOfflineError (the client is offline)
        self.reads = 0

    def restart(self):
        """A member restart without persistence: every key and every ringbuffer item is gone."""
        with self.lock:
            self.maps.clear()
            self.rbs.clear()

    def rb(self, name):
        return self.rbs.setdefault(name, FakeRingbuffer(self))

    def write(self, map_name, key, new, old_known=False):
        """Apply a change and send entry events to every connected client listening on the map."""
        with self.lock:
            m = self.maps.setdefault(map_name, {})
            old = m.get(key)
            if new is None:
                m.pop(key, None)
            else:
                m[key] = new
            kind = "removed" if new is None else ("updated" if old is not None else "added")
            targets = [(c, fs) for c in self.clients if c.running and c.online
                       for (mn, fs) in c.entry_listeners.values() if mn == map_name]
        ev = type("Ev", (), {"key": key, "value": new, "old_value": old})()
        for _, fs in targets:
            fs[kind](ev)
        return old


class FakeRingbuffer:
    def __init__(self, cluster):
        self.cluster = cluster
        self.items: list = []
        self.head = 0

    @property
    def tail(self):
        return self.head + len(self.items) - 1

    def add(self, text):
        with self.cluster.lock:
            self.items.append(ReliableTopicMessage(time.time(), None, text))
            while len(self.items) > self.cluster.capacity:
                self.items.pop(0)
                self.head += 1

    def read_many(self, start, min_count, max_count):
        with self.cluster.lock:
            if start > self.tail + 1:  # what a member answers for a sequence from before its restart
                raise IllegalArgumentError(f"sequence:{start} is too large. The current tailSequence is:{self.tail}")
            start = max(start, self.head)  # members clamp a too-old sequence to the head
            chunk = self.items[start - self.head:start - self.head + max_count]
            if not chunk:  # a 4.2.1 member answers an empty read with next sequence 0 (measured), not `start`
                return ReadResult(0, 0, [], [])
            return ReadResult(len(chunk), start + len(chunk), list(range(start, start + len(chunk))), chunk)


class _Blocking:
    def __init__(self, target):
        self._t = target

    def blocking(self):
        return self._t


class FakeMap:
    def __init__(self, client, name):
        self.c, self.name = client, name

    def _m(self):
        self.c.check()
        return self.c.cluster.maps.setdefault(self.name, {})

    def get(self, key):
        return self._m().get(key)

    def set(self, key, value):
        self._m()
        self.c.cluster.write(self.name, key, value)

    def put_if_absent(self, key, value):
        with self.c.cluster.lock:
            cur = self._m().get(key)
            if cur is None:
                self.c.cluster.write(self.name, key, value)
            return cur

    def replace_if_same(self, key, old, new):
        with self.c.cluster.lock:
            if self._m().get(key) != old:
                return False
            self.c.cluster.write(self.name, key, new)
            return True

    def remove(self, key):
        with self.c.cluster.lock:
            if key not in self._m():
                return None
            return self.c.cluster.write(self.name, key, None)

    def key_set(self):
        return list(self._m())

    def add_entry_listener(self, include_value=False, added_func=None, updated_func=None, removed_func=None):
        self.c.check()
        rid = f"reg-{next(self.c.ids)}"
        self.c.entry_listeners[rid] = (self.name, {"added": added_func, "updated": updated_func,
                                                   "removed": removed_func})
        return rid

    def remove_entry_listener(self, rid):
        self.c.check()
        return self.c.entry_listeners.pop(rid, None) is not None


class FakeRingbufferProxy:
    def __init__(self, client, name):
        self.c, self.name = client, name

    def _rb(self):
        self.c.check()
        return self.c.cluster.rb(self.name)

    def tail_sequence(self):
        return self._rb().tail

    def head_sequence(self):
        return self._rb().head

    def read_many(self, start, min_count, max_count):
        assert min_count == 0, "a blocking read (min_count > 0) would hold unsubscribe/close"
        cl = self.c.cluster
        with cl.lock:
            cl.reads += 1
            if cl.read_faults > 0:
                cl.read_faults -= 1
                raise ClientOfflineError()
        return self._rb().read_many(start, min_count, max_count)


class FakeTopic:
    def __init__(self, client, name):
        self.c, self.name = client, name

    def publish(self, text):
        self.c.check()
        self.c.cluster.rb(RINGBUFFER_PREFIX + self.name).add(text)


class FakeClient:
    def __init__(self, cluster, **cfg):
        self.cluster, self.cfg = cluster, cfg
        self.listeners = list(cfg.get("lifecycle_listeners") or [])
        self.entry_listeners: dict = {}
        self.ids = itertools.count()
        self.running, self.online = True, False
        self._fire("STARTING")
        self._fire("STARTED")
        if not cluster.up:
            self.running = False
            self._fire("SHUTTING_DOWN")
            self._fire("SHUTDOWN")
            raise IllegalStateError("Unable to connect to any cluster")
        with cluster.lock:
            cluster.clients.append(self)
        self.online = True
        self._fire("CONNECTED")

    def _fire(self, state):
        for f in self.listeners:
            f(state)

    def check(self):
        if not self.running:
            raise HazelcastClientNotActiveError()
        if not self.online:
            raise ClientOfflineError()

    # what the adapter calls
    def get_map(self, name):
        return _Blocking(FakeMap(self, name))

    def get_ringbuffer(self, name):
        return _Blocking(FakeRingbufferProxy(self, name))

    def get_reliable_topic(self, name):
        return _Blocking(FakeTopic(self, name))

    def shutdown(self):
        if self.running:
            self.running = self.online = False
            self._fire("SHUTTING_DOWN")
            self._fire("SHUTDOWN")

    # what the member / network does (test controls)
    def drop(self):
        self.online = False
        self._fire("DISCONNECTED")

    def restore(self):
        self.online = True
        self._fire("CONNECTED")

    def give_up(self):
        """No cluster for cluster_connect_timeout: the real client shuts itself down (and never returns)."""
        self.online = False
        self._fire("DISCONNECTED")
        self.shutdown()


class Factory:
    """``client_factory``: records each construction (time, config); ``gate`` holds constructions."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.made: list = []
        self.attempts: list = []
        self.gate = None

    def __call__(self, **cfg):
        self.attempts.append(time.monotonic())
        if self.gate is not None:
            self.gate.wait(5)
        c = FakeClient(self.cluster, **cfg)
        self.made.append(c)
        return c


def _wait(pred, timeout=3.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.005)
    return pred()


FAST = dict(connect_timeout=0.2, reconnect_initial_backoff=0.02, reconnect_max_backoff=0.08,
            topic_poll_interval=0.005, topic_max_backoff=0.02)


@pytest.fixture
def world():
    cluster = FakeCluster()
    factory = Factory(cluster)
    stores = []

    def open_store(**kw):
        s = HazelcastStore(["10.1.2.3:5701", "10.1.2.4:5701"], "dolphin-test", client_factory=factory,
                           **{**FAST, **kw})
        stores.append(s)
        return s

    yield cluster, factory, open_store
    for s in stores:
        s.close()


# ------------------------------------------------------------------------------------------ staleness
def test_near_cache_ttl_bounds_staleness_on_features_only(world, monkeypatch):
    import hazelcast.config

    _, factory, open_store = world
    s = open_store()
    cfg = factory.made[-1].cfg
    assert cfg["near_caches"] == {FEATURES: {"invalidate_on_change": True, "time_to_live": 1.0}}
    assert s.staleness_bound_s == 1.0
    hazelcast.config.Config.from_dict(cfg)  # the real client accepts every key (e.g. time_to_live)
    monkeypatch.setenv("DOLPHIN_HZ_NEAR_CACHE_TTL", "0.25")
    s2 = open_store()
    assert factory.made[-1].cfg["near_caches"][FEATURES]["time_to_live"] == 0.25
    assert "max_idle" not in factory.made[-1].cfg["near_caches"][FEATURES]  # 0 would expire at once
    assert s2.staleness_bound_s == 0.25
    s3 = open_store(near_cache=False)
    assert "near_caches" not in factory.made[-1].cfg and s3.staleness_bound_s == 0.0
    s4 = open_store(near_cache_ttl=0)
    assert "near_caches" not in factory.made[-1].cfg and s4.staleness_bound_s == 0.0
    for m in (SAFETY, state_map("BLUE")):
        assert m not in cfg["near_caches"]


# ------------------------------------------------------------------------------------------ lifecycle
def test_disconnected_calls_fail_fast_then_work_after_reconnect(world):
    _, factory, open_store = world
    s = open_store()
    fired = []
    s.add_reconnect_listener(lambda: fired.append(1))
    s.put(FEATURES, SCAN_LATEST, Record({"n": 1}))
    client = factory.made[0]
    client.drop()
    for call in (lambda: s.get(FEATURES, SCAN_LATEST), lambda: s.put(FEATURES, SCAN_LATEST, Record({"n": 2})),
                 lambda: s.keys(FEATURES), lambda: s.publish(SCAN_TOPIC, {"n": 1})):
        t = time.monotonic()
        with pytest.raises(StoreUnavailableError, match="10.1.2.3:5701"):
            call()
        assert time.monotonic() - t < 0.5  # at once: no invocation timeout, no connect wait
    assert fired == []
    client.restore()
    assert s.get(FEATURES, SCAN_LATEST).value == {"n": 1}
    s.put(FEATURES, SCAN_LATEST, Record({"n": 3}))
    assert s.get(FEATURES, SCAN_LATEST).value == {"n": 3}
    # events were missed while disconnected: caches built on them are told to drop what they hold
    assert _wait(lambda: fired == [1])
    assert len(factory.made) == 1  # the same client came back: no new one


def test_client_shutdown_makes_new_client_and_reregisters_everything(world, caplog):
    caplog.set_level(logging.INFO, logger=LOG)
    _, factory, open_store = world
    s = open_store(password="s3cr3t-pw", username="dolphin")
    other = open_store()
    events, msgs, fired = [], [], []
    h = s.listen(FEATURES, lambda ev: events.append((ev.key, ev.type, ev.record and ev.record.value)))
    sub = s.subscribe(SCAN_TOPIC, msgs.append)
    s.add_reconnect_listener(lambda: fired.append(len(factory.made)))
    other.put(FEATURES, ACB_STATE, Record({"v": 1}))
    other.publish(SCAN_TOPIC, {"n": 1})
    assert _wait(lambda: events == [(ACB_STATE, "added", {"v": 1})] and msgs == [{"n": 1}])

    factory.made[0].give_up()  # no cluster for cluster_connect_timeout: the client shut itself down
    assert _wait(lambda: fired == [3])  # a third client (the second one is `other`'s) and the hook fired
    new = factory.made[2]
    assert new.running and not factory.made[0].running
    # the old handles now receive the new client's events
    assert [fs for fs in new.entry_listeners.values() if fs[0] == FEATURES]
    other.put(FEATURES, ACB_STATE, Record({"v": 2}))
    other.publish(SCAN_TOPIC, {"n": 2})
    assert _wait(lambda: events[-1] == (ACB_STATE, UPDATED, {"v": 2}) and msgs == [{"n": 1}, {"n": 2}])
    assert s.get(FEATURES, ACB_STATE).value == {"v": 2}
    log = caplog.text
    assert "shut itself down" in log and "reconnect attempt 1" in log
    assert "dolphin-test" in log and "10.1.2.3:5701" in log
    assert "1 entry listener(s) and 1 topic subscription(s) re-registered" in log
    assert "s3cr3t-pw" not in log
    # handles stay valid for unlisten/unsubscribe on the new client
    s.unlisten(h)
    s.unsubscribe(sub)
    assert not [fs for fs in new.entry_listeners.values() if fs[0] == FEATURES]
    other.put(FEATURES, ACB_STATE, Record({"v": 3}))
    other.publish(SCAN_TOPIC, {"n": 3})
    time.sleep(0.05)
    assert events[-1][2] == {"v": 2} and msgs == [{"n": 1}, {"n": 2}]


def test_unavailable_while_a_new_client_is_made(world):
    cluster, factory, open_store = world
    s = open_store()
    cluster.up = False
    factory.made[0].give_up()
    assert _wait(lambda: len(factory.attempts) >= 2)
    t = time.monotonic()
    with pytest.raises(StoreUnavailableError, match="new client attempt"):
        s.get(FEATURES, SCAN_LATEST)
    assert time.monotonic() - t < 0.5  # at once: no invocation timeout, no connect wait


def test_outage_longer_than_several_backoff_steps(world, caplog):
    caplog.set_level(logging.INFO, logger=LOG)
    cluster, factory, open_store = world
    s = open_store(reconnect_initial_backoff=0.02, reconnect_max_backoff=0.08)
    got = []
    s.listen(FEATURES, lambda ev: got.append(ev.record.value))
    cluster.up = False
    factory.made[0].give_up()
    assert _wait(lambda: len(factory.attempts) >= 1 + 9, timeout=10)  # the first client + 9 failed attempts
    gaps = [b - a for a, b in zip(factory.attempts[1:], factory.attempts[2:])][:8]
    # exponential with jitter, [0.5, 1] x min(cap, initial * 2^k): 0.01+, 0.02+, 0.04+, then capped at 0.08
    for k, gap in enumerate(gaps):
        assert gap >= 0.5 * min(0.08, 0.02 * 2 ** k) - 0.002, gaps
    assert max(gaps[5:]) < 0.08 + 0.4, gaps  # uncapped, these would be >= 0.64 s
    with pytest.raises(StoreUnavailableError):
        s.put(FEATURES, SCAN_LATEST, Record({"x": 1}))
    cluster.up = True
    assert _wait(lambda: len(factory.made) == 2)
    assert _wait(lambda: s._connected.is_set())
    s.put(FEATURES, SCAN_LATEST, Record({"x": 1}))
    assert _wait(lambda: got == [{"x": 1}])
    assert "reconnect attempt 3 failed" in caplog.text and "next attempt in" in caplog.text


def test_close_during_reconnect_stops_it(world):
    cluster, factory, open_store = world
    s = open_store()
    cluster.up = False
    factory.made[0].give_up()
    assert _wait(lambda: len(factory.attempts) >= 3)
    t = time.monotonic()
    s.close()
    assert time.monotonic() - t < 1.0
    n = len(factory.attempts)
    cluster.up = True
    time.sleep(0.2)
    assert len(factory.attempts) == n and len(factory.made) == 1
    assert not [t for t in threading.enumerate() if t.name == "dolphin-hz-reconnect" and t.is_alive()]
    with pytest.raises(StoreUnavailableError, match="closed"):
        s.get(FEATURES, SCAN_LATEST)
    s.close()  # idempotent


def test_close_while_a_new_client_is_being_made(world):
    _, factory, open_store = world
    s = open_store()
    factory.gate = threading.Event()  # the next construction hangs (a connect attempt in progress)
    factory.made[0].give_up()
    assert _wait(lambda: len(factory.attempts) == 2)
    t = time.monotonic()
    s.close()
    assert time.monotonic() - t < 1.5
    factory.gate.set()  # the attempt completes after close(): its client must be shut down, not adopted
    assert _wait(lambda: len(factory.made) == 2 and not factory.made[1].running)
    assert s._session is None


def test_initial_connect_failure_starts_nothing(world):
    cluster, factory, open_store = world
    cluster.up = False
    with pytest.raises(StoreUnavailableError, match="10.1.2.3:5701, 10.1.2.4:5701"):
        open_store()
    time.sleep(0.1)
    assert len(factory.attempts) == 1  # the caller got the error; no background reconnecting


# ------------------------------------------------------------------------------------------ topics
def test_topic_reader_survives_a_long_run_of_offline_errors(world, caplog):
    import sys

    caplog.set_level(logging.INFO, logger=LOG)
    cluster, factory, open_store = world
    s = open_store(topic_poll_interval=0.0005, topic_max_backoff=0.001)
    pub = open_store()
    got = []
    s.subscribe(SCAN_TOPIC, got.append)
    faults = sys.getrecursionlimit() + 100  # the client's own runner recursed once per offline error
    cluster.read_faults = faults
    for i in range(5):
        pub.publish(SCAN_TOPIC, {"i": i})
    assert _wait(lambda: cluster.read_faults == 0, timeout=20)
    for i in range(5, 25):
        pub.publish(SCAN_TOPIC, {"i": i})
    assert _wait(lambda: len(got) == 25)
    assert got == [{"i": i} for i in range(25)]
    assert "read failed (ClientOfflineError" in caplog.text
    assert f"after {faults} failed read(s)" in caplog.text
    assert [t for t in threading.enumerate() if t.name == f"dolphin-hz-topic-{SCAN_TOPIC}"]


@pytest.mark.parametrize("how", ["same client", "new client"])
def test_topic_resumes_after_cluster_restart(world, caplog, how):
    cluster, factory, open_store = world
    s = open_store()
    got = []
    s.subscribe(SCAN_TOPIC, got.append)
    for i in range(3):
        s.publish(SCAN_TOPIC, {"i": i})
    assert _wait(lambda: len(got) == 3)
    client = factory.made[0]
    if how == "same client":
        client.drop()
        cluster.restart()  # the member came back empty: its ringbuffer starts at 0 again
        client.restore()
    else:
        cluster.restart()
        client.give_up()
        assert _wait(lambda: len(factory.made) == 2 and s._connected.is_set())
    for i in range(3, 5):
        _wait(lambda: _try(lambda: s.publish(SCAN_TOPIC, {"i": i})))
    assert _wait(lambda: len(got) == 5), got
    assert got == [{"i": i} for i in range(5)]
    assert "cluster restarted?" in caplog.text


def test_idle_subscriber_never_redelivers(world):
    """Against a real 4.2.1 member an idle reader once took the empty read's "next sequence 0" as its
    position and re-delivered the whole ringbuffer at every poll."""
    _, _, open_store = world
    s = open_store()
    got = []
    s.subscribe(SCAN_TOPIC, got.append)
    for i in range(3):
        s.publish(SCAN_TOPIC, {"i": i})
    assert _wait(lambda: len(got) == 3)
    time.sleep(20 * s.topic_poll_interval)  # many empty polls
    s.publish(SCAN_TOPIC, {"i": 3})
    assert _wait(lambda: len(got) == 4)
    time.sleep(5 * s.topic_poll_interval)
    assert got == [{"i": i} for i in range(4)]


def test_restarted_cluster_refilled_before_the_reader_reconnects(world, caplog):
    """A publisher back before the subscriber fills the restarted cluster's new ringbuffer past the reader's
    old position: the reader must notice the history changed and start from the new head, losing nothing."""
    cluster, factory, open_store = world
    s = open_store()
    pub = open_store()
    got = []
    s.subscribe(SCAN_TOPIC, got.append)
    for i in range(3):
        pub.publish(SCAN_TOPIC, {"i": i})
    assert _wait(lambda: len(got) == 3)
    client = factory.made[0]
    client.drop()  # the subscriber's client is offline while the cluster restarts and refills
    cluster.restart()
    for i in range(3, 8):
        pub.publish(SCAN_TOPIC, {"i": i})
    client.restore()
    assert _wait(lambda: len(got) == 8), got
    time.sleep(5 * s.topic_poll_interval)
    assert got == [{"i": i} for i in range(8)]
    assert "no longer holds the message we last read" in caplog.text


def _try(fn):
    try:
        fn()
        return True
    except StoreUnavailableError:
        return False


def test_slow_subscriber_skips_lost_messages_and_says_so(world, caplog):
    cluster, _, open_store = world
    cluster.capacity = 5
    s = open_store()
    release = threading.Event()
    got = []

    def slow(p):
        got.append(p["i"])
        release.wait(5)

    s.subscribe(SCAN_TOPIC, slow)
    s.publish(SCAN_TOPIC, {"i": 0})
    assert _wait(lambda: got == [0])
    for i in range(1, 20):
        s.publish(SCAN_TOPIC, {"i": i})
    release.set()
    assert _wait(lambda: got and got[-1] == 19)
    assert got == sorted(got) and len(got) < 20
    assert "message(s) lost" in caplog.text


def test_unsubscribe_and_close_are_prompt(world):
    _, _, open_store = world
    s = open_store(topic_poll_interval=0.5, topic_max_backoff=0.5)
    subs = [s.subscribe(SCAN_TOPIC, lambda p: None) for _ in range(3)]
    time.sleep(0.05)
    t = time.monotonic()
    s.unsubscribe(subs[0])
    assert time.monotonic() - t < 1.0 and not subs[0].thread.is_alive()
    t = time.monotonic()
    s.close()
    assert time.monotonic() - t < 1.0
    assert not any(x.thread.is_alive() for x in subs)
    s.unsubscribe(subs[1])  # after close: nothing left to do, no error


# ------------------------------------------------------------------------------------------ malformed values
def test_malformed_value_reads_as_missing_is_reported_and_replaceable(world, caplog):
    cluster, _, open_store = world
    s = open_store()
    events = []
    s.listen(FEATURES, events.append)
    cluster.write(FEATURES, ACB_STATE, "{not json")  # another writer's bug
    assert s.get(FEATURES, ACB_STATE) is None
    assert (FEATURES, ACB_STATE) in s.malformed()
    assert "malformed record at DOLPHIN_FEATURES/acb_state" in caplog.text
    assert _wait(lambda: len(events) == 1) and events[0].record is None and events[0].key == ACB_STATE
    assert "malformed record in a change event" in caplog.text
    # compare-and-set on the raw text replaces it (update() goes through replace_text_if_same)
    assert not s.replace_text_if_same(FEATURES, ACB_STATE, "{other", Record({"v": 1}))
    rec = s.update(FEATURES, ACB_STATE, lambda cur: Record({"v": 1}) if cur is None else None)
    assert rec.value == {"v": 1} and s.get(FEATURES, ACB_STATE).value == {"v": 1}
    assert (FEATURES, ACB_STATE) not in s.malformed()

"""Hazelcast feature store: the same contract over Hazelcast IMaps (hazelcast-python-client 5.x, blocking).

Works with Hazelcast 4.2 and 5.x open-source members: plain IMap operations (get / set / put_if_absent /
replace_if_same / remove / key_set), entry listeners, a reliable topic's ringbuffer, a near cache on
DOLPHIN_FEATURES. No SQL, no Jet, no server-side classes, no CP subsystem.

Values are the records' canonical JSON text (``Record.to_json``), so ``replace_if_same`` compares equal
records as equal and any other client (Java, the management center) reads plain strings. Malformed stored
text reads as missing and is reported by map/key (``FeatureStore.parse_stored``).

Configuration: constructor arguments, else environment, else defaults::

    DOLPHIN_HZ_MEMBERS            comma-separated host:port (default 127.0.0.1:5701)
    DOLPHIN_HZ_CLUSTER            cluster name (default dolphin)
    DOLPHIN_HZ_USERNAME / DOLPHIN_HZ_PASSWORD    credentials (never logged)
    DOLPHIN_HZ_TLS                1 to enable TLS (implied by any DOLPHIN_HZ_TLS_* file)
    DOLPHIN_HZ_TLS_CAFILE / DOLPHIN_HZ_TLS_CERTFILE / DOLPHIN_HZ_TLS_KEYFILE / DOLPHIN_HZ_TLS_KEY_PASSWORD
    DOLPHIN_HZ_TLS_CHECK_HOSTNAME 0 to disable hostname checks (default on)
    DOLPHIN_HZ_CONNECT_TIMEOUT    seconds to find the cluster, at start and per reconnect attempt (default 10)
    DOLPHIN_HZ_INVOCATION_TIMEOUT seconds per operation incl. retries (default 5)
    DOLPHIN_HZ_NEAR_CACHE_TTL     seconds a near-cached DOLPHIN_FEATURES value is served (default 1.0;
                                  0 disables the near cache)

Staleness: only DOLPHIN_FEATURES is near-cached. Its entries expire ``near_cache_ttl`` seconds after they
were cached, so another client's write is seen within that bound (``staleness_bound_s``) even when the
member batches its invalidations (10 s by default; docker/compose.yaml turns batching off). DOLPHIN_SAFETY
(posture, the kill switch), DOLPHIN_STATE_* (the runtime's own state) and every other map are never
near-cached: each read goes to the member.

Failure contract: construction fails within the connect timeout with ``StoreUnavailableError`` naming the
members. While the client is disconnected every call raises ``StoreUnavailableError`` at once
(``reconnect_mode=ASYNC``). After ``connect_timeout`` without the cluster the client shuts itself down;
the adapter then makes a NEW client in a background thread (``dolphin-hz-reconnect``, exponential back-off
with jitter up to ``reconnect_max_backoff``, each attempt bounded by the connect timeout), re-registers every
entry listener and topic subscription (the caller's handles stay valid) and fires the reconnect listeners
(``add_reconnect_listener``), so an outage of any length is recovered. Topic subscriptions are the
adapter's own reader threads over the reliable topic's ringbuffer: they survive disconnects and client
replacement, tolerate loss and a cluster restart, and deliver in publish order.
"""

import json
import logging
import os
import random
import threading

from dolphin.store.port import (ADDED, FEATURES, REMOVED, UPDATED, EntryEvent, FeatureStore, Record,
                                StoreUnavailableError, check_key, check_topic)

log = logging.getLogger(__name__)

RINGBUFFER_PREFIX = "_hz_rb_"  # the ringbuffer a reliable topic publishes to (hazelcast.proxy.reliable_topic)
_READ_BATCH = 10  # the client's own reliable-topic read_batch_size default (always <= a ringbuffer's capacity)


def _env(name, default=None):
    v = os.environ.get(name)
    return v if v not in (None, "") else default


def _flag(v) -> bool:
    return str(v).strip().lower() in ("1", "true", "yes", "on")


def _unavailable_errors():
    from hazelcast import errors as e

    return tuple(getattr(e, n) for n in (
        "HazelcastClientNotActiveError", "ClientOfflineError", "TargetDisconnectedError", "OperationTimeoutError",
        "HazelcastTimeoutError", "IllegalStateError", "TargetNotMemberError", "MemberLeftError",
        "HazelcastIOError", "HazelcastEOFError", "HazelcastInstanceNotActiveError", "RetryableIOError",
        "AuthenticationError", "InvalidConfigurationError") if hasattr(e, n)) + (TimeoutError, ConnectionError, OSError)


class _Session:
    """One client and its proxies. Replaced as a whole when a new client is made, so a proxy of a dead
    client is never reused."""

    def __init__(self, client, gen: int):
        self.client, self.gen = client, gen
        self._maps: dict = {}
        self._topics: dict = {}
        self._rbs: dict = {}

    def map(self, name):
        m = self._maps.get(name)
        if m is None:
            m = self._maps[name] = self.client.get_map(name).blocking()
        return m

    def topic(self, name):
        t = self._topics.get(name)
        if t is None:
            t = self._topics[name] = self.client.get_reliable_topic(name).blocking()
        return t

    def ringbuffer(self, topic):
        r = self._rbs.get(topic)
        if r is None:
            r = self._rbs[topic] = self.client.get_ringbuffer(RINGBUFFER_PREFIX + topic).blocking()
        return r


def _identity(item):
    """A ringbuffer item's identity: a ReliableTopicMessage's publish time and payload."""
    return getattr(item, "publish_time", None), getattr(item, "payload", item)


def _item_seq(result, i, default):
    try:
        return result.get_sequence(i)
    except (AttributeError, IndexError, TypeError):  # no item sequences in this response
        return default


class _MapListener:
    """The handle ``listen`` returns: stays valid across client replacement (re-registered on each client)."""

    def __init__(self, map_name, callback):
        self.map_name, self.callback = map_name, callback
        self.active = True
        self.gen = None  # the client generation it is registered on
        self.reg_id = None
        self.lock = threading.Lock()

    def __repr__(self):
        return f"<listener on {self.map_name}>"


class _Subscription:
    """The handle ``subscribe`` returns: a reader thread over the topic's ringbuffer."""

    def __init__(self, topic, callback, start, last=None):
        self.topic, self.callback, self.seq = topic, callback, start
        # (sequence, identity) of the last message read (or the tail at subscribe): tells our ringbuffer from
        # a restarted cluster's new one that already holds as many messages
        self.last = last
        self.active = True
        self.wake = threading.Event()
        self.thread = None

    def __repr__(self):
        return f"<subscription to {self.topic} at {self.seq}>"


class HazelcastStore(FeatureStore):
    def __init__(self, members=None, cluster: str | None = None, *, username: str | None = None,
                 password: str | None = None, tls: bool | None = None, tls_cafile: str | None = None,
                 tls_certfile: str | None = None, tls_keyfile: str | None = None,
                 tls_key_password: str | None = None, tls_check_hostname: bool | None = None,
                 connect_timeout: float | None = None, invocation_timeout: float | None = None,
                 near_cache: bool = True, near_cache_ttl: float | None = None, client_name: str | None = None,
                 reconnect_initial_backoff: float = 1.0, reconnect_max_backoff: float = 30.0,
                 topic_poll_interval: float = 0.1, topic_max_backoff: float = 1.0, client_factory=None):
        import hazelcast
        from hazelcast.config import ReconnectMode

        if members is None:
            members = _env("DOLPHIN_HZ_MEMBERS", "127.0.0.1:5701")
        if isinstance(members, str):
            members = [m.strip() for m in members.split(",") if m.strip()]
        self.members = list(members)
        self.cluster = cluster or _env("DOLPHIN_HZ_CLUSTER", "dolphin")
        username = username if username is not None else _env("DOLPHIN_HZ_USERNAME")
        password = password if password is not None else _env("DOLPHIN_HZ_PASSWORD")
        tls_cafile = tls_cafile or _env("DOLPHIN_HZ_TLS_CAFILE")
        tls_certfile = tls_certfile or _env("DOLPHIN_HZ_TLS_CERTFILE")
        tls_keyfile = tls_keyfile or _env("DOLPHIN_HZ_TLS_KEYFILE")
        tls_key_password = tls_key_password or _env("DOLPHIN_HZ_TLS_KEY_PASSWORD")
        if tls is None:
            tls = _flag(_env("DOLPHIN_HZ_TLS", "0")) or bool(tls_cafile or tls_certfile or tls_keyfile)
        if tls_check_hostname is None:
            tls_check_hostname = _flag(_env("DOLPHIN_HZ_TLS_CHECK_HOSTNAME", "1"))
        self.connect_timeout = float(connect_timeout if connect_timeout is not None
                                     else _env("DOLPHIN_HZ_CONNECT_TIMEOUT", 10))
        self.invocation_timeout = float(invocation_timeout if invocation_timeout is not None
                                        else _env("DOLPHIN_HZ_INVOCATION_TIMEOUT", 5))
        ttl = float(near_cache_ttl if near_cache_ttl is not None else _env("DOLPHIN_HZ_NEAR_CACHE_TTL", 1.0))
        if ttl < 0:
            raise ValueError(f"near_cache_ttl must be >= 0 seconds, got {ttl}")
        self.near_cache = bool(near_cache) and ttl > 0
        # the longest another client's write can stay invisible to this one's reads
        self.staleness_bound_s = ttl if self.near_cache else 0.0
        self.tls = bool(tls)
        self.reconnect_initial_backoff = float(reconnect_initial_backoff)
        self.reconnect_max_backoff = float(reconnect_max_backoff)
        self.topic_poll_interval = float(topic_poll_interval)
        self.topic_max_backoff = max(float(topic_max_backoff), self.topic_poll_interval)

        cfg = dict(
            cluster_members=self.members,
            cluster_name=self.cluster,
            # the client's default is to retry forever: always bound it (it shuts itself down after this)
            cluster_connect_timeout=self.connect_timeout,
            connection_timeout=min(5.0, self.connect_timeout),
            invocation_timeout=self.invocation_timeout,
            # while reconnecting, invocations fail at once (ClientOfflineError) instead of queueing
            reconnect_mode=ReconnectMode.ASYNC,
        )
        if client_name:
            cfg["client_name"] = client_name
        if username is not None or password is not None:
            cfg["creds_username"] = username
            cfg["creds_password"] = password
        if self.tls:
            cfg["ssl_enabled"] = True
            cfg["ssl_check_hostname"] = bool(tls_check_hostname)
            for k, v in (("ssl_cafile", tls_cafile), ("ssl_certfile", tls_certfile), ("ssl_keyfile", tls_keyfile),
                         ("ssl_password", tls_key_password)):
                if v:
                    cfg[k] = v
        if self.near_cache:
            # time_to_live bounds staleness whatever the member's invalidation batching; never max_idle
            # (0 means "expire at once" in this client). DOLPHIN_FEATURES only: safety/state are never cached.
            cfg["near_caches"] = {FEATURES: {"invalidate_on_change": True, "time_to_live": ttl}}
        self._cfg = cfg  # holds credentials: never logged
        self._client_factory = client_factory or hazelcast.HazelcastClient

        self._lock = threading.RLock()
        self._connected = threading.Event()
        self._stop = threading.Event()  # set by close(): stops the reconnect thread's back-off waits
        self._closed = False
        self._gen = 0  # client generation: lifecycle events of replaced clients are ignored
        self._states: dict = {}  # gen -> last lifecycle state (a client reports states before it is adopted)
        self._session: _Session | None = None
        self._reconnecting = False
        self._epoch = 0  # bumped on every (re)connection after an outage
        self._reconnector: threading.Thread | None = None
        self._attempt = 0
        self._listeners: list = []  # _MapListener, re-registered on every new client
        self._subs: list = []  # _Subscription

        log.info("connecting to Hazelcast cluster %r at %s (tls=%s, credentials=%s, connect timeout %.0fs, "
                 "near cache %s)", self.cluster, ",".join(self.members), self.tls, "yes" if username else "no",
                 self.connect_timeout, f"on {FEATURES}, ttl {ttl:g}s" if self.near_cache else "off")
        from hazelcast.errors import InvalidConfigurationError

        gen = self._next_gen()
        try:
            client = self._make_client(gen)
        except InvalidConfigurationError as e:
            raise ValueError(f"Hazelcast client configuration: {e}") from None
        except Exception as e:  # IllegalStateError "Unable to connect to any cluster", auth, TLS, OSError
            raise StoreUnavailableError(
                f"Hazelcast cluster {self.cluster!r} unreachable at {', '.join(self.members)} "
                f"within {self.connect_timeout:g}s: {type(e).__name__}: {e}") from None
        with self._lock:
            self._session = _Session(client, gen)
            if self._states.get(gen) not in ("DISCONNECTED", "SHUTTING_DOWN", "SHUTDOWN"):
                self._connected.set()
            down = self._states.get(gen) == "SHUTDOWN"
        if down:  # shut down between its construction and now: recover like any later shutdown
            self._on_state(gen, "SHUTDOWN")

    def __repr__(self):  # no credentials
        return f"HazelcastStore(members={self.members!r}, cluster={self.cluster!r}, tls={self.tls})"

    def _where(self) -> str:
        return f"Hazelcast cluster {self.cluster!r} at {', '.join(self.members)}"

    # ------------------------------------------------------------------ client lifecycle
    def _next_gen(self) -> int:
        with self._lock:
            self._gen += 1
            self._states = {g: s for g, s in self._states.items() if g >= self._gen - 1}
            return self._gen

    def _make_client(self, gen):
        cfg = dict(self._cfg, lifecycle_listeners=[lambda state, g=gen: self._on_state(g, state)])
        return self._client_factory(**cfg)

    def _on_state(self, gen, state):
        """Lifecycle listener (runs on the client's threads: never blocks)."""
        reconnected = start = False
        with self._lock:
            self._states[gen] = state
            s = self._session
            if self._closed or s is None or s.gen != gen:
                return  # a client under construction, a replaced one, or one we shut down ourselves
            if state == "CONNECTED":
                reconnected = not self._connected.is_set()
                if reconnected:
                    self._epoch += 1  # topic readers re-check their sequence (the cluster may have restarted)
                self._connected.set()
            elif state in ("DISCONNECTED", "SHUTTING_DOWN", "SHUTDOWN"):
                was = self._connected.is_set()
                self._connected.clear()
                if was:
                    log.warning("%s: client %s; store calls fail fast until it is back", self._where(),
                                state.lower().replace("_", " "))
                if state == "SHUTDOWN" and not self._reconnecting:
                    # not asked for (close() sets _closed first): the client gave up after the connect timeout
                    self._reconnecting = start = True
                    self._attempt = 0
        if reconnected:
            log.info("%s: client reconnected (same client; it re-registers its own listeners)", self._where())
            # events were missed while disconnected: caches built on them must drop what they hold. On a
            # thread of our own: the hooks may call the store, and this is the client's reactor/IO thread.
            threading.Thread(target=self._fire_reconnected, name="dolphin-hz-reconnected", daemon=True).start()
        if start:
            log.warning("%s: client shut itself down (no cluster for %gs); making a new client in the background",
                        self._where(), self.connect_timeout)
            t = threading.Thread(target=self._reconnect_loop, name="dolphin-hz-reconnect", daemon=True)
            with self._lock:
                self._reconnector = t
            t.start()

    def _reconnect_loop(self):
        while not self._stop.is_set():
            with self._lock:
                self._attempt += 1
                attempt = self._attempt
            gen = self._next_gen()
            log.info("%s: reconnect attempt %d (new client, connect timeout %gs)", self._where(), attempt,
                     self.connect_timeout)
            try:
                client = self._make_client(gen)  # bounded by cluster_connect_timeout
            except Exception as e:
                why = f"{type(e).__name__}: {e}"
            else:
                if self._adopt(client, gen):
                    return
                why = "the new client lost the cluster before it was ready"
            delay = min(self.reconnect_max_backoff, self.reconnect_initial_backoff * 2 ** (attempt - 1))
            delay *= random.uniform(0.5, 1.0)  # jitter: many processes do not reconnect in lockstep
            log.warning("%s: reconnect attempt %d failed (%s); next attempt in %.2fs", self._where(), attempt,
                        why, delay)
            if self._stop.wait(delay):
                break
        log.info("%s: reconnecting stopped (store closed)", self._where())

    def _adopt(self, client, gen) -> bool:
        """Re-register everything on a freshly made client, then make it current. False: try again."""
        session = _Session(client, gen)
        try:
            for reg in list(self._listeners):
                self._register_map(reg, session)
        except Exception as e:
            log.warning("%s: re-registering entry listeners on the new client failed (%s: %s); retrying",
                        self._where(), type(e).__name__, e)
            self._shutdown_quietly(client)
            return False
        with self._lock:
            if self._closed:
                adopted = None
            elif self._states.get(gen) in ("SHUTTING_DOWN", "SHUTDOWN"):
                adopted = False
            else:
                adopted = True
                # atomic with installing the session: a later SHUTDOWN of this client starts a new loop
                self._reconnecting = False
                self._session = session
                self._epoch += 1
                if self._states.get(gen) != "DISCONNECTED":
                    self._connected.set()
            subs = [s for s in self._subs if s.active]
        if adopted is None:
            self._shutdown_quietly(client)
            return True
        if not adopted:
            self._shutdown_quietly(client)
            return False
        for reg in list(self._listeners):  # a listen() racing the switch-over
            try:
                self._register_map(reg, session)
            except Exception as e:
                log.warning("%s: registering %r on the new client failed: %s", self._where(), reg, e)
        for s in subs:
            s.wake.set()  # readers switch to the new client's ringbuffer now, not after their back-off
        log.info("%s: new client connected (members %s); %d entry listener(s) and %d topic subscription(s) "
                 "re-registered", self._where(), self._member_list(client), len(self._listeners), len(subs))
        self._fire_reconnected()
        return True

    @staticmethod
    def _member_list(client) -> str:
        try:
            return ", ".join(str(m.address) for m in client.cluster_service.get_members()) or "none"
        except Exception:
            return "unknown"

    @staticmethod
    def _shutdown_quietly(client):
        try:
            client.shutdown()
        except Exception:  # closing an already broken client
            log.debug("Hazelcast client shutdown failed", exc_info=True)

    # ------------------------------------------------------------------ calls
    def _live(self) -> _Session:
        if self._closed:
            raise StoreUnavailableError(f"{self!r} is closed")
        s = self._session
        if s is None or not self._connected.is_set():
            if self._reconnecting:
                raise StoreUnavailableError(f"{self._where()}: client shut down after {self.connect_timeout:g}s "
                                            f"without the cluster; new client attempt {self._attempt} in progress")
            raise StoreUnavailableError(f"{self._where()}: client disconnected (reconnecting in the background)")
        return s

    def _call(self, what, fn):
        """``fn(session)`` on the current client; unavailability of any kind -> StoreUnavailableError."""
        s = self._live()
        try:
            return fn(s)
        except StoreUnavailableError:
            raise
        except _unavailable_errors() as e:
            raise StoreUnavailableError(f"{self._where()}: {what} failed: {type(e).__name__}: {e}") from e

    # ---- maps
    def get(self, map_name, key):
        check_key(map_name, key)
        text = self._call(f"get {map_name}/{key}", lambda s: s.map(map_name).get(key))
        return self.parse_stored(map_name, key, text)

    def put(self, map_name, key, record: Record) -> None:
        check_key(map_name, key)
        text = record.to_json()
        self._call(f"put {map_name}/{key}", lambda s: s.map(map_name).set(key, text))

    def replace_if_same(self, map_name, key, expected: Record | None, new: Record) -> bool:
        check_key(map_name, key)
        text = new.to_json()
        if expected is None:
            return self._call(f"put_if_absent {map_name}/{key}",
                              lambda s: s.map(map_name).put_if_absent(key, text)) is None
        return self.replace_text_if_same(map_name, key, expected.to_json(), new)

    def replace_text_if_same(self, map_name, key, expected_text: str, new: Record) -> bool:
        check_key(map_name, key)
        text = new.to_json()
        return bool(self._call(f"replace_if_same {map_name}/{key}",
                               lambda s: s.map(map_name).replace_if_same(key, expected_text, text)))

    def delete(self, map_name, key) -> bool:
        check_key(map_name, key)
        return self._call(f"remove {map_name}/{key}", lambda s: s.map(map_name).remove(key)) is not None

    def keys(self, map_name) -> list:
        check_key(map_name)
        return sorted(self._call(f"key_set {map_name}", lambda s: s.map(map_name).key_set()))

    # ---- entry listeners
    def _register_map(self, reg: _MapListener, session: _Session) -> None:
        def on(kind):
            def f(ev):
                if not reg.active:  # unlistened (the member may still send a few events)
                    return
                text = ev.old_value if kind == REMOVED else ev.value
                try:
                    reg.callback(EntryEvent(reg.map_name, ev.key, kind, self.parse_event(reg.map_name, ev.key, text)))
                except Exception:
                    log.exception("feature store listener callback failed")
            return f

        with reg.lock:  # one registration per client generation, whoever gets here first
            if not reg.active or reg.gen == session.gen:
                return
            reg.reg_id = session.map(reg.map_name).add_entry_listener(
                include_value=True, added_func=on(ADDED), updated_func=on(UPDATED), removed_func=on(REMOVED))
            reg.gen = session.gen

    def listen(self, map_name, callback):
        check_key(map_name)
        reg = _MapListener(map_name, callback)
        with self._lock:
            self._listeners.append(reg)
        try:
            self._call(f"add_entry_listener {map_name}", lambda s: self._register_map(reg, s))
        except BaseException:
            self._drop_listener(reg)
            raise
        return reg

    def _drop_listener(self, reg):
        reg.active = False
        with self._lock:
            if reg in self._listeners:
                self._listeners.remove(reg)

    def unlisten(self, handle) -> None:
        if not isinstance(handle, _MapListener):
            raise TypeError(f"not a listen() handle of this store: {handle!r}")
        self._drop_listener(handle)  # no more callbacks, never re-registered, whatever happens below
        s = self._session
        if self._closed or s is None or handle.gen != s.gen or not self._connected.is_set():
            return  # its client is gone (or going): nothing left on the member to remove
        try:
            s.map(handle.map_name).remove_entry_listener(handle.reg_id)
        except _unavailable_errors() as e:
            log.debug("remove_entry_listener %s failed: %s", handle.map_name, e)

    # ---- topics: publish through the reliable topic, read its ringbuffer ourselves
    def publish(self, topic, payload: dict) -> None:
        check_topic(topic)
        text = json.dumps(payload, separators=(",", ":"))
        self._call(f"publish {topic}", lambda s: s.topic(topic).publish(text))

    def subscribe(self, topic, callback):
        check_topic(topic)
        # start right after the current tail, read synchronously: a message published after subscribe()
        # returns is never missed
        def tail(s):
            rb = s.ringbuffer(topic)
            t = rb.tail_sequence()
            if t < 0:
                return 0, None
            r = rb.read_many(t, 0, 1)
            return t + 1, ((t, _identity(r[0])) if r.size and _item_seq(r, 0, t) == t else None)

        start, last = self._call(f"tail {topic}", tail)
        sub = _Subscription(topic, callback, start, last)
        # a thread of our own instead of the client's reliable-topic runner: in client 5.7 that runner
        # retries an offline error recursively and dies silently (RecursionError) on a long disconnect
        sub.thread = threading.Thread(target=self._read_topic, args=(sub,), name=f"dolphin-hz-topic-{topic}",
                                      daemon=True)
        with self._lock:
            if self._closed:
                raise StoreUnavailableError(f"{self!r} is closed")
            self._subs.append(sub)
        sub.thread.start()
        return sub

    def unsubscribe(self, handle) -> None:
        if not isinstance(handle, _Subscription):
            raise TypeError(f"not a subscribe() handle of this store: {handle!r}")
        self._stop_sub(handle)
        with self._lock:
            if handle in self._subs:
                self._subs.remove(handle)

    @staticmethod
    def _stop_sub(sub, wait=1.0):
        sub.active = False
        sub.wake.set()
        if sub.thread is not None and sub.thread is not threading.current_thread():
            sub.thread.join(wait)  # prompt: reads never block (min_count=0) and waits end on `wake`

    def _read_topic(self, sub: _Subscription) -> None:
        """Reader loop: read_many from our own sequence, in order, back-off on errors, never recursion.

        Polls with min_count=0: a blocking read (min_count=1) parks on the member until a message arrives,
        and this client applies its invocation timeout only to retries, not to a pending response -- so a
        blocking read could hold unsubscribe/close indefinitely. An empty read waits ``topic_poll_interval``.
        """
        from hazelcast.errors import IllegalArgumentError, StaleSequenceError

        unavailable = _unavailable_errors()
        epoch = None  # the connection epoch whose ringbuffer state we have checked our sequence against
        jump = False  # our sequence fell off the ringbuffer: continue at its head
        failures, backoff = 0, self.topic_poll_interval
        while sub.active and not self._closed:
            try:
                s = self._live()
                rb = s.ringbuffer(sub.topic)
                if epoch is not None and epoch != self._epoch:
                    # reconnected or a new client: the cluster may have restarted with an empty ringbuffer
                    e_now = self._epoch
                    tail = rb.tail_sequence()
                    why = f"its tail {tail} is behind our next sequence {sub.seq}" if tail < sub.seq - 1 else ""
                    last = sub.last
                    if not why and last is not None and last[0] == sub.seq - 1 and tail >= last[0]:
                        # long enough, but ours? a publisher back before us may have refilled a new one
                        r = rb.read_many(last[0], 0, 1)
                        if not (r.size and _item_seq(r, 0, last[0]) == last[0] and _identity(r[0]) == last[1]):
                            why = f"it no longer holds the message we last read at {last[0]}"
                    if why:
                        head = rb.head_sequence()
                        log.warning("topic %s: ringbuffer changed (cluster restarted?): %s; restarting from its "
                                    "head %d", sub.topic, why, head)
                        sub.seq, sub.last = head, None
                    epoch = e_now
                if jump:
                    head = rb.head_sequence()
                    log.warning("topic %s: %d message(s) lost (overwritten before read); continuing at %d",
                                sub.topic, head - sub.seq, head)
                    sub.seq, jump = head, False
                if epoch is None:
                    epoch = self._epoch
                result = rb.read_many(sub.seq, 0, _READ_BATCH)
            except StaleSequenceError:  # members that refuse (rather than clamp) a too-old sequence
                jump = True
                continue
            except (StoreUnavailableError, IllegalArgumentError, *unavailable) as e:
                # offline / timeout / client replaced / "sequence too large" (restarted cluster): retry later,
                # re-checking our sequence first
                failures += 1
                epoch = -1
                if failures == 1:
                    log.warning("topic %s: read failed (%s: %s); retrying with back-off", sub.topic,
                                type(e).__name__, e)
                self._pause(sub, backoff)
                backoff = min(backoff * 2, self.topic_max_backoff)
                continue
            except Exception:
                failures += 1
                log.exception("topic %s: unexpected read error; retrying", sub.topic)
                self._pause(sub, self.topic_max_backoff)
                continue
            if failures:
                log.info("topic %s: reading again after %d failed read(s), at sequence %d", sub.topic, failures,
                         sub.seq)
                failures, backoff = 0, self.topic_poll_interval
            n = result.read_count
            nxt = result.next_sequence_to_read_from
            if n == 0 or nxt < 0:
                # nothing read: stay (a 4.2 member answers an empty read with next sequence 0, which would
                # re-deliver the whole ringbuffer); SEQUENCE_UNAVAILABLE (pre-3.9 members): no clamping happened
                nxt = sub.seq + n
            lost = (nxt - n) - sub.seq  # the member clamps a too-old start to its head
            if lost > 0:
                log.warning("topic %s: %d message(s) lost (overwritten before read); continuing at %d",
                            sub.topic, lost, nxt - n)
            for i in range(result.size):
                if not sub.active:
                    return
                self._deliver(sub, result[i])
            if result.size:
                sub.last = (_item_seq(result, result.size - 1, nxt - 1), _identity(result[result.size - 1]))
            sub.seq = nxt
            if n == 0:
                self._pause(sub, self.topic_poll_interval)

    @staticmethod
    def _pause(sub, seconds):
        sub.wake.wait(seconds)
        sub.wake.clear()
        # (a wake from unsubscribe leaves sub.active False: the loop ends; from a new client: read now)

    @staticmethod
    def _deliver(sub, item):
        text = getattr(item, "payload", item)  # a ReliableTopicMessage: the published JSON text
        try:
            payload = json.loads(text)
        except (TypeError, ValueError) as e:
            log.warning("topic %s: malformed message skipped (%s): %r", sub.topic, e, str(text)[:120])
            return
        try:
            sub.callback(payload)
        except Exception:
            log.exception("feature store topic callback failed")

    # ------------------------------------------------------------------ close
    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stop.set()
            self._connected.clear()
            session, self._session = self._session, None
            subs, self._subs = self._subs, []
            listeners, self._listeners = self._listeners, []
            reconnector = self._reconnector
        for reg in listeners:
            reg.active = False
        for sub in subs:
            sub.active = False
            sub.wake.set()
        if session is not None:
            self._shutdown_quietly(session.client)
        for sub in subs:
            self._stop_sub(sub)
        if reconnector is not None and reconnector is not threading.current_thread():
            # an attempt in progress ends within the connect timeout; the thread then shuts that client down
            reconnector.join(1.0)

"""Hazelcast feature store: the same contract over Hazelcast IMaps (hazelcast-python-client 5.x, blocking).

Works with Hazelcast 4.2 and 5.x open-source members: plain IMap operations (get / set / put_if_absent /
replace_if_same / remove / key_set), entry listeners, reliable topics, a near cache on DOLPHIN_FEATURES
(invalidated on change). No SQL, no Jet, no server-side classes, no CP subsystem.

Values are the records' canonical JSON text (``Record.to_json``), so ``replace_if_same`` compares equal
records as equal and any other client (Java, the management center) reads plain strings.

Configuration: constructor arguments, else environment, else defaults::

    DOLPHIN_HZ_MEMBERS            comma-separated host:port (default 127.0.0.1:5701)
    DOLPHIN_HZ_CLUSTER            cluster name (default dolphin)
    DOLPHIN_HZ_USERNAME / DOLPHIN_HZ_PASSWORD    credentials (never logged)
    DOLPHIN_HZ_TLS                1 to enable TLS (implied by any DOLPHIN_HZ_TLS_* file)
    DOLPHIN_HZ_TLS_CAFILE / DOLPHIN_HZ_TLS_CERTFILE / DOLPHIN_HZ_TLS_KEYFILE / DOLPHIN_HZ_TLS_KEY_PASSWORD
    DOLPHIN_HZ_TLS_CHECK_HOSTNAME 0 to disable hostname checks (default on)
    DOLPHIN_HZ_CONNECT_TIMEOUT    seconds to find the cluster, at start and on reconnect (default 10)
    DOLPHIN_HZ_INVOCATION_TIMEOUT seconds per operation incl. retries (default 5)

Failure contract: construction fails within the connect timeout with ``StoreUnavailableError`` naming the
members; while the client is disconnected every call raises ``StoreUnavailableError`` at once (the client
reconnects in the background, ``reconnect_mode=ASYNC``); operations time out after the invocation timeout.
"""

import json
import logging
import os
import threading

from dolphin.store.port import (ADDED, FEATURES, REMOVED, UPDATED, EntryEvent, FeatureStore, Record,
                                StoreUnavailableError, check_key, check_topic)

log = logging.getLogger(__name__)


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


class HazelcastStore(FeatureStore):
    def __init__(self, members=None, cluster: str | None = None, *, username: str | None = None,
                 password: str | None = None, tls: bool | None = None, tls_cafile: str | None = None,
                 tls_certfile: str | None = None, tls_keyfile: str | None = None,
                 tls_key_password: str | None = None, tls_check_hostname: bool | None = None,
                 connect_timeout: float | None = None, invocation_timeout: float | None = None,
                 near_cache: bool = True, client_name: str | None = None):
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
        self.tls = bool(tls)

        cfg = dict(
            cluster_members=self.members,
            cluster_name=self.cluster,
            # the client's default is to retry forever: always bound it
            cluster_connect_timeout=self.connect_timeout,
            connection_timeout=min(5.0, self.connect_timeout),
            invocation_timeout=self.invocation_timeout,
            # while reconnecting, invocations fail at once (ClientOfflineError) instead of queueing
            reconnect_mode=ReconnectMode.ASYNC,
            lifecycle_listeners=[self._on_state],
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
        if near_cache:
            # invalidate_on_change: another client's write evicts our copy; no max_idle (0 = expire at once here)
            cfg["near_caches"] = {FEATURES: {"invalidate_on_change": True}}

        self._connected = threading.Event()
        self._closed = False
        self._maps: dict = {}
        self._topics: dict = {}
        self._lock = threading.Lock()
        log.info("connecting to Hazelcast cluster %r at %s (tls=%s, credentials=%s, connect timeout %.0fs)",
                 self.cluster, ",".join(self.members), self.tls, "yes" if username else "no", self.connect_timeout)
        from hazelcast.errors import HazelcastError, InvalidConfigurationError

        try:
            self._client = hazelcast.HazelcastClient(**cfg)
        except InvalidConfigurationError as e:
            raise ValueError(f"Hazelcast client configuration: {e}") from None
        except (HazelcastError, OSError) as e:  # IllegalStateError "Unable to connect to any cluster", auth, TLS
            raise StoreUnavailableError(
                f"Hazelcast cluster {self.cluster!r} unreachable at {', '.join(self.members)} "
                f"within {self.connect_timeout:g}s: {type(e).__name__}: {e}") from None
        self._connected.set()

    def __repr__(self):  # no credentials
        return f"HazelcastStore(members={self.members!r}, cluster={self.cluster!r}, tls={self.tls})"

    def _on_state(self, state):
        if state == "CONNECTED":
            self._connected.set()
        elif state in ("DISCONNECTED", "SHUTTING_DOWN", "SHUTDOWN"):
            self._connected.clear()

    def _check(self):
        if self._closed:
            raise StoreUnavailableError(f"{self!r} is closed")
        if not self._connected.is_set():
            raise StoreUnavailableError(f"Hazelcast cluster {self.cluster!r} at {', '.join(self.members)}: "
                                        "client disconnected (reconnecting in the background)")

    def _call(self, what, fn, *args, **kw):
        self._check()
        try:
            return fn(*args, **kw)
        except StoreUnavailableError:
            raise
        except _unavailable_errors() as e:
            raise StoreUnavailableError(f"Hazelcast cluster {self.cluster!r} at {', '.join(self.members)}: "
                                        f"{what} failed: {type(e).__name__}: {e}") from e

    def _map(self, name):
        m = self._maps.get(name)
        if m is None:
            m = self._maps[name] = self._call(f"get_map {name}", lambda: self._client.get_map(name).blocking())
        return m

    # ---- maps
    def get(self, map_name, key):
        check_key(map_name, key)
        text = self._call(f"get {map_name}/{key}", lambda: self._map(map_name).get(key))
        return Record.from_json(text) if text is not None else None

    def put(self, map_name, key, record: Record) -> None:
        check_key(map_name, key)
        text = record.to_json()
        self._call(f"put {map_name}/{key}", lambda: self._map(map_name).set(key, text))

    def replace_if_same(self, map_name, key, expected: Record | None, new: Record) -> bool:
        check_key(map_name, key)
        text = new.to_json()
        if expected is None:
            return self._call(f"put_if_absent {map_name}/{key}",
                              lambda: self._map(map_name).put_if_absent(key, text)) is None
        old = expected.to_json()
        return bool(self._call(f"replace_if_same {map_name}/{key}",
                               lambda: self._map(map_name).replace_if_same(key, old, text)))

    def delete(self, map_name, key) -> bool:
        check_key(map_name, key)
        return self._call(f"remove {map_name}/{key}", lambda: self._map(map_name).remove(key)) is not None

    def keys(self, map_name) -> list:
        check_key(map_name)
        return sorted(self._call(f"key_set {map_name}", lambda: self._map(map_name).key_set()))

    # ---- listeners and topics
    def listen(self, map_name, callback):
        check_key(map_name)

        def on(kind):
            def f(ev):
                text = ev.old_value if kind == REMOVED else ev.value
                try:
                    callback(EntryEvent(map_name, ev.key, kind, Record.from_json(text) if text is not None else None))
                except Exception:
                    log.exception("feature store listener callback failed")
            return f

        reg = self._call(f"add_entry_listener {map_name}", lambda: self._map(map_name).add_entry_listener(
            include_value=True, added_func=on(ADDED), updated_func=on(UPDATED), removed_func=on(REMOVED)))
        return ("map", map_name, reg)

    def unlisten(self, handle) -> None:
        _, map_name, reg = handle
        self._call(f"remove_entry_listener {map_name}", lambda: self._map(map_name).remove_entry_listener(reg))

    def _topic(self, name):
        t = self._topics.get(name)
        if t is None:
            t = self._topics[name] = self._call(f"get_reliable_topic {name}",
                                                lambda: self._client.get_reliable_topic(name).blocking())
        return t

    def publish(self, topic, payload: dict) -> None:
        check_topic(topic)
        text = json.dumps(payload, separators=(",", ":"))
        self._call(f"publish {topic}", lambda: self._topic(topic).publish(text))

    def subscribe(self, topic, callback):
        check_topic(topic)
        from hazelcast.proxy.reliable_topic import ReliableMessageListener

        # start right after the current tail, read synchronously: a message published after subscribe()
        # returns is never missed (the default listener resolves its start asynchronously)
        start = self._call(f"tail {topic}", lambda: self._client.get_ringbuffer("_hz_rb_" + topic)
                           .blocking().tail_sequence()) + 1

        class _Listener(ReliableMessageListener):
            def on_message(self, message):
                try:
                    callback(json.loads(message.message))
                except Exception:
                    log.exception("feature store topic callback failed")

            def retrieve_initial_sequence(self):
                return start

            def store_sequence(self, sequence):
                pass

            def is_loss_tolerant(self):
                return True  # scan events: a slow subscriber skips ahead rather than dying

            def is_terminal(self, error):
                return False

        reg = self._call(f"subscribe {topic}", lambda: self._topic(topic).add_listener(_Listener()))
        return ("topic", topic, reg)

    def unsubscribe(self, handle) -> None:
        _, topic, reg = handle
        self._call(f"unsubscribe {topic}", lambda: self._topic(topic).remove_listener(reg))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._client.shutdown()
        except Exception:  # closing an already broken client
            log.debug("Hazelcast client shutdown failed", exc_info=True)

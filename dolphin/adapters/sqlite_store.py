"""Embedded feature store: one SQLite file (WAL) under the data home, shared by every local process.

Same contract as the Hazelcast maps: JSON values with ``timestamp``, atomic compare-and-set. Each call
opens its own short connection, so the store is safe across processes and threads (SQLite locks the
file; WAL lets readers proceed while a writer commits).

Change events and topics work across processes too: triggers append every entry change to ``changes``
(in the same transaction as the change), ``publish`` appends to ``messages``; both have monotonically
increasing ids (AUTOINCREMENT: never reused, even after pruning). Each ``listen`` / ``subscribe`` starts a
background thread that polls for ids above the last one it delivered, every ``poll_interval`` seconds, and
delivers in id order -- so events reach every process in commit order, per key and overall. The log keeps
the last ``keep_changes`` rows (pruned every 100 writes by each writer).

After construction the file must stay where it is: calls open it read-write without creating it, so a
removed / unreadable file raises ``StoreUnavailableError`` instead of silently starting an empty store.
"""

import json
import logging
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path

from dolphin.ledger import db
from dolphin.ledger.db import Migration, Schema
from dolphin.store.port import (ADDED, REMOVED, UPDATED, EntryEvent, FeatureStore, Record, StoreUnavailableError,
                                check_key, check_topic)

log = logging.getLogger(__name__)

# version 1: the key-value table (2026-11-22, the feature-store port); version 2: the change log and topics
# (listeners and messages across processes, the same day). An unversioned file holds version 1 or 2's tables.
_SCHEMA = Schema("embedded feature store", (
    Migration(1, "entries: the maps' keys and values", """
CREATE TABLE IF NOT EXISTS entries (
    map   TEXT NOT NULL,
    key   TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (map, key)
) WITHOUT ROWID;
"""),
    Migration(2, "changes and messages: entry events and topics across processes", """
CREATE TABLE IF NOT EXISTS changes (
    id    INTEGER PRIMARY KEY AUTOINCREMENT,
    map   TEXT NOT NULL,
    key   TEXT NOT NULL,
    kind  TEXT NOT NULL,
    value TEXT
);
CREATE INDEX IF NOT EXISTS changes_map ON changes (map, id);
CREATE TABLE IF NOT EXISTS messages (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    topic   TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_topic ON messages (topic, id);
CREATE TRIGGER IF NOT EXISTS entries_added AFTER INSERT ON entries BEGIN
    INSERT INTO changes (map, key, kind, value) VALUES (NEW.map, NEW.key, 'added', NEW.value);
END;
CREATE TRIGGER IF NOT EXISTS entries_updated AFTER UPDATE ON entries BEGIN
    INSERT INTO changes (map, key, kind, value) VALUES (NEW.map, NEW.key, 'updated', NEW.value);
END;
CREATE TRIGGER IF NOT EXISTS entries_removed AFTER DELETE ON entries BEGIN
    INSERT INTO changes (map, key, kind, value) VALUES (OLD.map, OLD.key, 'removed', OLD.value);
END;
"""),
))

_KINDS = {"added": ADDED, "updated": UPDATED, "removed": REMOVED}


class _Poller:
    """Background thread delivering rows with id > last, in id order."""

    def __init__(self, store: "EmbeddedStore", sql: str, arg: str, start: int, deliver, name: str):
        self.store, self.sql, self.arg, self.last, self.deliver = store, sql, arg, start, deliver
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self):
        con, failing = None, False
        while not self.stop.is_set():
            try:
                if con is None:
                    con = self.store._open(self.store.read_timeout)
                rows = con.execute(self.sql, (self.arg, self.last)).fetchall()
                if failing:
                    log.info("feature store %s reachable again; listener resumes", self.store.path)
                    failing = False
            except sqlite3.Error as e:
                if not failing:
                    log.warning("feature store %s unreachable from listener: %s", self.store.path, e)
                    failing = True
                if con is not None:
                    con.close()
                    con = None
                rows = []
            for row in rows:
                if self.stop.is_set():
                    break
                self.last = row[0]
                try:
                    self.deliver(row)
                except Exception:  # a faulty callback must not kill the listener
                    log.exception("feature store listener callback failed")
            if not rows:
                self.stop.wait(self.store.poll_interval)
        if con is not None:
            con.close()

    def cancel(self):
        self.stop.set()
        if threading.current_thread() is not self.thread:
            self.thread.join(5)


class EmbeddedStore(FeatureStore):
    # no cache: every get reads the file, so another process's committed write is seen by the next read
    staleness_bound_s = 0.0

    def __init__(self, path, *, poll_interval: float = 0.05, read_timeout: float = 5.0,
                 write_timeout: float = 30.0, keep_changes: int = 2_000):
        self.path = Path(path)
        self.poll_interval, self.read_timeout, self.write_timeout = poll_interval, read_timeout, write_timeout
        self.keep_changes = keep_changes
        self._pollers: dict = {}
        self._lock = threading.Lock()
        self._writes = 0
        try:
            db.init(self.path, _SCHEMA, timeout=write_timeout)  # WAL; migrated up, or refused when newer
        except (OSError, sqlite3.Error) as e:
            raise StoreUnavailableError(f"embedded feature store {self.path}: cannot open: {e}") from e

    def __repr__(self):
        return f"EmbeddedStore({str(self.path)!r})"

    def _open(self, timeout: float) -> sqlite3.Connection:
        # mode=rw: never create a fresh empty store behind the readers' backs
        return sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=rw", uri=True, timeout=timeout,
                               isolation_level=None, check_same_thread=False)

    @contextmanager
    def _connect(self, write: bool = False):
        try:
            con = self._open(self.write_timeout if write else self.read_timeout)
        except sqlite3.Error as e:
            raise StoreUnavailableError(f"embedded feature store {self.path}: {e}") from e
        try:
            yield con
        except sqlite3.OperationalError as e:
            raise StoreUnavailableError(f"embedded feature store {self.path}: {e}") from e
        except sqlite3.DatabaseError as e:  # "file is not a database", disk I/O error...
            raise StoreUnavailableError(f"embedded feature store {self.path}: {e}") from e
        finally:
            con.close()

    def _wrote(self, con):
        self._writes += 1
        if self._writes % 100 == 0:
            # bound the log (values can be ~30 KB scan rows): a listener polls every poll_interval, so it
            # only ever needs the last few ids; one that falls > keep_changes behind skips the gap
            con.execute("DELETE FROM changes WHERE id <= (SELECT max(id) FROM changes) - ?", (self.keep_changes,))
            con.execute("DELETE FROM messages WHERE id <= (SELECT max(id) FROM messages) - ?", (self.keep_changes,))

    # ---- maps
    def get(self, map_name, key):
        check_key(map_name, key)
        with self._connect() as con:
            row = con.execute("SELECT value FROM entries WHERE map = ? AND key = ?", (map_name, key)).fetchone()
        return self.parse_stored(map_name, key, row[0] if row else None)

    def put(self, map_name, key, record: Record) -> None:
        check_key(map_name, key)
        with self._connect(write=True) as con:
            con.execute("INSERT INTO entries (map, key, value) VALUES (?, ?, ?) "
                        "ON CONFLICT (map, key) DO UPDATE SET value = excluded.value",
                        (map_name, key, record.to_json()))
            self._wrote(con)

    def replace_if_same(self, map_name, key, expected: Record | None, new: Record) -> bool:
        return self._replace(map_name, key, None if expected is None else expected.to_json(), new)

    def replace_text_if_same(self, map_name, key, expected_text: str, new: Record) -> bool:
        return self._replace(map_name, key, expected_text, new)

    def _replace(self, map_name, key, expected_text: str | None, new: Record) -> bool:
        check_key(map_name, key)
        with self._connect(write=True) as con:
            # BEGIN IMMEDIATE takes the write lock before reading: compare and set are one step for
            # every other connection, in this or any other process
            con.execute("BEGIN IMMEDIATE")
            try:
                row = con.execute("SELECT value FROM entries WHERE map = ? AND key = ?", (map_name, key)).fetchone()
                if expected_text is None:
                    ok = row is None
                    if ok:
                        con.execute("INSERT INTO entries (map, key, value) VALUES (?, ?, ?)",
                                    (map_name, key, new.to_json()))
                else:
                    ok = row is not None and row[0] == expected_text
                    if ok:
                        con.execute("UPDATE entries SET value = ? WHERE map = ? AND key = ?",
                                    (new.to_json(), map_name, key))
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
            if ok:
                self._wrote(con)
            return ok

    def delete(self, map_name, key) -> bool:
        check_key(map_name, key)
        with self._connect(write=True) as con:
            return con.execute("DELETE FROM entries WHERE map = ? AND key = ?", (map_name, key)).rowcount == 1

    def keys(self, map_name) -> list:
        check_key(map_name)
        with self._connect() as con:
            return [r[0] for r in con.execute("SELECT key FROM entries WHERE map = ? ORDER BY key", (map_name,))]

    # ---- listeners and topics
    def _start(self, table: str, col: str, name: str, deliver, prefix: str):
        with self._connect() as con:
            start = con.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0]
        sql = f"SELECT * FROM {table} WHERE {col} = ? AND id > ? ORDER BY id LIMIT 1000"
        p = _Poller(self, sql, name, start, deliver, f"{prefix}-{name}")
        with self._lock:
            self._pollers[id(p)] = p
        return p

    def _stop(self, handle) -> None:
        with self._lock:
            p = self._pollers.pop(id(handle), None)
        if p is not None:
            p.cancel()

    def listen(self, map_name, callback):
        check_key(map_name)

        def deliver(row):
            _, m, key, kind, value = row
            callback(EntryEvent(m, key, _KINDS[kind], self.parse_event(m, key, value)))

        return self._start("changes", "map", map_name, deliver, "store-listen")

    def unlisten(self, handle) -> None:
        self._stop(handle)

    def publish(self, topic, payload: dict) -> None:
        check_topic(topic)
        text = json.dumps(payload, separators=(",", ":"))
        with self._connect(write=True) as con:
            con.execute("INSERT INTO messages (topic, payload) VALUES (?, ?)", (topic, text))
            self._wrote(con)

    def subscribe(self, topic, callback):
        check_topic(topic)
        return self._start("messages", "topic", topic, lambda row: callback(json.loads(row[2])), "store-topic")

    def unsubscribe(self, handle) -> None:
        self._stop(handle)

    def close(self) -> None:
        with self._lock:
            pollers, self._pollers = list(self._pollers.values()), {}
        for p in pollers:
            p.cancel()

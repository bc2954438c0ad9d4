"""Embedded feature store: one SQLite file (WAL) under the data home, shared by every local process.

Same contract as the Hazelcast maps: JSON values with ``timestamp``, atomic compare-and-set. Each call
opens its own short connection, so the store is safe across processes and threads (SQLite locks the
file; WAL lets readers proceed while a writer commits).
"""

import sqlite3
from contextlib import contextmanager
from pathlib import Path

from dolphin.store.port import FeatureStore, Record, check_key

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    map   TEXT NOT NULL,
    key   TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (map, key)
) WITHOUT ROWID;
"""


class EmbeddedStore(FeatureStore):
    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(_SCHEMA)

    @contextmanager
    def _connect(self):
        con = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            yield con
        finally:
            con.close()

    def get(self, map_name, key):
        check_key(map_name, key)
        with self._connect() as con:
            row = con.execute("SELECT value FROM entries WHERE map = ? AND key = ?", (map_name, key)).fetchone()
        return Record.from_json(row[0]) if row else None

    def put(self, map_name, key, record: Record) -> None:
        check_key(map_name, key)
        with self._connect() as con:
            con.execute("INSERT INTO entries (map, key, value) VALUES (?, ?, ?) "
                        "ON CONFLICT (map, key) DO UPDATE SET value = excluded.value",
                        (map_name, key, record.to_json()))

    def replace_if_same(self, map_name, key, expected: Record | None, new: Record) -> bool:
        check_key(map_name, key)
        with self._connect() as con:
            # one statement each: SQLite makes it atomic against every other connection
            if expected is None:
                cur = con.execute("INSERT OR IGNORE INTO entries (map, key, value) VALUES (?, ?, ?)",
                                  (map_name, key, new.to_json()))
            else:
                cur = con.execute("UPDATE entries SET value = ? WHERE map = ? AND key = ? AND value = ?",
                                  (new.to_json(), map_name, key, expected.to_json()))
            return cur.rowcount == 1

    def delete(self, map_name, key) -> bool:
        check_key(map_name, key)
        with self._connect() as con:
            return con.execute("DELETE FROM entries WHERE map = ? AND key = ?", (map_name, key)).rowcount == 1

    def keys(self, map_name) -> list:
        check_key(map_name)
        with self._connect() as con:
            return [r[0] for r in con.execute("SELECT key FROM entries WHERE map = ? ORDER BY key", (map_name,))]

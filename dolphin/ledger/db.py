"""SQLite connections shared by the capital ledger and the fill journal (one file under the data home).

Short-lived connections, so several processes can share the file; WAL + ``synchronous=FULL`` (the WAL is
fsync'd at every commit: an acknowledged write survives kill -9 and power loss); writes take the write lock
up front (``BEGIN IMMEDIATE``) and roll back on any error.
"""

import sqlite3
from contextlib import contextmanager


def init(path, schema: str) -> None:
    """Create the file (and its folder) in WAL mode with ``schema`` (idempotent DDL)."""
    from pathlib import Path

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with connect(path) as con:
        con.execute("PRAGMA journal_mode=WAL")
        con.executescript(schema)


@contextmanager
def connect(path):
    con = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    try:
        con.execute("PRAGMA synchronous=FULL")
        con.row_factory = sqlite3.Row
        yield con
    finally:
        con.close()


@contextmanager
def write(path):
    with connect(path) as con:
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

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


class LedgerFileError(sqlite3.OperationalError):
    """A damaged / unopenable ledger file; the message names it. An OperationalError (so a DatabaseError and
    an sqlite3.Error): every existing handler still catches it."""


def _named(path, exc):
    if isinstance(exc, LedgerFileError) or type(exc) not in (sqlite3.DatabaseError, sqlite3.OperationalError):
        return exc  # constraint errors etc. are the caller's business; already named
    return LedgerFileError(f"ledger file {path}: {exc}")


@contextmanager
def connect(path):
    try:
        con = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    except sqlite3.Error as e:
        raise _named(path, e) from e
    try:
        con.execute("PRAGMA synchronous=FULL")
        con.row_factory = sqlite3.Row
        yield con
    except sqlite3.Error as e:
        named = _named(path, e)
        if named is e:
            raise
        raise named from e
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

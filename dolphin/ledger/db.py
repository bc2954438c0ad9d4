"""SQLite files DOLPHIN keeps (the capital ledger + fill journal, the published-record log, the embedded
feature store): connections and versioned schemas.

Short-lived connections, so several processes can share the file; WAL + ``synchronous=FULL`` (the WAL is
fsync'd at every commit: an acknowledged write survives kill -9 and power loss); writes take the write lock
up front (``BEGIN IMMEDIATE``) and roll back on any error.

Schema versions: each file's layout is a ``Schema``, an ordered list of migrations (step ``n`` takes the
file from version ``n`` to ``n + 1``; a step is an SQL script or a function of the connection). The version
a file is at is ``PRAGMA user_version`` (0: a file written before versioning, whatever tables it holds).
``init`` brings a file to the code's version when it opens it: the missing steps run in ONE transaction,
under the write lock (another process migrating at the same moment waits, then finds nothing to do), and
the result is checked against the layout the steps give an empty file before the new version is stamped.
A file at the code's version is not written to; a file NEWER than the code (a later DOLPHIN wrote it) is
refused before anything touches it (``SchemaVersionError``: this code does not know what the later
version means); a failing step rolls everything back (``MigrationError`` names the file and the step),
so the file stays exactly as it was.
"""

import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


class LedgerFileError(sqlite3.OperationalError):
    """A damaged / unopenable ledger file; the message names it. An OperationalError (so a DatabaseError and
    an sqlite3.Error): every existing handler still catches it."""


class SchemaVersionError(LedgerFileError):
    """The file's schema version is newer than this code knows; the file was not touched."""


class MigrationError(LedgerFileError):
    """A migration step failed (or left a layout other than the version's); rolled back, file unchanged."""


@dataclass(frozen=True)
class Migration:
    """One step: from version ``to - 1`` to ``to``. ``run``: an SQL script, or a function of the connection
    (inside the migration's transaction; it must not commit)."""

    to: int
    title: str
    run: str | Callable[[sqlite3.Connection], None]

    def apply(self, con) -> None:
        if callable(self.run):
            self.run(con)
        else:
            con.executescript(self.run)  # autocommit connection: no implicit COMMIT (see _migrate)


@dataclass(frozen=True)
class Schema:
    name: str  # what the file is, for messages: "ledger file <path>: ..."
    steps: tuple  # Migration, in order: steps[n] takes version n to n + 1

    def __post_init__(self):
        got = [m.to for m in self.steps]
        if got != list(range(1, len(got) + 1)):
            raise ValueError(f"{self.name} schema: migrations must go 1, 2, 3... in order, got {got}")

    @property
    def version(self) -> int:
        return len(self.steps)

    def layout(self) -> dict:
        """What the steps build on an empty database: {table: columns, index/trigger name: type}."""
        con = sqlite3.connect(":memory:", autocommit=True)
        try:
            con.execute("BEGIN")
            for m in self.steps:
                m.apply(con)
            return layout_of(con)
        finally:
            con.close()


def layout_of(con) -> dict:
    """Tables (with their columns: name, type, not null, default, primary key), indexes and triggers."""
    out = {}
    for kind, name in con.execute("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' "
                                  "AND type IN ('table', 'index', 'trigger') ORDER BY name"):
        if kind == "table":
            out[name] = tuple(tuple(r)[1:] for r in con.execute(f"PRAGMA table_info('{name}')"))
        else:
            out[name] = kind
    return out


def user_version(con) -> int:
    return int(con.execute("PRAGMA user_version").fetchone()[0])


def check_version(con, path, schema: Schema) -> int:
    """The file's version; ``SchemaVersionError`` when it is newer than ``schema`` (read-only check)."""
    v = user_version(con)
    if v > schema.version:
        raise SchemaVersionError(
            f"{schema.name} file {path}: schema version {v} is newer than this code knows (version "
            f"{schema.version}): it was written by a later DOLPHIN. Refused, the file is untouched; run the "
            f"DOLPHIN version that wrote it (or a later one)")
    return v


def init(path, schema: Schema, *, timeout: float = 30.0) -> None:
    """Create the file (and its folder) in WAL mode, or open it, at ``schema``'s version: migrated up from an
    older (or unversioned) file; refused when newer (module docstring)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with connect(path, timeout=timeout, what=schema.name) as con:
        if check_version(con, path, schema) == schema.version:
            return
        con.execute("PRAGMA journal_mode=WAL")  # before the transaction (it cannot change inside one)
        _migrate(con, path, schema)


def _migrate(con, path, schema: Schema) -> None:
    # autocommit=True: executescript must not COMMIT the migration's transaction half-way (it does under the
    # legacy transaction control); the transaction is ours, opened and closed explicitly below
    con.autocommit = True
    con.execute("BEGIN IMMEDIATE")
    try:
        start = check_version(con, path, schema)  # again under the write lock: another process may have migrated
        if start == schema.version:
            con.execute("COMMIT")
            return
        for m in schema.steps[start:]:
            try:
                m.apply(con)
            except Exception as e:
                raise MigrationError(
                    f"{schema.name} file {path}: migration {m.to - 1} -> {m.to} ({m.title}) failed: "
                    f"{type(e).__name__}: {e}. Rolled back: the file is unchanged (still version {start})") from e
        want, have = schema.layout(), layout_of(con)
        wrong = [f"{name}: {have.get(name, 'missing')!r}, expected {spec!r}"
                 for name, spec in want.items() if have.get(name) != spec]
        if wrong:  # e.g. an unversioned file whose tables have another shape than any DOLPHIN wrote
            raise MigrationError(
                f"{schema.name} file {path}: after migrating {start} -> {schema.version} the layout is not version "
                f"{schema.version}'s ({'; '.join(wrong)}). Rolled back: the file is unchanged (still version {start})")
        con.execute(f"PRAGMA user_version = {schema.version}")
        con.execute("COMMIT")
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise


def _named(path, exc, what="ledger"):
    if isinstance(exc, LedgerFileError) or type(exc) not in (sqlite3.DatabaseError, sqlite3.OperationalError):
        return exc  # constraint errors etc. are the caller's business; already named
    return LedgerFileError(f"{what} file {path}: {exc}")


@contextmanager
def connect(path, timeout: float = 30.0, what: str = "ledger"):
    """``what``: the file's name in error messages ("ledger file <path>: ...")."""
    try:
        con = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    except sqlite3.Error as e:
        raise _named(path, e, what) from e
    try:
        con.execute("PRAGMA synchronous=FULL")
        con.row_factory = sqlite3.Row
        yield con
    except sqlite3.Error as e:
        named = _named(path, e, what)
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

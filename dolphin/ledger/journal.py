"""Fill journal: every fill (and funding charge) of a trading session, durable before it is acknowledged.

The runtime (paper replay, sandbox, live) writes here as fills happen; the daily ``CapitalLedger`` chain
(``sqlite.py``) is what the Dagster paper days write. Both live in the same SQLite file under the data home.

Rules:

- **Durable.** One transaction per event, SQLite WAL with ``synchronous=FULL``: the WAL is fsync'd at
  every commit, so an event whose ``append`` returned survives ``kill -9`` and power loss.
- **Append-only.** Triggers refuse UPDATE and DELETE on ``journal_events``.
- **Stable ids, idempotent.** Every event has an id that a deterministic re-run (or an exchange
  re-delivering a fill) reproduces: the order's client id + the venue's trade id (fills), the bar
  (funding). Appending an id that is already there is a no-op when the content is identical
  (``"duplicate"``), and an error naming the id and the differing fields when it is not
  (``JournalConflictError``): a restarted session that diverges from what it acknowledged stops.
- **Sessions.** A session (strategy, session id, e.g. the UTC day) opens with a capital (refused if a
  re-open states a different one) and closes with its closing capital, peak and drawdown; closing again
  with the same values is a no-op, with different ones an error.
- **Restore.** ``restore`` rebuilds capital (the last event's ``capital_after``) and open positions (net
  signed quantity and average entry price per symbol, from the fills) of a session: what a restarted
  runtime continues from and checks its re-run against.
"""

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from dolphin.ledger import db
from dolphin.ledger.schema import LEDGER


_CONTENT = ("session", "kind", "ts_ns", "symbol", "side", "role", "qty", "price", "fee", "amount", "liquidity",
            "capital_after")


class JournalError(RuntimeError):
    pass


class JournalConflictError(JournalError):
    """An event id or a session is already recorded with different content."""


@dataclass(frozen=True)
class JournalEvent:
    event_id: str
    session: str
    kind: str  # fill | funding
    ts_ns: int
    symbol: str
    side: str  # BUY | SELL
    role: str  # entry | tp | exit | funding
    qty: float
    price: float
    fee: float
    capital_after: float
    amount: float = 0.0
    liquidity: str = ""

    def __post_init__(self):
        if self.kind not in ("fill", "funding"):
            raise JournalError(f"event {self.event_id}: kind {self.kind!r} is not fill/funding")
        if self.side not in ("BUY", "SELL"):
            raise JournalError(f"event {self.event_id}: side {self.side!r} is not BUY/SELL")
        for name in ("qty", "price", "fee", "amount", "capital_after"):
            if not math.isfinite(float(getattr(self, name))):
                raise JournalError(f"event {self.event_id}: {name} is not finite ({getattr(self, name)!r})")
        if self.kind == "fill" and (self.qty <= 0 or self.price <= 0):
            raise JournalError(f"event {self.event_id}: a fill needs qty > 0 and price > 0 "
                               f"(qty {self.qty}, price {self.price})")


@dataclass(frozen=True)
class Position:
    symbol: str
    qty: float  # signed: > 0 long, < 0 short
    avg_price: float


@dataclass(frozen=True)
class Restored:
    strategy: str
    session: str
    status: str  # open | closed | new
    runs: int
    opening_capital: float
    capital: float
    positions: dict = field(default_factory=dict)  # symbol -> Position (flat symbols omitted)
    events: tuple = ()  # JournalEvent, append order

    @property
    def n_fills(self) -> int:
        return sum(e.kind == "fill" for e in self.events)

    def describe(self) -> str:
        pos = ", ".join(f"{p.symbol} {p.qty:+.8g} @ {p.avg_price:.10g}" for p in self.positions.values()) or "flat"
        return (f"{self.strategy} session {self.session} ({self.status}, run {self.runs}): capital "
                f"{self.capital:,.2f} after {self.n_fills} fill(s); positions: {pos}")


def positions_from(events) -> dict:
    """Net position per symbol from fills (average price of the open quantity; a fill through zero
    opens the remainder at its price)."""
    book: dict = {}
    for e in events:
        if e.kind != "fill":
            continue
        q0, px0 = book.get(e.symbol, (0.0, 0.0))
        dq = e.qty if e.side == "BUY" else -e.qty
        q1 = q0 + dq
        if abs(q1) <= 1e-12 * max(abs(q0), abs(dq)):
            q1, px1 = 0.0, 0.0
        elif q0 == 0.0 or (q0 > 0) == (dq > 0):
            px1 = (abs(q0) * px0 + abs(dq) * e.price) / abs(q1)  # adding
        elif (q1 > 0) == (q0 > 0):
            px1 = px0  # reducing keeps the entry price
        else:
            px1 = e.price  # flipped through zero
        book[e.symbol] = (q1, px1)
    return {s: Position(s, q, px) for s, (q, px) in book.items() if q != 0.0}


class FillJournal:
    def __init__(self, path):
        self.path = Path(path)
        db.init(self.path, LEDGER)

    def _connect(self):
        return db.connect(self.path)

    def _write(self):
        return db.write(self.path)

    # ------------------------------------------------------------------ sessions

    def open_session(self, strategy: str, session: str, *, mode: str, opening_capital: float) -> Restored:
        """Start (or restart) a session; returns what the journal already holds for it."""
        now = _now()
        with self._write() as con:
            row = con.execute("SELECT * FROM journal_sessions WHERE strategy = ? AND session = ?",
                              (strategy, session)).fetchone()
            if row is None:
                con.execute("INSERT INTO journal_sessions (strategy, session, mode, opening_capital, opened_at, "
                            "status) VALUES (?, ?, ?, ?, ?, 'open')",
                            (strategy, session, mode, float(opening_capital), now))
            else:
                if row["opening_capital"] != float(opening_capital) or row["mode"] != mode:
                    raise JournalConflictError(
                        f"{strategy} session {session}: already opened as {row['mode']} with capital "
                        f"{row['opening_capital']!r}; a restart must continue it with the same "
                        f"(got {mode} with {float(opening_capital)!r})")
                con.execute("UPDATE journal_sessions SET runs = runs + 1 WHERE strategy = ? AND session = ?",
                            (strategy, session))
        return self.restore(strategy, session)

    def close_session(self, strategy: str, session: str, *, closing_capital: float) -> Restored:
        """Close with the session's final capital (must equal the journal's last ``capital_after``);
        peak and drawdown run over the strategy's closed sessions and this one's events."""
        with self._write() as con:
            row = self._session(con, strategy, session)
            events = self._events(con, strategy, session)
            last = events[-1].capital_after if events else row["opening_capital"]
            if float(closing_capital) != last:
                raise JournalConflictError(
                    f"{strategy} session {session}: closing capital {float(closing_capital)!r} is not the "
                    f"journal's last capital {last!r}")
            prior = con.execute("SELECT MAX(peak) FROM journal_sessions WHERE strategy = ? AND status = 'closed' "
                                "AND session < ?", (strategy, session)).fetchone()[0]
            peak = max([row["opening_capital"], *(e.capital_after for e in events)]
                       + ([prior] if prior is not None else []))
            dd = 1.0 - float(closing_capital) / peak if peak > 0 else 0.0
            if row["status"] == "closed":
                if (row["closing_capital"], row["n_events"]) != (float(closing_capital), len(events)):
                    raise JournalConflictError(
                        f"{strategy} session {session}: already closed with capital {row['closing_capital']!r} "
                        f"after {row['n_events']} events")
            else:
                con.execute("UPDATE journal_sessions SET status = 'closed', closing_capital = ?, peak = ?, "
                            "drawdown = ?, n_events = ?, closed_at = ? WHERE strategy = ? AND session = ?",
                            (float(closing_capital), peak, dd, len(events), _now(), strategy, session))
        return self.restore(strategy, session)

    # ------------------------------------------------------------------ events

    def append(self, strategy: str, event: JournalEvent) -> str:
        """Durably record ``event``: ``"new"``, or ``"duplicate"`` if the same id is already recorded
        with the same content; ``JournalConflictError`` if with different content."""
        with self._write() as con:
            row = self._session(con, strategy, event.session)
            old = con.execute("SELECT * FROM journal_events WHERE strategy = ? AND event_id = ?",
                              (strategy, event.event_id)).fetchone()
            if old is not None:
                new = asdict(event)
                diff = [f"{k}: recorded {old[k]!r}, now {new[k]!r}" for k in _CONTENT if old[k] != new[k]]
                if diff:
                    raise JournalConflictError(
                        f"{strategy} event {event.event_id} is already in the journal with different content "
                        f"({'; '.join(diff)}): the restarted session diverged from what it acknowledged")
                return "duplicate"
            if row["status"] != "open":
                raise JournalError(f"{strategy} session {event.session} is closed: new event {event.event_id} refused")
            e = asdict(event)
            con.execute(f"INSERT INTO journal_events (strategy, event_id, {', '.join(_CONTENT)}, recorded_at) "
                        f"VALUES (?, ?, {', '.join('?' * len(_CONTENT))}, ?)",
                        (strategy, event.event_id, *(e[k] for k in _CONTENT), _now()))
            return "new"

    def record_entry(self, strategy: str, session: str, order_id: str, symbol: str, ts_ns: int,
                     context: dict) -> str:
        """Durably record the decision behind entry order ``order_id`` (before the order is sent): ``"new"``,
        ``"duplicate"`` (same content), ``JournalConflictError`` (different content)."""
        ctx = json.dumps(context, sort_keys=True, allow_nan=False)
        with self._write() as con:
            self._session(con, strategy, session)
            old = con.execute("SELECT session, symbol, ts_ns, context FROM journal_entries WHERE strategy = ? "
                              "AND order_id = ?", (strategy, order_id)).fetchone()
            if old is not None:
                if tuple(old) != (session, symbol, int(ts_ns), ctx):
                    raise JournalConflictError(f"{strategy} entry order {order_id} is already in the journal with "
                                               f"different content ({tuple(old)!r}, now {(session, symbol, ts_ns, ctx)!r})")
                return "duplicate"
            con.execute("INSERT INTO journal_entries (strategy, session, order_id, symbol, ts_ns, context, recorded_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)", (strategy, session, order_id, symbol, int(ts_ns), ctx, _now()))
            return "new"

    def entries(self, strategy: str, symbol: str | None = None) -> list:
        """Entry decisions, oldest first: dicts with order_id, session, symbol, ts_ns and the context's keys."""
        q, args = "SELECT * FROM journal_entries WHERE strategy = ?", [strategy]
        if symbol is not None:
            q, args = q + " AND symbol = ?", args + [symbol]
        with self._connect() as con:
            rows = con.execute(q + " ORDER BY ts_ns, order_id", args).fetchall()
        return [{**json.loads(r["context"]), "order_id": r["order_id"], "session": r["session"],
                 "symbol": r["symbol"], "ts_ns": r["ts_ns"]} for r in rows]

    def events(self, strategy: str, session: str | None = None) -> list:
        with self._connect() as con:
            return self._events(con, strategy, session)

    def restore(self, strategy: str, session: str) -> Restored:
        with self._connect() as con:
            row = con.execute("SELECT * FROM journal_sessions WHERE strategy = ? AND session = ?",
                              (strategy, session)).fetchone()
            if row is None:
                return Restored(strategy, session, "new", 0, float("nan"), float("nan"))
            events = self._events(con, strategy, session)
        cap = events[-1].capital_after if events else row["opening_capital"]
        return Restored(strategy, session, row["status"], row["runs"], row["opening_capital"], cap,
                        positions_from(events), tuple(events))

    def sessions(self, strategy: str) -> list:
        with self._connect() as con:
            return [dict(r) for r in con.execute(
                "SELECT * FROM journal_sessions WHERE strategy = ? ORDER BY session", (strategy,))]

    @staticmethod
    def _session(con, strategy, session):
        row = con.execute("SELECT * FROM journal_sessions WHERE strategy = ? AND session = ?",
                          (strategy, session)).fetchone()
        if row is None:
            raise JournalError(f"{strategy} session {session} was never opened")
        return row

    @staticmethod
    def _events(con, strategy, session=None) -> list:
        q, args = "SELECT * FROM journal_events WHERE strategy = ?", [strategy]
        if session is not None:
            q, args = q + " AND session = ?", args + [session]
        return [JournalEvent(event_id=r["event_id"], **{k: r[k] for k in _CONTENT})
                for r in con.execute(q + " ORDER BY seq", args)]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")

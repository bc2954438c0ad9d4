"""The runtime's durable ledger: fills go to the journal (the truth) first, then to the store (hot copy).

``LedgerSink`` is what ``DolphinStrategy`` calls after every fill and funding charge. On a (re)start it
opens the session in ``dolphin.ledger.journal.FillJournal`` and restores what was acknowledged before:
capital and open positions. A paper replay cannot hand a simulated venue back its positions, so a
restarted replay re-simulates the session from its opening capital; every event it reproduces must be
the journal's next acknowledged event (same id, same content: ``JournalConflictError`` otherwise), is
counted as confirmed and not written twice; events after the last acknowledged one are appended.

Store (hot copy): after each event the strategy's capital and positions are published to
``DOLPHIN_STATE_<STRATEGY>`` under ``runtime_<mode>``. Store unavailable: the journal is still written, the
session continues, and the gap (first/last failing event, count) is kept and reported; ``repopulate``
writes the journal's state to the store again when it is back. A running session does that by itself:
``republish_if_stale`` (called every few seconds by ``runtime.risk.StoreRiskSource.attach``) re-creates the
key when it is missing (a cluster restart loses every key), malformed, or holds fewer of this session's
events than the journal acknowledged (e.g. after a publish failed).
"""

import hashlib
import json
import logging

from dolphin.ledger.journal import FillJournal, JournalConflictError, JournalEvent, Restored, positions_from
from dolphin.store import Record, StoreUnavailableError, iso_utc, state_map

log = logging.getLogger("dolphin.runtime.ledger")


def session_id(mode: str, data: str, start: str, end: str, cfg, risk: str = "defaults") -> str:
    """Same command, same session (a restart continues it); another config, data set or risk source (other
    inputs, other trades), another session. Default risk keeps the ids sessions had before the option."""
    h = hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"{mode}:{data}:{start}..{end}:{cfg.name}-{h}" + ("" if risk == "defaults" else f":risk-{risk}")


class LedgerSink:
    def __init__(self, journal: FillJournal, strategy: str, session: str, *, mode: str, opening_capital: float,
                 store=None, progress=None, resimulate: bool = True):
        self.journal, self.strategy, self.session, self.mode = journal, strategy, session, mode
        self.store = store
        self.progress = progress  # optional text stream: one line per journal write (crash tests follow it)
        self.restored: Restored = journal.open_session(strategy, session, mode=mode, opening_capital=opening_capital)
        # re-simulating: acknowledged events must come again, in order; continuing: they are history
        self._resimulate = resimulate
        self._expected = list(self.restored.events) if resimulate else []
        self._events = [] if resimulate else list(self.restored.events)  # the session's state so far
        self.confirmed = 0
        self.appended = 0
        self.store_gaps: list = []  # (event_id, error text)
        self.closed: Restored | None = None
        r = self.restored
        # the hot copy this sink last published (or would have): the journal's state of the session so far
        self._last_rec = state_record(strategy, session, mode, r.capital, r.events, r.status,
                                      r.events[-1].ts_ns // 1_000_000 if r.events else None)

    @property
    def restart(self) -> bool:
        return self.restored.runs > 1

    def record(self, kind, event_id, ts_ns, symbol, side, role, qty, price, fee, amount, liquidity,
               capital_after) -> None:
        ev = JournalEvent(event_id=event_id, session=self.session, kind=kind, ts_ns=int(ts_ns), symbol=symbol,
                          side=side, role=role, qty=float(qty), price=float(price), fee=float(fee),
                          amount=float(amount), liquidity=liquidity, capital_after=float(capital_after))
        n = self.confirmed + self.appended
        if n < len(self._expected) and self._expected[n].event_id != ev.event_id:
            raise JournalConflictError(
                f"{self.strategy} session {self.session}: event #{n + 1} of the re-run is {ev.event_id}, the "
                f"journal acknowledged {self._expected[n].event_id}: the restarted session diverged")
        status = self.journal.append(self.strategy, ev)
        if status == "duplicate":
            self.confirmed += 1
        else:
            self.appended += 1
        if status == "new" or self._resimulate:  # continuing, a duplicate is already in the state
            self._events.append(ev)
        if self.progress is not None:
            print(f"journal {status} {event_id} capital {capital_after!r}", file=self.progress, flush=True)
        self._publish(ev.event_id, ev.ts_ns // 1_000_000, capital_after, "open")

    def record_entry(self, order_id: str, symbol: str, ts_ns: int, context: dict) -> None:
        """The decision behind an entry order, journaled before the order is sent (restart adoption reads it)."""
        self.journal.record_entry(self.strategy, self.session, order_id, symbol, int(ts_ns), context)

    def close(self, capital: float) -> Restored:
        if self.confirmed < len(self._expected):  # appends only follow a complete re-confirmation (record)
            raise JournalConflictError(
                f"{self.strategy} session {self.session}: the journal acknowledged {len(self._expected)} events "
                f"before the restart, the re-run reproduced {self.confirmed} (first missing: "
                f"{self._expected[self.confirmed].event_id})")
        self.closed = self.journal.close_session(self.strategy, self.session, closing_capital=capital)
        last = self.closed.events[-1].ts_ns // 1_000_000 if self.closed.events else None
        self._publish("close", last, capital, "closed")
        return self.closed

    def report(self) -> list:
        r = self.restored
        lines = []
        if self.restart:
            lines.append(f"restart {r.runs - 1}: restored from the ledger: {r.describe()}; re-run confirmed "
                         f"{self.confirmed} acknowledged event(s), appended {self.appended}")
        else:
            lines.append(f"ledger: session {self.session}: {self.appended} event(s) journaled")
        if self.store_gaps:
            lines.append(f"feature store unavailable for {len(self.store_gaps)} publish(es) (first at "
                         f"{self.store_gaps[0][0]}, last at {self.store_gaps[-1][0]}: {self.store_gaps[-1][1]}); "
                         f"the journal holds everything: run `repopulate` when the store is back")
        return lines

    def _publish(self, event_id: str, ts_ms, capital: float, status: str) -> None:
        if self.store is None:
            return
        rec = state_record(self.strategy, self.session, self.mode, capital, self._events, status, ts_ms)
        self._last_rec = rec
        try:
            self.store.put(state_map(self.strategy), f"runtime_{self.mode}", rec)
        except StoreUnavailableError as e:
            if not self.store_gaps:
                log.warning("feature store unavailable at %s (%s): the ledger is still written; continuing",
                            event_id, e)
            self.store_gaps.append((event_id, str(e)))

    def republish_if_stale(self) -> bool:
        """Write this session's state again if the store lost it, or holds it malformed or behind the journal
        (fewer events). Another session's state there is left alone (a later run owns the key now).
        Compare-and-set: it never replaces a newer state written meanwhile by ``record``. Returns whether it
        wrote; ``StoreUnavailableError`` propagates (the caller retries later)."""
        if self.store is None:
            return False
        rec = self._last_rec
        wrote = []

        def stale(cur):
            v = cur.value if cur is not None else None
            if v is not None and (v.get("session") != self.session or not isinstance(v.get("events"), int)
                                  or v["events"] >= rec.value["events"]):
                return None
            wrote.append(cur)
            return rec

        self.store.update(state_map(self.strategy), f"runtime_{self.mode}", stale)
        if wrote:
            why = "missing (or malformed)" if wrote[-1] is None else "behind the journal"
            log.warning("%s/runtime_%s was %s: republished session %s from the journal (%d event(s), capital %.2f)",
                        state_map(self.strategy), self.mode, why, self.session, rec.value["events"],
                        rec.value["capital"])
        return bool(wrote)


def state_record(strategy: str, session: str, mode: str, capital: float, events, status: str, ts_ms) -> Record:
    """The hot copy of a session's state: capital and the positions its events leave."""
    pos = {p.symbol: {"qty": p.qty, "avg_price": p.avg_price} for p in positions_from(events).values()}
    return Record({"strategy": strategy, "session": session, "mode": mode, "capital": capital, "positions": pos,
                   "events": len(events), "status": status}, iso_utc(ts_ms) if ts_ms is not None else iso_utc())


def repopulate(journal: FillJournal, store, strategy: str, session: str, mode: str) -> Record:
    """Write the journal's state of a session to the store (after a store outage or on start-up)."""
    r = journal.restore(strategy, session)
    rec = state_record(strategy, session, mode, r.capital, r.events, r.status,
                       r.events[-1].ts_ns // 1_000_000 if r.events else None)
    store.put(state_map(strategy), f"runtime_{mode}", rec)
    return rec

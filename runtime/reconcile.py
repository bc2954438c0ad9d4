"""Restart reconciliation: the journal (DOLPHIN's truth) against the venue, before a sandbox/live node starts.

A runtime killed mid-day (SIGKILL, power loss) leaves the journal with what it acknowledged and the venue with
what really happened meanwhile. Before the restarted node trades, ``reconcile`` makes the two agree or refuses:

live (the venue holds the account; Binance USD-M signed REST, the same base URL and credentials as the node):
1. fills at the venue the journal does not hold (the take-profit filled while the runtime was down, an entry
   that completed after the kill) are read from ``userTrades`` (+ ``allOrders`` for each order's client id,
   type and reduce-only flag) and journaled under the ids the running strategy would have used
   (``<client order id>:<trade id>``), with their commission and realised PnL, so nothing is lost or doubled;
2. then the journal's net position per symbol must equal the venue's ``positionRisk``; any difference (a
   position DOLPHIN did not open, a quantity that does not match) refuses the start, naming both sides;
3. open non-reduce-only orders of DOLPHIN's symbols (an entry in flight at the kill) are cancelled: the
   strategy decides again at the next bar close. A resting reduce-only LIMIT of the open position is its
   take-profit: kept, and handed to the strategy, which claims it through Nautilus's own reconciliation
   (``external_order_claims``); no take-profit at the venue -> the strategy places one.
The open position is ADOPTED: the strategy continues the trade with the journal's entry (price, quantity,
first fill time -> the max-hold clock) and the decision context journaled when the entry was sent (posture and
ACB boost at entry, read by the posture-change and adverse-ACB exits).

sandbox (Nautilus simulates the venue in-process, so a killed process loses its positions and orders): the
journal's open position is adopted the same way and re-created in the simulated exchange by a ``restore``
market order at the first bar close after the restart (neither journaled nor booked: the trade keeps its
journaled entry), then its take-profit is placed.
"""

import hashlib
import hmac
import json
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

log = logging.getLogger("dolphin.runtime.reconcile")
_QTY_TOL = 1e-9


class ReconcileError(RuntimeError):
    """The journal and the venue disagree in a way DOLPHIN will not resolve by itself (the message says how)."""


@dataclass(frozen=True)
class Adopted:
    """An open position the restarted strategy continues (``DolphinStrategy(adopt=...)``)."""

    symbol: str
    side: int  # -1 short, +1 long
    qty: float
    entry_px: float
    entry_fill_ns: int
    fees: float  # entry commission paid
    context: dict  # the journaled entry decision (posture, boost, leverage, target_notional, ...)
    tp_order_id: str | None = None  # the venue's resting take-profit (live), claimed by the strategy
    restore: bool = False  # sandbox: re-create the position in the simulated exchange first

    def describe(self) -> str:
        return (f"{self.symbol} {'short' if self.side < 0 else 'long'} {self.qty:g} @ {self.entry_px:.10g} "
                f"(entered {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(self.entry_fill_ns / 1e9))} UTC; "
                + ("re-created in the sandbox at the first bar close" if self.restore else
                   f"take-profit {'kept: ' + self.tp_order_id if self.tp_order_id else 'placed anew'}") + ")")


@dataclass
class Reconciled:
    adopt: Adopted | None = None
    journaled: list = field(default_factory=list)  # JournalEvent ids appended from the venue's trades
    cancelled: list = field(default_factory=list)  # (symbol, client order id) cancelled at the venue
    lines: list = field(default_factory=list)  # what was done, for the operator


class VenueAccount:
    """Signed Binance USD-M futures REST (HMAC-SHA256 over the query, ``X-MBX-APIKEY``); the key and secret are
    held here only, never logged or put into messages."""

    def __init__(self, http_url: str, key: str, secret: str, *, recv_window_ms: int = 10_000, timeout_s: float = 10.0):
        self.base = http_url.rstrip("/")
        self._key, self._secret = key, secret
        self.recv_window_ms, self.timeout_s = int(recv_window_ms), float(timeout_s)

    @classmethod
    def from_env(cls, http_url: str, testnet: bool, environ=None) -> "VenueAccount":
        from runtime.nodes import credential_env_vars

        env = os.environ if environ is None else environ
        k, s = credential_env_vars(testnet)
        if not (env.get(k, "").strip() and env.get(s, "").strip()):
            raise ReconcileError(f"cannot reconcile with the venue: {k} / {s} not set")
        return cls(http_url, env[k].strip(), env[s].strip())

    def _call(self, method: str, path: str, params: dict):
        q = dict(params, timestamp=int(time.time() * 1000), recvWindow=self.recv_window_ms)
        qs = urllib.parse.urlencode(q)
        qs += "&signature=" + hmac.new(self._secret.encode(), qs.encode(), hashlib.sha256).hexdigest()
        req = urllib.request.Request(f"{self.base}{path}?{qs}", method=method, headers={"X-MBX-APIKEY": self._key})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
                return json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            body = e.read().decode(errors="replace")[:300]
            raise ReconcileError(f"venue {self.base}: {method} {path} -> HTTP {e.code} {body}") from None
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise ReconcileError(f"venue {self.base}: {method} {path} failed: {e}") from None

    def positions(self) -> dict:
        """symbol -> (signed quantity, entry price), one-way mode; flat symbols omitted."""
        out = {}
        for r in self._call("GET", "/fapi/v2/positionRisk", {}):
            amt = float(r["positionAmt"])
            if amt != 0.0:
                out[r["symbol"]] = (amt, float(r["entryPrice"]))
        return out

    def open_orders(self, symbol: str) -> list:
        return self._call("GET", "/fapi/v1/openOrders", {"symbol": symbol})

    def orders(self, symbol: str, start_ms: int) -> list:
        return self._call("GET", "/fapi/v1/allOrders", {"symbol": symbol, "startTime": int(start_ms), "limit": 1000})

    def trades(self, symbol: str, start_ms: int) -> list:
        return self._call("GET", "/fapi/v1/userTrades", {"symbol": symbol, "startTime": int(start_ms), "limit": 1000})

    def cancel(self, symbol: str, client_order_id: str) -> None:
        self._call("DELETE", "/fapi/v1/order", {"symbol": symbol, "origClientOrderId": client_order_id})


def _fill_role(order: dict) -> str:
    if str(order.get("reduceOnly")).lower() != "true":
        return "entry"
    return "tp" if order.get("type") == "LIMIT" else "exit"


def _adopted(journal, strategy: str, symbol: str, events, *, tp_order_id=None, restore=False) -> Adopted:
    """The open position of ``symbol`` from the journal's fills (the fills since it was last flat) and the
    entry decision journaled for its first entry order."""
    from dolphin.ledger.journal import positions_from

    fills = [e for e in events if e.kind == "fill" and e.symbol == symbol]
    start = 0
    for k in range(len(fills)):
        if symbol not in positions_from(fills[:k + 1]):
            start = k + 1  # flat after fill k: the open position starts after it
    opening = fills[start:]
    pos = positions_from(opening)[symbol]
    side = 1 if pos.qty > 0 else -1
    first = opening[0]
    order_id = first.event_id.rsplit(":", 1)[0]
    ctx = next((c for c in journal.entries(strategy, symbol) if c["order_id"] == order_id), None)
    if ctx is None:
        raise ReconcileError(f"{strategy}: open {symbol} position {pos.qty:+g} @ {pos.avg_price:.10g} has no "
                             f"journaled entry decision for order {order_id}: close it at the venue by hand, or "
                             "restart flat")
    fees = sum(e.fee for e in opening if (e.side == "BUY") == (side > 0))
    return Adopted(symbol, side, abs(pos.qty), pos.avg_price, first.ts_ns, fees, ctx, tp_order_id, restore)


def reconcile(sink, symbols, *, account: VenueAccount | None, strategy_prefix: str = "O-") -> Reconciled:
    """Make ``sink``'s session (a ``runtime.ledger.LedgerSink``, opened) agree with the venue, or raise
    ``ReconcileError``. ``account`` None: sandbox (nothing outlives the process but the journal)."""
    journal, strategy = sink.journal, sink.strategy
    out = Reconciled()
    events = list(sink.restored.events)
    positions = sink.restored.positions
    if account is None:
        if positions:
            (sym, _), *more = positions.items()
            if more:
                raise ReconcileError(f"{strategy}: the journal holds {len(positions)} open positions; the strategy "
                                     "trades one at a time")
            out.adopt = _adopted(journal, strategy, sym, events, restore=True)
            out.lines.append(f"sandbox restart: adopting {out.adopt.describe()}")
        return out

    venue_pos = account.positions()
    for sym in symbols:
        mine = [e for e in events if e.symbol == sym and e.kind == "fill"]
        if sym not in positions and sym not in venue_pos:
            continue
        since = (mine[-1].ts_ns // 1_000_000 - 60_000) if mine else int(time.time() * 1000) - 7 * 86_400_000
        known = {e.event_id.rsplit(":", 1)[-1] for e in mine}
        new = [t for t in account.trades(sym, since) if str(t["id"]) not in known]
        if new:
            orders = {o["orderId"]: o for o in account.orders(sym, min(int(t["time"]) for t in new) - 86_400_000)}
            for t in sorted(new, key=lambda t: (int(t["time"]), int(t["id"]))):
                o = orders.get(t["orderId"])
                if o is None or not str(o.get("clientOrderId", "")).startswith(strategy_prefix):
                    continue  # not DOLPHIN's order: the position check below decides
                ev_id = _journal_venue_fill(sink, t, o)
                out.journaled.append(ev_id)
                out.lines.append(f"journaled a fill made while the runtime was down: {ev_id} {t['side']} "
                                 f"{t['qty']} {sym} @ {t['price']} ({_fill_role(o)})")
    positions = sink.journal.restore(strategy, sink.session).positions if out.journaled else positions
    diff = []
    for sym in sorted(set(positions) | set(venue_pos)):
        j = positions[sym].qty if sym in positions else 0.0
        v = venue_pos[sym][0] if sym in venue_pos else 0.0
        if abs(j - v) > _QTY_TOL * max(1.0, abs(j), abs(v)):
            diff.append(f"{sym}: journal {j:+g}, venue {v:+g}")
    if diff:
        raise ReconcileError(f"{strategy}: the journal and the venue disagree ({'; '.join(diff)}): close or confirm "
                             "the position at the venue by hand, then restart")
    if len(positions) > 1:
        raise ReconcileError(f"{strategy}: {len(positions)} open positions; the strategy trades one at a time")
    tp = None
    for sym in symbols:
        for o in account.open_orders(sym):
            cid = str(o.get("clientOrderId", ""))
            keep = (sym in positions and tp is None and o.get("type") == "LIMIT"
                    and str(o.get("reduceOnly")).lower() == "true" and cid.startswith(strategy_prefix)
                    and abs(float(o["origQty"]) - abs(positions[sym].qty)) <= _QTY_TOL * abs(positions[sym].qty)
                    and (o["side"] == "BUY") == (positions[sym].qty < 0))
            if keep:
                tp = cid
            elif cid.startswith(strategy_prefix):
                account.cancel(sym, cid)
                out.cancelled.append((sym, cid))
                out.lines.append(f"cancelled {sym} {o['side']} {o['type']} {cid} (in flight at the restart; the "
                                 "strategy decides again at the next bar close)")
            else:
                out.lines.append(f"left {sym} order {cid} alone: not DOLPHIN's")
    if positions:
        sym = next(iter(positions))
        out.adopt = _adopted(journal, strategy, sym, journal.restore(strategy, sink.session).events, tp_order_id=tp)
        out.lines.append(f"adopting {out.adopt.describe()}")
    return out


def _journal_venue_fill(sink, t: dict, order: dict) -> str:
    """Journal one venue trade (Binance ``userTrades`` row) under the strategy's id for it; capital after = the
    session's capital - commission + the realised PnL Binance reports for the trade."""
    ev_id = f"{order['clientOrderId']}:{t['id']}"
    capital = sink.journal.restore(sink.strategy, sink.session).capital
    fee = float(t.get("commission", 0.0)) if t.get("commissionAsset", "USDT") == "USDT" else 0.0
    after = capital - fee + float(t.get("realizedPnl", 0.0))
    sink.record("fill", ev_id, int(t["time"]) * 1_000_000, t["symbol"], t["side"], _fill_role(order),
                float(t["qty"]), float(t["price"]), fee, 0.0, "MAKER" if t.get("maker") else "TAKER", after)
    return ev_id

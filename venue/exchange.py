"""Orders, fills, positions, fees and funding of the local venue (one USDT account, one-way mode).

Fill rule = the backtest kernel's (dolphin/engine/kernel.py, step 1 and the resting take-profit):
- an order accepted while bar t is in progress (after bar t-1 closed) trades first in bar t;
- MARKET fills at once at open[t] x (1 +/- slippage) against the taker (taker fee);
- LIMIT marketable at open[t] (buy: open <= price, sell: open >= price) fills at once at open[t], taker fee,
  no slippage (GTX/post-only: EXPIRED instead, as Binance does); otherwise it rests and fills completely at
  the close of a bar that trades THROUGH its price (buy: low < price, sell: high > price; touching is not
  enough), at its price or the better open when the bar opened beyond it, maker fee;
- funding at a recorded funding time F (charged in the bar opening at F, as the kernel) on a position opened
  before F and still open after the fills at open(F): amount = positionAmt x rate x open(F), longs pay.
Cross margin accounting: margin = notional / leverage, no liquidation (see README: not imitated).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from venue.market import MIN_NOTIONAL, Market

log = logging.getLogger("venue")

ASSET = "USDT"


class VenueError(Exception):
    """A Binance error response: {"code": code, "msg": msg} with HTTP ``status``."""

    def __init__(self, code: int, msg: str, status: int = 400):
        super().__init__(msg)
        self.code, self.msg, self.status = code, msg, status


def mandatory(name: str) -> VenueError:
    return VenueError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


@dataclass
class Order:
    orderId: int
    symbol: str
    clientOrderId: str
    side: str
    type: str
    timeInForce: str
    origQty: float
    price: float
    reduceOnly: bool
    time: int
    first_bar: int  # bar index in which the order trades first
    status: str = "NEW"
    executedQty: float = 0.0
    cumQuote: float = 0.0
    updateTime: int = 0
    goodTillDate: int = 0

    @property
    def sign(self) -> int:
        return 1 if self.side == "BUY" else -1

    @property
    def is_open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")


@dataclass
class Position:
    amt: float = 0.0
    entry: float = 0.0
    opened_at: int = 0  # venue ms when the position last went from flat to open
    realized: float = 0.0  # accumulated realized pnl (before fees), Binance's "cr"
    leverage: int = 20
    margin_type: str = "CROSSED"
    update_time: int = 0


@dataclass
class Account:
    wallet: float
    positions: dict = field(default_factory=dict)
    orders: dict = field(default_factory=dict)
    trades: list = field(default_factory=list)
    next_order_id: int = 1_000_001
    next_trade_id: int = 5_000_001
    update_time: int = 0


class Exchange:
    """The matching and accounting engine. ``emit(event)`` receives every user-data event (a dict)."""

    def __init__(self, market: Market, *, capital: float = 25_000.0, maker_fee: float = 0.0002,
                 taker_fee: float = 0.0005, slippage_bps: float = 2.0, leverage: int = 20,
                 state_file: str | os.PathLike | None = None):
        self.m = market
        self.maker_fee, self.taker_fee = maker_fee, taker_fee
        self.slip = slippage_bps * 1e-4
        self.default_leverage = leverage
        self.acct = Account(wallet=capital)
        self.emit = lambda event: None
        self.state_file = Path(state_file) if state_file else None
        self.fraction = lambda: 0.0  # elapsed fraction of the bar in progress (the replay loop sets it)
        if self.state_file and self.state_file.exists():
            self._load()

    # ------------------------------------------------------------------ helpers
    def now(self) -> int:
        return self.m.clock_ms(self.fraction())

    def pos(self, sym: str) -> Position:
        p = self.acct.positions.get(sym)
        if p is None:
            p = self.acct.positions[sym] = Position(leverage=self.default_leverage)
        return p

    def mark(self, sym: str) -> float:
        return float(self.m.close[max(self.m.cur, 0), self.m.index[sym]])

    def unrealized(self, sym: str) -> float:
        p = self.acct.positions.get(sym)
        return 0.0 if p is None or p.amt == 0 else p.amt * (self.mark(sym) - p.entry)

    def position_margin(self, sym: str) -> float:
        p = self.acct.positions.get(sym)
        return 0.0 if p is None or p.amt == 0 else abs(p.amt) * self.mark(sym) / p.leverage

    def order_margin(self) -> float:
        tot = 0.0
        for o in self.acct.orders.values():
            if o.is_open and not o.reduceOnly:
                tot += (o.origQty - o.executedQty) * o.price / self.pos(o.symbol).leverage
        return tot

    def totals(self) -> dict:
        upnl = sum(self.unrealized(s) for s in self.acct.positions)
        pim = sum(self.position_margin(s) for s in self.acct.positions)
        oim = self.order_margin()
        maint = sum(abs(p.amt) * self.mark(s) * 0.004 for s, p in self.acct.positions.items() if p.amt)
        avail = self.acct.wallet + upnl - pim - oim
        return {"wallet": self.acct.wallet, "upnl": upnl, "margin_balance": self.acct.wallet + upnl,
                "pim": pim, "oim": oim, "maint": maint, "available": avail}

    def symbol(self, sym: str | None) -> str:
        if not sym:
            raise mandatory("symbol")
        sym = sym.upper()
        if sym not in self.m.index:
            raise VenueError(-1121, "Invalid symbol.")
        return sym

    # ------------------------------------------------------------------ orders
    def new_order(self, p: dict) -> dict:
        sym = self.symbol(p.get("symbol"))
        spec = self.m.spec(sym)
        side = (p.get("side") or "").upper()
        if not side:
            raise mandatory("side")
        if side not in ("BUY", "SELL"):
            raise VenueError(-1117, "Invalid side.")
        otype = (p.get("type") or "").upper()
        if not otype:
            raise mandatory("type")
        if otype in ("STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"):
            raise VenueError(-4120, "Order type not supported for this endpoint. Please use the Algo Order "
                                    "API endpoints instead.")
        if otype not in ("MARKET", "LIMIT"):
            raise VenueError(-1116, "Invalid orderType.")
        ps = (p.get("positionSide") or "BOTH").upper()
        if ps != "BOTH":
            raise VenueError(-4061, "Order's position side does not match user's setting.")
        qty = _num(p, "quantity")
        if qty is None:
            raise mandatory("quantity")
        if qty <= 0:
            raise VenueError(-4003, "Quantity less than or equal to zero.")
        if not _on_grid(qty, spec.step):
            raise VenueError(-1111, "Precision is over the maximum defined for this asset.")
        reduce_only = str(p.get("reduceOnly", "false")).lower() == "true"
        tif, price, gtd = "GTC", 0.0, 0
        if otype == "LIMIT":
            tif = (p.get("timeInForce") or "").upper()
            if not tif:
                raise mandatory("timeInForce")
            if tif not in ("GTC", "IOC", "FOK", "GTX", "GTD"):
                raise VenueError(-1115, "Invalid timeInForce.")
            price = _num(p, "price")
            if price is None:
                raise mandatory("price")
            if price <= 0:
                raise VenueError(-4001, "Price less than 0.")
            if not _on_grid(price, spec.tick):
                raise VenueError(-4014, "Price not increased by tick size.")
            if tif == "GTD":
                gtd = int(_num(p, "goodTillDate") or 0)
                if gtd <= 0:
                    raise mandatory("goodTillDate")
        elif p.get("price") not in (None, ""):
            raise VenueError(-1106, "Parameter 'price' sent when not required.")
        coid = p.get("newClientOrderId") or f"venue-{self.acct.next_order_id}"
        if any(o.clientOrderId == coid and o.is_open for o in self.acct.orders.values()):
            raise VenueError(-4015, "Client order id is not valid.")
        position = self.pos(sym)
        ref = price if otype == "LIMIT" else self.mark(sym)
        if reduce_only:
            if position.amt == 0 or position.amt * (1 if side == "BUY" else -1) > 0:
                raise VenueError(-2022, "ReduceOnly Order is rejected.")
        else:
            if qty * ref < MIN_NOTIONAL:
                raise VenueError(-4164, f"Order's notional must be no smaller than {MIN_NOTIONAL:g} "
                                        "(unless you choose reduce only).")
            opening = qty
            if position.amt * (1 if side == "BUY" else -1) < 0:
                opening = max(0.0, qty - abs(position.amt))
            need = opening * ref / position.leverage
            if need > self.totals()["available"] + 1e-9:
                raise VenueError(-2019, "Margin is insufficient.")
        if self.m.finished:
            raise VenueError(-1008, "Server is currently overloaded with other requests. Please try again "
                                    "in a few minutes.", status=503)
        now = self.now()
        o = Order(self.acct.next_order_id, sym, coid, side, otype, tif, qty, price, reduce_only, now,
                  self.m.cur + 1, updateTime=now, goodTillDate=gtd)
        self.acct.next_order_id += 1
        self.acct.orders[o.orderId] = o
        log.info("order %d %s %s %s %s qty=%s px=%s reduceOnly=%s client=%s", o.orderId, sym, side, otype, tif,
                 spec.qty(qty), spec.px(price), reduce_only, coid)
        response = self.order_json(o)  # Binance answers before matching: status NEW
        self._order_event(o, "NEW")
        self._match_on_arrival(o)
        self.save()
        return response

    def _match_on_arrival(self, o: Order) -> None:
        j = self.m.index[o.symbol]
        open_px = float(self.m.open[self.m.cur + 1, j])
        if o.type == "MARKET":  # slipped price rounded to the nearest tick (Binance prices are on the grid)
            tick = self.m.spec(o.symbol).tick
            self._fill(o, round(open_px * (1 + o.sign * self.slip) / tick) * tick, maker=False)
            return
        marketable = (o.sign > 0 and open_px <= o.price) or (o.sign < 0 and open_px >= o.price)
        if marketable and o.timeInForce == "GTX":
            self._finish(o, "EXPIRED")
        elif marketable:
            self._fill(o, open_px, maker=False)
        elif o.timeInForce in ("IOC", "FOK"):
            self._finish(o, "EXPIRED")

    def cancel(self, sym: str, order_id=None, client_id=None) -> dict:
        sym = self.symbol(sym)
        o = self.find(sym, order_id, client_id)
        if o is None or not o.is_open:
            raise VenueError(-2011, "Unknown order sent.")
        self._finish(o, "CANCELED")
        self.save()
        return self.order_json(o)

    def cancel_all(self, sym: str) -> int:
        sym = self.symbol(sym)
        n = 0
        for o in list(self.acct.orders.values()):
            if o.symbol == sym and o.is_open:
                self._finish(o, "CANCELED")
                n += 1
        self.save()
        return n

    def find(self, sym: str, order_id=None, client_id=None) -> Order | None:
        if order_id in (None, "") and client_id in (None, ""):
            raise mandatory("orderId")
        if order_id not in (None, ""):
            try:
                o = self.acct.orders.get(int(order_id))
            except ValueError:
                raise mandatory("orderId") from None
            return o if o is not None and o.symbol == sym else None
        for o in self.acct.orders.values():
            if o.symbol == sym and o.clientOrderId == client_id:
                return o
        return None

    # ------------------------------------------------------------------ fills
    def _fill(self, o: Order, px: float, *, maker: bool) -> None:
        spec = self.m.spec(o.symbol)
        p = self.pos(o.symbol)
        qty = o.origQty - o.executedQty
        if o.reduceOnly:
            if p.amt == 0 or p.amt * o.sign > 0:
                self._finish(o, "EXPIRED")
                return
            qty = min(qty, abs(p.amt))
        now = self.now()
        fee = qty * px * (self.maker_fee if maker else self.taker_fee)
        realized = 0.0
        signed = o.sign * qty
        if p.amt == 0 or p.amt * signed > 0:  # open or add
            if p.amt == 0:
                p.opened_at = now
            p.entry = (p.entry * abs(p.amt) + px * qty) / (abs(p.amt) + qty)
            p.amt += signed
        else:  # reduce, close or flip
            closing = min(qty, abs(p.amt))
            realized = closing * (px - p.entry) * (1 if p.amt > 0 else -1)
            rest = qty - closing
            p.amt += o.sign * closing
            if abs(p.amt) < spec.step / 2:
                p.amt, p.entry = 0.0, 0.0
            if rest > spec.step / 2:
                p.amt, p.entry, p.opened_at = o.sign * rest, px, now
        p.amt = round(p.amt, spec.qty_decimals)
        p.realized += realized
        p.update_time = now
        self.acct.wallet += realized - fee
        self.acct.update_time = now
        o.executedQty = round(o.executedQty + qty, spec.qty_decimals)
        o.cumQuote += qty * px
        o.status = "FILLED" if o.executedQty >= o.origQty - spec.step / 2 else "PARTIALLY_FILLED"
        if o.reduceOnly and o.status == "PARTIALLY_FILLED":  # the position is gone: the rest cannot fill
            o.status = "EXPIRED"
        o.updateTime = now
        tid = self.acct.next_trade_id
        self.acct.next_trade_id += 1
        trade = {"buyer": o.side == "BUY", "commission": f"{fee:.8f}", "commissionAsset": ASSET, "id": tid,
                 "maker": maker, "orderId": o.orderId, "price": spec.px(px), "qty": spec.qty(qty),
                 "quoteQty": f"{qty * px:.8f}", "realizedPnl": f"{realized:.8f}", "side": o.side,
                 "positionSide": "BOTH", "symbol": o.symbol, "time": now}
        self.acct.trades.append(trade)
        log.info("fill order %d %s %s %s @ %s (%s) fee=%.6f realized=%.6f position=%s", o.orderId, o.symbol,
                 o.side, spec.qty(qty), spec.px(px), "maker" if maker else "taker", fee, realized, spec.qty(p.amt))
        self._order_event(o, "TRADE", last_qty=qty, last_px=px, fee=fee, trade_id=tid, maker=maker,
                          realized=realized)
        self._account_event("ORDER", [o.symbol])

    def _finish(self, o: Order, status: str) -> None:
        o.status = status
        o.updateTime = self.now()
        log.info("order %d %s %s", o.orderId, o.symbol, status)
        self._order_event(o, status)

    # ------------------------------------------------------------------ the clock
    def on_bar_close(self, t: int) -> None:
        """Bar ``t`` (= cur + 1) closes: funding at its open, resting limits, GTD expiry; then cur = t."""
        m = self.m
        ot = int(m.open_time[t])
        for sym, p in self.acct.positions.items():
            j = m.index[sym]
            rate = float(m.funding[t, j])
            if p.amt != 0 and rate != 0.0 and p.opened_at < ot:
                amount = p.amt * rate * float(m.open[t, j])
                self.acct.wallet -= amount
                self.acct.update_time = ot
                log.info("funding %s at %d rate=%g position=%s charged=%.6f", sym, ot, rate, p.amt, amount)
                self._account_event("FUNDING_FEE", [], when=ot, balance_change=-amount)
        for o in list(self.acct.orders.values()):
            if not o.is_open or o.type != "LIMIT":
                continue
            j = m.index[o.symbol]
            op, hi, lo = float(m.open[t, j]), float(m.high[t, j]), float(m.low[t, j])
            if o.goodTillDate and ot >= o.goodTillDate:
                self._finish(o, "EXPIRED")
            elif o.sign > 0 and lo < o.price:
                self._fill(o, min(o.price, op), maker=True)
            elif o.sign < 0 and hi > o.price:
                self._fill(o, max(o.price, op), maker=True)
        m.cur = t
        self.save()

    # ------------------------------------------------------------------ payloads
    def order_json(self, o: Order) -> dict:
        spec = self.m.spec(o.symbol)
        avg = o.cumQuote / o.executedQty if o.executedQty else 0.0
        return {"orderId": o.orderId, "symbol": o.symbol, "status": o.status, "clientOrderId": o.clientOrderId,
                "price": spec.px(o.price), "avgPrice": spec.px(avg) if avg else "0.00000",
                "origQty": spec.qty(o.origQty), "executedQty": spec.qty(o.executedQty),
                "cumQty": spec.qty(o.executedQty), "cumQuote": f"{o.cumQuote:.8f}",
                "timeInForce": o.timeInForce, "type": o.type, "reduceOnly": o.reduceOnly, "closePosition": False,
                "side": o.side, "positionSide": "BOTH", "stopPrice": "0", "workingType": "CONTRACT_PRICE",
                "priceProtect": False, "origType": o.type, "priceMatch": "NONE",
                "selfTradePreventionMode": "EXPIRE_MAKER", "goodTillDate": o.goodTillDate, "time": o.time,
                "updateTime": o.updateTime}

    def _order_event(self, o: Order, x: str, *, last_qty=0.0, last_px=0.0, fee=None, trade_id=0,
                     maker=False, realized=0.0) -> None:
        spec = self.m.spec(o.symbol)
        now = o.updateTime
        avg = o.cumQuote / o.executedQty if o.executedQty else 0.0
        bids = sum((q.origQty - q.executedQty) * q.price for q in self.acct.orders.values()
                   if q.is_open and q.side == "BUY" and q.symbol == o.symbol)
        asks = sum((q.origQty - q.executedQty) * q.price for q in self.acct.orders.values()
                   if q.is_open and q.side == "SELL" and q.symbol == o.symbol)
        data = {"s": o.symbol, "c": o.clientOrderId, "S": o.side, "o": o.type, "f": o.timeInForce,
                "q": spec.qty(o.origQty), "p": spec.px(o.price), "ap": spec.px(avg) if avg else "0",
                "sp": "0", "x": x, "X": o.status, "i": o.orderId, "l": spec.qty(last_qty),
                "z": spec.qty(o.executedQty), "L": spec.px(last_px) if last_px else "0"}
        if fee is not None:
            data.update({"N": ASSET, "n": f"{fee:.8f}"})
        data.update({"T": now, "t": trade_id, "b": f"{bids:.5f}", "a": f"{asks:.5f}", "m": maker,
                     "R": o.reduceOnly, "wt": "CONTRACT_PRICE", "ot": o.type, "ps": "BOTH", "cp": False,
                     "rp": f"{realized:.8f}", "pP": False, "si": 0, "ss": 0, "V": "EXPIRE_MAKER", "pm": "NONE",
                     "gtd": o.goodTillDate})
        self.emit({"e": "ORDER_TRADE_UPDATE", "E": now, "T": now, "o": data})

    def _account_event(self, reason: str, symbols: list, *, when: int | None = None,
                       balance_change: float = 0.0) -> None:
        now = self.now() if when is None else when
        P = []
        for sym in symbols:
            p, spec = self.pos(sym), self.m.spec(sym)
            P.append({"s": sym, "pa": spec.qty(p.amt), "ep": f"{p.entry:.8f}", "bep": f"{p.entry:.8f}",
                      "cr": f"{p.realized:.8f}", "up": f"{self.unrealized(sym):.8f}", "mt": "cross",
                      "iw": "0", "ps": "BOTH"})
        self.emit({"e": "ACCOUNT_UPDATE", "E": now, "T": now, "a": {
            "m": reason, "B": [{"a": ASSET, "wb": f"{self.acct.wallet:.8f}", "cw": f"{self.acct.wallet:.8f}",
                                "bc": f"{balance_change:.8f}"}], "P": P}})

    # ------------------------------------------------------------------ snapshot
    def save(self) -> None:
        if not self.state_file:
            return
        a = self.acct
        state = {"data_set": self.m.name, "cur_open_time": int(self.m.open_time[max(self.m.cur, 0)]),
                 "wallet": a.wallet, "next_order_id": a.next_order_id, "next_trade_id": a.next_trade_id,
                 "update_time": a.update_time, "positions": {s: asdict(p) for s, p in a.positions.items()},
                 "orders": [asdict(o) for o in a.orders.values()], "trades": a.trades[-5000:]}
        tmp = self.state_file.with_suffix(self.state_file.suffix + ".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.state_file)

    def _load(self) -> None:
        state = json.loads(self.state_file.read_text())
        if state.get("data_set") != self.m.name:
            log.warning("state file %s is for data set %s, not %s: ignored", self.state_file,
                        state.get("data_set"), self.m.name)
            return
        a = self.acct
        a.wallet, a.next_order_id = float(state["wallet"]), int(state["next_order_id"])
        a.next_trade_id, a.update_time = int(state["next_trade_id"]), int(state["update_time"])
        a.positions = {s: Position(**p) for s, p in state["positions"].items() if s in self.m.index}
        a.orders = {int(o["orderId"]): Order(**o) for o in state["orders"] if o["symbol"] in self.m.index}
        a.trades = list(state["trades"])
        # resume the replay after the bar the snapshot had reached (when this run covers it)
        t = int(state["cur_open_time"])
        i = int(self.m.open_time.searchsorted(t))
        if i < self.m.n_bars and int(self.m.open_time[i]) == t and i >= self.m.start_index:
            self.m.cur = i
        log.info("state restored from %s: wallet %.4f %s, %d open positions, %d open orders, clock at %d",
                 self.state_file, a.wallet, ASSET, sum(1 for p in a.positions.values() if p.amt),
                 sum(1 for o in a.orders.values() if o.is_open), self.m.clock_ms())


def _num(p: dict, name: str) -> float | None:
    v = p.get(name)
    if v in (None, ""):
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise mandatory(name) from None
    if x != x or x in (float("inf"), float("-inf")):
        raise mandatory(name)
    return x


def _on_grid(x: float, step: float) -> bool:
    n = x / step
    return abs(n - round(n)) < 1e-6


def wall_ms() -> int:
    return int(time.time() * 1000)

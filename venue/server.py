"""Binance USD-M futures REST + routed WebSocket streams over starlette (one port, HTTP and WS).

REST under /fapi (see README "Local venue"); WebSocket routes:
  /market/stream?streams=a/b, /market/ws[/<stream>]   kline_<i>, markPrice, aggTrade   ({"stream","data"} on /stream)
  /public/stream?streams=a/b, /public/ws[/<stream>]   depth<N>[@<ms>ms], depth[@<ms>ms], bookTicker
  /private/ws?listenKey=K, /private/stream?listenKey=K user data (ORDER_TRADE_UPDATE, ACCOUNT_UPDATE)
  /ws[/<stream>], /stream?streams=...                 legacy unrouted: accepts any SUBSCRIBE, delivers only
                                                      /public streams (as Binance since 2026-04-23)
Every route takes {"method": "SUBSCRIBE"|"UNSUBSCRIBE"|"LIST_SUBSCRIPTIONS", "params": [...], "id": n}.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from venue.exchange import ASSET, Exchange, VenueError, mandatory, wall_ms
from venue.market import DEPTH_LIMITS, Market

log = logging.getLogger("venue")

DEV_API_KEY = "dolphin-venue-dev-key"
DEV_API_SECRET = "dolphin-venue-dev-secret"
ROUTES = ("market", "public", "private")


def stream_category(stream: str) -> str:
    kind = stream.split("@", 1)[1] if "@" in stream else stream
    return "public" if kind.startswith(("depth", "bookTicker")) or stream == "!bookTicker" else "market"


class Conn:
    def __init__(self, ws: WebSocket, route: str, combined: bool, peer: str):
        self.ws, self.route, self.combined, self.peer = ws, route, combined, peer
        self.streams: list[str] = []
        self.listen_key: str | None = None
        self.queue: asyncio.Queue = asyncio.Queue()

    def delivers(self, stream: str) -> bool:
        cat = stream_category(stream)
        return cat == self.route or (self.route == "legacy" and cat == "public")

    def push(self, stream: str, data: dict) -> None:
        self.queue.put_nowait(json.dumps({"stream": stream, "data": data} if self.combined else data))


class Venue:
    """The market, the exchange, the connected streams and the replay loop."""

    def __init__(self, market: Market, exchange: Exchange, *, speed: float, api_key: str, api_secret: str,
                 hold: float | None = None):
        """``hold``: None = the replay runs from start-up; a number of seconds = it holds at the start until a
        client subscribes to a kline stream on ``/market``, then runs after that grace (so a client's other
        subscriptions land and a warm-up that ends at the start joins the first replayed bar)."""
        self.m, self.ex, self.speed, self.hold = market, exchange, speed, hold
        self._subscribed = None  # asyncio.Event, made in the replay task's loop
        self.api_key, self.api_secret = api_key, api_secret
        self.conns: set[Conn] = set()
        self.listen_key: str | None = None
        self.update_id = 1
        self._tick_started = time.monotonic()
        self._last_book: dict[str, tuple[list, list]] = {}
        exchange.emit = self.emit_user
        exchange.fraction = lambda: (time.monotonic() - self._tick_started) / self.speed
        self.task: asyncio.Task | None = None

    # ------------------------------------------------------------------ replay
    def kline_subscribed(self) -> None:
        if self._subscribed is not None and not self._subscribed.is_set():
            self._subscribed.set()

    async def replay(self) -> None:
        if self.hold is not None:
            self._subscribed = asyncio.Event()
            log.info("replay held at the start (clock %d) until a kline stream is subscribed", self.m.clock_ms())
            await self._subscribed.wait()
            log.info("kline stream subscribed: replay starts in %.1f s", self.hold)
            await asyncio.sleep(self.hold)
        log.info("replay of %s at %.3f s per %s bar, clock at %d", self.m.name, self.speed, self.m.interval,
                 self.m.clock_ms())
        while not self.m.finished:
            self._tick_started = time.monotonic()
            await asyncio.sleep(self.speed)
            t = self.m.cur + 1
            self.ex.on_bar_close(t)
            self._tick_started = time.monotonic()
            self.update_id += 1
            self.publish_bar(t)
        log.info("replay finished: last bar %d closed, clock stays at %d", self.m.cur, self.m.clock_ms())

    def publish_bar(self, t: int) -> None:
        wanted: dict[str, list[Conn]] = {}
        for c in self.conns:
            for s in c.streams:
                if c.delivers(s):
                    wanted.setdefault(s, []).append(c)
        if not wanted:
            return
        now = self.m.clock_ms()
        for stream, conns in wanted.items():
            data = self.stream_data(stream, t, now)
            if data is not None:
                for c in conns:
                    c.push(stream, data)

    def stream_data(self, stream: str, t: int, now: int) -> dict | None:
        if "@" not in stream:
            return None
        sym, kind = stream.split("@", 1)
        sym = sym.upper()
        if sym not in self.m.index:
            return None
        spec = self.m.spec(sym)
        close = float(self.m.close[t, self.m.index[sym]])
        if kind == f"kline_{self.m.interval}":
            return self.m.kline_event(sym, t, now)
        if kind in ("markPrice", "markPrice@1s"):
            nft, rate = self.m.next_funding(sym, now)
            return {"e": "markPriceUpdate", "E": now, "s": sym, "p": spec.px(close), "i": spec.px(close),
                    "P": spec.px(close), "r": f"{rate:.8f}", "T": nft}
        if kind == "aggTrade":  # one synthetic trade per bar: the close, the bar's volume
            vol = float(self.m.volume[t, self.m.index[sym]])
            return {"e": "aggTrade", "E": now, "s": sym, "a": t, "p": spec.px(close), "q": spec.qty(vol),
                    "f": t * 1000, "l": t * 1000, "T": now - 1, "m": False, "synthetic": True}
        if kind == "bookTicker":
            bids, asks = self.m.book(sym, 1)
            return {"e": "bookTicker", "u": self.update_id, "s": sym, "b": bids[0][0], "B": bids[0][1],
                    "a": asks[0][0], "A": asks[0][1], "T": now, "E": now, "synthetic": True}
        if kind.startswith("depth"):
            spec_part = kind[5:].split("@")[0]
            if spec_part == "":  # diff stream: new levels, and the previous ones gone (qty 0)
                bids, asks = self.m.book(sym, 20)
                old_b, old_a = self._last_book.get(sym, ([], []))
                self._last_book[sym] = (bids, asks)
                nb, na = {p for p, _ in bids}, {p for p, _ in asks}
                bids = bids + [[p, "0"] for p, _ in old_b if p not in nb]
                asks = asks + [[p, "0"] for p, _ in old_a if p not in na]
            elif spec_part.isdigit() and int(spec_part) in (5, 10, 20):
                bids, asks = self.m.book(sym, int(spec_part))
            else:
                return None
            return {"e": "depthUpdate", "E": now, "T": now, "s": sym, "U": self.update_id, "u": self.update_id,
                    "pu": self.update_id - 1, "b": bids, "a": asks, "synthetic": True}
        return None

    def emit_user(self, event: dict) -> None:
        for c in self.conns:
            if c.route == "private" and c.listen_key and c.listen_key == self.listen_key:
                if c.streams and event["e"] not in c.streams:  # ?events= filter
                    continue
                c.push(c.listen_key, event)

    # ------------------------------------------------------------------ REST helpers
    async def params(self, request: Request) -> dict:
        p = dict(parse_qsl(request.url.query, keep_blank_values=True))
        body = (await request.body()).decode()
        if body and request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            p.update(parse_qsl(body, keep_blank_values=True))
        return p

    async def check_key(self, request: Request) -> None:
        key = request.headers.get("x-mbx-apikey")
        if not key:
            raise VenueError(-2014, "API-key format invalid.", 401)
        if not hmac.compare_digest(key, self.api_key):
            raise VenueError(-2015, "Invalid API-key, IP, or permissions for action.", 401)

    async def check_signed(self, request: Request, p: dict) -> None:
        await self.check_key(request)
        if not p.get("timestamp"):
            raise mandatory("timestamp")
        if not p.get("signature"):
            raise mandatory("signature")
        query = "&".join(x for x in request.url.query.split("&") if not x.startswith("signature="))
        body = (await request.body()).decode()
        total = query + body if body else query
        body_sig = dict(parse_qsl(body)).get("signature") if body else None
        if body_sig:
            total = query + "&".join(x for x in body.split("&") if not x.startswith("signature="))
        expect = hmac.new(self.api_secret.encode(), total.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expect, p["signature"].lower()):
            raise VenueError(-1022, "Signature for this request is not valid.")
        try:
            ts, window = int(p["timestamp"]), int(p.get("recvWindow") or 5000)
        except ValueError:
            raise mandatory("timestamp") from None
        now = wall_ms()  # recvWindow is checked against the host clock, which the client shares
        if ts > now + 1000 or now - ts > window:
            raise VenueError(-1021, "Timestamp for this request is outside of the recvWindow.")


def _err(e: VenueError) -> JSONResponse:
    return JSONResponse({"code": e.code, "msg": e.msg}, status_code=e.status)


def build_app(venue: Venue) -> Starlette:  # noqa: C901 (one table of endpoints)
    m, ex = venue.m, venue.ex

    def endpoint(handler, security: str = "NONE"):
        async def run(request: Request):
            try:
                p = await venue.params(request)
                if security == "SIGNED":
                    await venue.check_signed(request, p)
                elif security == "KEY":
                    await venue.check_key(request)
                result = handler(request, p)
                return result if isinstance(result, Response) else JSONResponse(result)
            except VenueError as e:
                log.info("%s %s -> %d %s", request.method, request.url.path, e.code, e.msg)
                return _err(e)
        return run

    def sym_param(p, required=True):
        s = p.get("symbol")
        if not s and not required:
            return None
        return ex.symbol(s)

    # ---------------- market data
    def exchange_info(request, p):
        symbols = []
        for sym in m.symbols:
            s = m.spec(sym)
            symbols.append({
                "symbol": sym, "pair": sym, "contractType": "PERPETUAL", "deliveryDate": 4133404800000,
                "onboardDate": s.onboard_ms, "status": "TRADING", "maintMarginPercent": "2.5000",
                "requiredMarginPercent": "5.0000", "baseAsset": s.base, "quoteAsset": ASSET,
                "marginAsset": ASSET, "pricePrecision": s.price_decimals, "quantityPrecision": s.qty_decimals,
                "baseAssetPrecision": 8, "quotePrecision": 8, "underlyingType": "COIN",
                "underlyingSubType": [], "settlePlan": 0, "triggerProtect": "0.0500",
                "liquidationFee": "0.012500", "marketTakeBound": "0.05", "maxMoveOrderLimit": 10000,
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": s.px(s.tick), "maxPrice": s.px(1e6 if s.price_decimals < 3 else 1e4),
                     "tickSize": s.px(s.tick)},
                    {"filterType": "LOT_SIZE", "minQty": s.qty(s.step), "maxQty": s.qty(1e7 * s.step if s.qty_decimals else 1e7),
                     "stepSize": s.qty(s.step)},
                    {"filterType": "MARKET_LOT_SIZE", "minQty": s.qty(s.step),
                     "maxQty": s.qty(1e6 * s.step if s.qty_decimals else 1e6), "stepSize": s.qty(s.step)},
                    {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                    {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                    {"filterType": "MIN_NOTIONAL", "notional": "5"},
                    {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
                     "multiplierDecimal": "4"}],
                "orderTypes": ["LIMIT", "MARKET"],
                "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"], "permissionSet": ["GRID", "COPY"]})
        return {"timezone": "UTC", "serverTime": ex.now(), "futuresType": "U_MARGINED",
                "rateLimits": [
                    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
                    {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
                    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300}],
                "exchangeFilters": [],
                "assets": [{"asset": ASSET, "marginAvailable": True, "autoAssetExchange": "-10000"}],
                "symbols": symbols}

    def klines(request, p):
        sym = sym_param(p)
        interval = p.get("interval")
        if not interval:
            raise mandatory("interval")
        if interval != m.interval:
            raise VenueError(-1120, "Invalid interval.")
        limit = _int(p, "limit", 500)
        if not 1 <= limit <= 1500:
            raise VenueError(-1130, "Data sent for parameter 'limit' is not valid.")
        return m.klines(sym, _int(p, "startTime", None), _int(p, "endTime", None), limit)

    def depth(request, p):
        sym = sym_param(p)
        limit = _int(p, "limit", 500)
        if limit not in DEPTH_LIMITS:
            raise VenueError(-1130, "Data sent for parameter 'limit' is not valid.")
        bids, asks = m.book(sym, limit)
        now = ex.now()
        return {"lastUpdateId": venue.update_id, "E": now, "T": now, "bids": bids, "asks": asks, "synthetic": True}

    def premium_index(request, p):
        syms = [sym_param(p)] if p.get("symbol") else m.symbols
        now = ex.now()
        out = []
        for sym in syms:
            s = m.spec(sym)
            px = s.px(ex.mark(sym))
            nft, rate = m.next_funding(sym, now)
            out.append({"symbol": sym, "markPrice": px, "indexPrice": px, "estimatedSettlePrice": px,
                        "lastFundingRate": f"{rate:.8f}", "interestRate": "0.00010000", "nextFundingTime": nft,
                        "time": now})
        return out[0] if p.get("symbol") else out

    def funding_rate(request, p):
        syms = [sym_param(p)] if p.get("symbol") else m.symbols
        now = ex.now()
        start, end, limit = _int(p, "startTime", None), _int(p, "endTime", None), _int(p, "limit", 100)
        if not 1 <= limit <= 1000:
            raise VenueError(-1130, "Data sent for parameter 'limit' is not valid.")
        rows = []
        for sym in syms:
            ft, fr = m.funding_history(sym)
            for t, r in zip(ft.tolist(), fr.tolist()):
                if t <= now and (start is None or t >= start) and (end is None or t <= end):
                    rows.append({"symbol": sym, "fundingRate": f"{r:.8f}", "fundingTime": t,
                                 "markPrice": m.spec(sym).px(ex.mark(sym))})
        rows.sort(key=lambda r: r["fundingTime"])
        return rows[:limit] if start is not None else rows[-limit:]

    def ticker_price(request, p):
        syms = [sym_param(p)] if p.get("symbol") else m.symbols
        out = [{"symbol": s, "price": m.spec(s).px(ex.mark(s)), "time": ex.now()} for s in syms]
        return out[0] if p.get("symbol") else out

    def book_ticker(request, p):
        syms = [sym_param(p)] if p.get("symbol") else m.symbols
        out = []
        for s in syms:
            b, a = m.book(s, 1)
            out.append({"symbol": s, "bidPrice": b[0][0], "bidQty": b[0][1], "askPrice": a[0][0],
                        "askQty": a[0][1], "time": ex.now(), "lastUpdateId": venue.update_id, "synthetic": True})
        return out[0] if p.get("symbol") else out

    # ---------------- user data stream
    def listen_key(request, p):
        if request.method == "POST":
            if venue.listen_key is None:
                venue.listen_key = secrets.token_urlsafe(48)[:64]
                log.info("listenKey created (%s...)", venue.listen_key[:6])
            return {"listenKey": venue.listen_key}
        if venue.listen_key is None or (p.get("listenKey") and p["listenKey"] != venue.listen_key):
            raise VenueError(-1125, "This listenKey does not exist.")
        if request.method == "DELETE":
            log.info("listenKey closed (%s...)", venue.listen_key[:6])
            venue.listen_key = None
            return {}
        return {"listenKey": venue.listen_key}

    # ---------------- account
    def account(request, p):
        t = ex.totals()
        positions = []
        for sym in m.symbols:
            pos = ex.acct.positions.get(sym)
            amt = pos.amt if pos else 0.0
            lev = pos.leverage if pos else ex.default_leverage
            spec = m.spec(sym)
            positions.append({"symbol": sym, "initialMargin": f"{ex.position_margin(sym):.8f}",
                              "maintMargin": f"{abs(amt) * ex.mark(sym) * 0.004:.8f}",
                              "unrealizedProfit": f"{ex.unrealized(sym):.8f}",
                              "positionInitialMargin": f"{ex.position_margin(sym):.8f}",
                              "openOrderInitialMargin": "0", "leverage": str(lev), "isolated": False,
                              "entryPrice": f"{pos.entry if pos else 0.0:.8f}", "breakEvenPrice": "0.0",
                              "maxNotional": "1000000", "bidNotional": "0", "askNotional": "0",
                              "positionSide": "BOTH", "positionAmt": spec.qty(amt), "notional": f"{amt * ex.mark(sym):.8f}",
                              "isolatedWallet": "0", "updateTime": pos.update_time if pos else 0})
        w = f"{t['wallet']:.8f}"
        asset = {"asset": ASSET, "walletBalance": w, "unrealizedProfit": f"{t['upnl']:.8f}",
                 "marginBalance": f"{t['margin_balance']:.8f}", "maintMargin": f"{t['maint']:.8f}",
                 "initialMargin": f"{t['pim'] + t['oim']:.8f}", "positionInitialMargin": f"{t['pim']:.8f}",
                 "openOrderInitialMargin": f"{t['oim']:.8f}", "crossWalletBalance": w,
                 "crossUnPnl": f"{t['upnl']:.8f}", "availableBalance": f"{t['available']:.8f}",
                 "maxWithdrawAmount": f"{max(0.0, t['available']):.8f}", "marginAvailable": True,
                 "updateTime": ex.acct.update_time}
        if request.url.path.startswith("/fapi/v3/"):
            positions = [x for x in positions if float(x["positionAmt"]) != 0]
        return {"feeTier": 0, "feeBurn": False, "canTrade": True, "canDeposit": True, "canWithdraw": True,
                "updateTime": 0, "multiAssetsMargin": False, "tradeGroupId": -1,
                "totalInitialMargin": f"{t['pim'] + t['oim']:.8f}", "totalMaintMargin": f"{t['maint']:.8f}",
                "totalWalletBalance": w, "totalUnrealizedProfit": f"{t['upnl']:.8f}",
                "totalMarginBalance": f"{t['margin_balance']:.8f}", "totalPositionInitialMargin": f"{t['pim']:.8f}",
                "totalOpenOrderInitialMargin": f"{t['oim']:.8f}", "totalCrossWalletBalance": w,
                "totalCrossUnPnl": f"{t['upnl']:.8f}", "availableBalance": f"{t['available']:.8f}",
                "maxWithdrawAmount": f"{max(0.0, t['available']):.8f}", "assets": [asset], "positions": positions}

    def balance(request, p):
        t = ex.totals()
        w = f"{t['wallet']:.8f}"
        return [{"accountAlias": "DOLPHINVENUE", "asset": ASSET, "balance": w, "crossWalletBalance": w,
                 "crossUnPnl": f"{t['upnl']:.8f}", "availableBalance": f"{t['available']:.8f}",
                 "maxWithdrawAmount": f"{max(0.0, t['available']):.8f}", "marginAvailable": True,
                 "updateTime": ex.acct.update_time}]

    def position_risk(request, p):
        syms = [sym_param(p)] if p.get("symbol") else m.symbols
        v3 = request.url.path.startswith("/fapi/v3/")
        out = []
        for sym in syms:
            pos = ex.acct.positions.get(sym)
            amt = pos.amt if pos else 0.0
            if v3 and amt == 0:
                continue
            spec, mark = m.spec(sym), ex.mark(sym)
            row = {"symbol": sym, "positionSide": "BOTH", "positionAmt": spec.qty(amt),
                   "entryPrice": f"{pos.entry if pos else 0.0:.8f}", "breakEvenPrice": f"{pos.entry if pos else 0.0:.8f}",
                   "markPrice": spec.px(mark), "unRealizedProfit": f"{ex.unrealized(sym):.8f}",
                   "liquidationPrice": "0", "isolatedMargin": "0", "notional": f"{amt * mark:.8f}",
                   "marginAsset": ASSET, "isolatedWallet": "0", "initialMargin": f"{ex.position_margin(sym):.8f}",
                   "maintMargin": f"{abs(amt) * mark * 0.004:.8f}",
                   "positionInitialMargin": f"{ex.position_margin(sym):.8f}", "openOrderInitialMargin": "0",
                   "adl": 0, "bidNotional": "0", "askNotional": "0", "updateTime": pos.update_time if pos else 0}
            if not v3:
                row.update({"leverage": str(pos.leverage if pos else ex.default_leverage), "marginType": "cross",
                            "isAutoAddMargin": "false", "maxNotionalValue": "1000000"})
            out.append(row)
        return out

    def commission_rate(request, p):
        sym = sym_param(p)
        return {"symbol": sym, "makerCommissionRate": f"{ex.maker_fee:.6f}",
                "takerCommissionRate": f"{ex.taker_fee:.6f}"}

    def leverage(request, p):
        sym = sym_param(p)
        lev = _int(p, "leverage", None)
        if lev is None:
            raise mandatory("leverage")
        if not 1 <= lev <= 125:
            raise VenueError(-4028, f"Leverage {lev} is not valid")
        ex.pos(sym).leverage = lev
        log.info("leverage %s %dx", sym, lev)
        ex.save()
        return {"leverage": lev, "maxNotionalValue": "1000000", "symbol": sym}

    def margin_type(request, p):
        sym = sym_param(p)
        mt = (p.get("marginType") or "").upper()
        if mt not in ("ISOLATED", "CROSSED"):
            raise mandatory("marginType")
        pos = ex.pos(sym)
        if pos.margin_type == mt:
            raise VenueError(-4046, "No need to change margin type.")
        pos.margin_type = mt  # recorded; the accounting stays cross (README)
        ex.save()
        return {"code": 200, "msg": "success"}

    def symbol_config(request, p):
        syms = [sym_param(p)] if p.get("symbol") else m.symbols
        return [{"symbol": s, "marginType": ex.pos(s).margin_type, "isAutoAddMargin": False,
                 "leverage": ex.pos(s).leverage, "maxNotionalValue": "1000000"} for s in syms]

    def dual(request, p):
        if request.method == "POST":
            if str(p.get("dualSidePosition", "")).lower() == "true":
                raise VenueError(-4068, "Position side cannot be changed if there exists position.")
            raise VenueError(-4059, "No need to change position side.")
        return {"dualSidePosition": False}

    # ---------------- orders
    def order(request, p):
        if request.method == "POST":
            return ex.new_order(p)
        sym = sym_param(p)
        if request.method == "DELETE":
            return ex.cancel(sym, p.get("orderId"), p.get("origClientOrderId"))
        o = ex.find(sym, p.get("orderId"), p.get("origClientOrderId"))
        if o is None:
            raise VenueError(-2013, "Order does not exist.")
        return ex.order_json(o)

    def open_orders(request, p):
        sym = sym_param(p, required=False)
        return [ex.order_json(o) for o in ex.acct.orders.values() if o.is_open and (sym is None or o.symbol == sym)]

    def all_orders(request, p):
        sym = sym_param(p)
        start, end, oid = _int(p, "startTime", None), _int(p, "endTime", None), _int(p, "orderId", None)
        limit = _int(p, "limit", 500)
        rows = [o for o in ex.acct.orders.values() if o.symbol == sym and (oid is None or o.orderId >= oid)
                and (start is None or o.time >= start) and (end is None or o.time <= end)]
        return [ex.order_json(o) for o in rows[:limit]]

    def user_trades(request, p):
        sym = sym_param(p)
        start, end, limit = _int(p, "startTime", None), _int(p, "endTime", None), _int(p, "limit", 500)
        rows = [t for t in ex.acct.trades if t["symbol"] == sym and (start is None or t["time"] >= start)
                and (end is None or t["time"] <= end)]
        return rows[-limit:]

    def all_open_orders(request, p):
        ex.cancel_all(sym_param(p))
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    def batch_orders(request, p):
        sym = sym_param(p)
        ids = json.loads(p["orderIdList"]) if p.get("orderIdList") else []
        cids = json.loads(p["origClientOrderIdList"]) if p.get("origClientOrderIdList") else []
        if not ids and not cids:
            raise mandatory("orderIdList")
        out = []
        for oid, cid in [(i, None) for i in ids] + [(None, c) for c in cids]:
            try:
                out.append(ex.cancel(sym, oid, cid))
            except VenueError as e:
                out.append({"code": e.code, "msg": e.msg})
        return out

    def algo_not_supported(request, p):
        if request.method == "GET":
            return []
        if request.url.path.endswith("algoOpenOrders"):
            return {"code": 200, "msg": "The operation of cancel all open order is done."}
        raise VenueError(-1116, "Invalid orderType.")

    routes = [
        Route("/fapi/v1/ping", endpoint(lambda r, p: {})),
        Route("/fapi/v1/time", endpoint(lambda r, p: {"serverTime": ex.now()})),
        Route("/fapi/v1/exchangeInfo", endpoint(exchange_info)),
        Route("/fapi/v1/klines", endpoint(klines)),
        Route("/fapi/v1/depth", endpoint(depth)),
        Route("/fapi/v1/premiumIndex", endpoint(premium_index)),
        Route("/fapi/v1/fundingRate", endpoint(funding_rate)),
        Route("/fapi/v1/ticker/price", endpoint(ticker_price)),
        Route("/fapi/v2/ticker/price", endpoint(ticker_price)),
        Route("/fapi/v1/ticker/bookTicker", endpoint(book_ticker)),
        Route("/fapi/v1/listenKey", endpoint(listen_key, "KEY"), methods=["POST", "PUT", "DELETE"]),
        Route("/fapi/v2/account", endpoint(account, "SIGNED")),
        Route("/fapi/v3/account", endpoint(account, "SIGNED")),
        Route("/fapi/v2/balance", endpoint(balance, "SIGNED")),
        Route("/fapi/v3/balance", endpoint(balance, "SIGNED")),
        Route("/fapi/v2/positionRisk", endpoint(position_risk, "SIGNED")),
        Route("/fapi/v3/positionRisk", endpoint(position_risk, "SIGNED")),
        Route("/fapi/v1/commissionRate", endpoint(commission_rate, "SIGNED")),
        Route("/fapi/v1/leverage", endpoint(leverage, "SIGNED"), methods=["POST"]),
        Route("/fapi/v1/marginType", endpoint(margin_type, "SIGNED"), methods=["POST"]),
        Route("/fapi/v1/symbolConfig", endpoint(symbol_config, "SIGNED")),
        Route("/fapi/v1/positionSide/dual", endpoint(dual, "SIGNED"), methods=["GET", "POST"]),
        Route("/fapi/v1/order", endpoint(order, "SIGNED"), methods=["GET", "POST", "DELETE"]),
        Route("/fapi/v1/openOrders", endpoint(open_orders, "SIGNED")),
        Route("/fapi/v1/allOrders", endpoint(all_orders, "SIGNED")),
        Route("/fapi/v1/userTrades", endpoint(user_trades, "SIGNED")),
        Route("/fapi/v1/allOpenOrders", endpoint(all_open_orders, "SIGNED"), methods=["DELETE"]),
        Route("/fapi/v1/batchOrders", endpoint(batch_orders, "SIGNED"), methods=["DELETE"]),
        Route("/fapi/v1/algoOrder", endpoint(algo_not_supported, "SIGNED"), methods=["GET", "POST", "DELETE"]),
        Route("/fapi/v1/openAlgoOrders", endpoint(algo_not_supported, "SIGNED")),
        Route("/fapi/v1/allAlgoOrders", endpoint(algo_not_supported, "SIGNED")),
        Route("/fapi/v1/algoOpenOrders", endpoint(algo_not_supported, "SIGNED"), methods=["DELETE"]),
    ]
    for route in ROUTES:
        routes += [WebSocketRoute(f"/{route}/stream", _ws(venue, route, True)),
                   WebSocketRoute(f"/{route}/ws", _ws(venue, route, False)),
                   WebSocketRoute(f"/{route}/ws/{{rest:path}}", _ws(venue, route, False))]
    routes += [WebSocketRoute("/stream", _ws(venue, "legacy", True)),
               WebSocketRoute("/ws", _ws(venue, "legacy", False)),
               WebSocketRoute("/ws/{rest:path}", _ws(venue, "legacy", False))]

    @contextlib.asynccontextmanager
    async def lifespan(app):
        venue.task = asyncio.create_task(venue.replay())
        try:
            yield
        finally:
            venue.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await venue.task
            ex.save()
            log.info("venue stopped (clock %d)", m.clock_ms())

    return Starlette(routes=routes, lifespan=lifespan)


def _ws(venue: Venue, route: str, combined: bool):
    async def handler(ws: WebSocket):
        peer = f"{ws.client.host}:{ws.client.port}" if ws.client else "?"
        rest = ws.path_params.get("rest", "")
        q = dict(parse_qsl(ws.url.query))
        await ws.accept()
        conn = Conn(ws, route, combined, peer)
        if route == "private":
            key = q.get("listenKey") or rest or (q.get("streams") or "").split("/")[0]
            if not key or key != venue.listen_key:
                log.info("ws %s from %s: unknown listenKey, closed", ws.url.path, peer)
                await ws.close(code=1008, reason="This listenKey does not exist.")
                return
            conn.listen_key = key
            conn.streams = [e for e in (q.get("events") or "").split("/") if e]
        else:
            conn.streams = [s for s in (q.get("streams") or rest).split("/") if s]
        venue.conns.add(conn)
        _note_klines(venue, conn)
        log.info("ws connect %s (%s) from %s streams=%s", ws.url.path, route, peer,
                 "[user data]" if route == "private" else conn.streams)
        for s in conn.streams:
            if route != "private" and not conn.delivers(s):
                log.info("ws %s: %s is a %s stream: accepted, never delivered on %s", peer, s,
                         stream_category(s), ws.url.path)

        async def writer():
            while True:
                msg = await conn.queue.get()
                await ws.send_text(msg)

        wtask = asyncio.create_task(writer())
        try:
            while True:
                raw = await ws.receive_text()
                reply = handle_control(conn, raw)
                _note_klines(venue, conn)
                if reply is not None:
                    conn.queue.put_nowait(json.dumps(reply))
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            wtask.cancel()
            venue.conns.discard(conn)
            log.info("ws disconnect %s from %s", ws.url.path, peer)
    return handler


def _note_klines(venue: Venue, conn: Conn) -> None:
    if any("@kline_" in s and conn.delivers(s) for s in conn.streams):
        venue.kline_subscribed()


def handle_control(conn: Conn, raw: str) -> dict | None:
    try:
        msg = json.loads(raw)
        method, mid = msg.get("method"), msg.get("id")
        params = msg.get("params", [])
    except (ValueError, AttributeError):
        return {"error": {"code": 3, "msg": "Invalid JSON: expected value at line 1 column 1"}}
    if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
        if not isinstance(params, list) or not all(isinstance(s, str) for s in params):
            return {"error": {"code": 2, "msg": "Invalid request: invalid type: expected a sequence of strings"},
                    "id": mid}
        for s in params:
            if method == "SUBSCRIBE" and s not in conn.streams:
                conn.streams.append(s)
            elif method == "UNSUBSCRIBE" and s in conn.streams:
                conn.streams.remove(s)
            note = "" if conn.route == "private" or conn.delivers(s) else \
                f" ({stream_category(s)} stream: accepted, never delivered on {conn.route})"
            log.info("ws %s %s %s%s", conn.peer, method.lower(), s, note)
        return {"result": None, "id": mid}
    if method == "LIST_SUBSCRIPTIONS":
        return {"result": list(conn.streams), "id": mid}
    if method in ("SET_PROPERTY", "GET_PROPERTY"):
        return {"result": None if method == "SET_PROPERTY" else False, "id": mid}
    return {"error": {"code": 2, "msg": f"Invalid request: unknown variant `{method}`"}, "id": mid}


def _int(p: dict, name: str, default):
    v = p.get(name)
    if v in (None, ""):
        return default
    try:
        return int(v)
    except ValueError:
        raise mandatory(name) from None


def keys_from_env() -> tuple[str, str, bool]:
    """(api key, secret, from_env): DOLPHIN_VENUE_API_KEY / _SECRET, else the built-in dev pair."""
    key, secret = os.environ.get("DOLPHIN_VENUE_API_KEY"), os.environ.get("DOLPHIN_VENUE_API_SECRET")
    if key and secret:
        return key, secret, True
    return DEV_API_KEY, DEV_API_SECRET, False

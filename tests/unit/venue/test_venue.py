"""`dolphin venue` as a real loopback server (a subprocess): REST endpoints and Binance errors, signed
requests, the routed WebSocket streams (and the legacy path that delivers nothing), the user data stream
through an order's lifecycle, payload shapes against Binance's documented examples, SIGTERM and restart."""

import asyncio
import json
import signal
import time
from pathlib import Path

import pytest
import websockets

from tests.support.venue import KEY, SECRET, VenueProcess, call

SPEED = 0.25
FIX = Path(__file__).resolve().parents[2] / "fixtures" / "binance"


@pytest.fixture(scope="module")
def venue():
    v = VenueProcess("--speed", str(SPEED), "--symbols", "BTCUSDT,ETHUSDT,DOGEUSDT", "--days", "1",
                     "--history-bars", "100")
    yield v
    rc, log = v.stop()
    assert rc == 0, log[-2000:]
    assert KEY not in log and SECRET not in log  # keys never logged


def fixture(name):
    return json.loads((FIX / name).read_text())


def same_shape(doc, ours, path="$"):
    """Every field of Binance's documented example is in ours, with the same JSON type (recursively)."""
    if isinstance(doc, dict):
        assert isinstance(ours, dict), path
        for k, v in doc.items():
            assert k in ours, f"{path}.{k} missing"
            if v is not None:
                same_shape(v, ours[k], f"{path}.{k}")
    elif isinstance(doc, list):
        assert isinstance(ours, list), path
        if not doc or (not ours and not isinstance(doc[0], (dict, list))):  # e.g. underlyingSubType: []
            return
        assert ours, path
        if not (isinstance(doc[0], list) and isinstance(doc[0][0], str)):  # klines / price levels
            same_shape(doc[0], ours[0], f"{path}[0]")
        else:
            assert all(type(a) is type(b) for a, b in zip(doc[0], ours[0])), path
    else:
        assert type(doc) is type(ours) or {type(doc), type(ours)} <= {int, float}, f"{path}: {doc!r} vs {ours!r}"


def ws_collect(url, n, timeout, send=None):
    """Messages from a WebSocket (JSON-decoded): up to n within timeout seconds."""
    async def run():
        out = []
        async with websockets.connect(url, open_timeout=5) as ws:
            for m in send or []:
                await ws.send(json.dumps(m))
            end = time.monotonic() + timeout
            while len(out) < n and time.monotonic() < end:
                try:
                    raw = await asyncio.wait_for(ws.recv(), end - time.monotonic())
                except asyncio.TimeoutError:
                    break
                out.append((time.monotonic(), json.loads(raw)))
        return out
    return asyncio.run(run())


# ---------------------------------------------------------------------------------------------- REST
def test_market_rest_endpoints_follow_the_venue_clock(venue):
    assert venue.get("/fapi/v1/ping") == (200, {})
    _, t = venue.get("/fapi/v1/time")
    st, info = venue.get("/fapi/v1/exchangeInfo")
    btc = next(s for s in info["symbols"] if s["symbol"] == "BTCUSDT")
    f = {x["filterType"]: x for x in btc["filters"]}
    assert (f["PRICE_FILTER"]["tickSize"], f["LOT_SIZE"]["stepSize"], btc["pricePrecision"]) == ("0.1", "0.001", 1)
    assert {"MARKET_LOT_SIZE", "MIN_NOTIONAL"} <= set(f) and btc["contractType"] == "PERPETUAL"
    doge = next(s for s in info["symbols"] if s["symbol"] == "DOGEUSDT")
    assert doge["quantityPrecision"] == 0 and doge["pricePrecision"] == 5
    _, kl = venue.get("/fapi/v1/klines", symbol="BTCUSDT", interval="5m", limit=1500)
    _, t2 = venue.get("/fapi/v1/time")
    assert 100 <= len(kl) and all(b[0] - a[0] == 300_000 for a, b in zip(kl, kl[1:]))
    assert kl[-1][6] < t2["serverTime"] and t["serverTime"] <= t2["serverTime"]  # no bar from the future
    assert kl[-1][6] + 1 + 300_000 > t2["serverTime"]  # ... and the last closed one is there
    _, first = venue.get("/fapi/v1/klines", symbol="BTCUSDT", interval="5m", startTime=kl[5][0], limit=3)
    assert [k[0] for k in first] == [k[0] for k in kl[5:8]]
    _, d = venue.get("/fapi/v1/depth", symbol="BTCUSDT", limit=10)
    assert d["synthetic"] is True and len(d["bids"]) == len(d["asks"]) == 10
    assert float(d["bids"][0][0]) < float(d["asks"][0][0])
    _, pi = venue.get("/fapi/v1/premiumIndex", symbol="ETHUSDT")
    assert pi["nextFundingTime"] > pi["time"] and pi["nextFundingTime"] % (8 * 3_600_000) == 0
    _, fr = venue.get("/fapi/v1/fundingRate", symbol="BTCUSDT")
    assert fr and all(x["fundingTime"] <= t2["serverTime"] + 300_000 for x in fr)


def test_errors_and_signatures(venue):
    assert venue.get("/fapi/v1/klines", symbol="NOPEUSDT", interval="5m") == \
        (400, {"code": -1121, "msg": "Invalid symbol."})
    st, e = venue.get("/fapi/v1/klines", symbol="BTCUSDT")
    assert st == 400 and e["code"] == -1102 and "'interval'" in e["msg"]
    assert venue.get("/fapi/v1/klines", symbol="BTCUSDT", interval="1h")[1]["code"] == -1120
    base = venue.http
    assert call(base, "GET", "/fapi/v2/balance", {}, signed=True, secret="wrong")[1]["code"] == -1022
    assert call(base, "GET", "/fapi/v2/balance", {}, signed=True, key="other") == \
        (401, {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."})
    assert call(base, "GET", "/fapi/v2/balance", {"timestamp": 1})[1]["code"] == -2014  # no key header
    assert call(base, "GET", "/fapi/v2/balance", {"timestamp": int(time.time() * 1000)},
                headers={"X-MBX-APIKEY": KEY})[1]["code"] == -1102  # unsigned
    stale = int(time.time() * 1000) - 60_000
    assert call(base, "GET", "/fapi/v2/balance", {"timestamp": stale}, signed=True)[1]["code"] == -1021
    st, b = venue.signed("GET", "/fapi/v2/balance")
    assert st == 200 and b[0]["asset"] == "USDT"
    assert venue.signed("DELETE", "/fapi/v1/order", symbol="BTCUSDT", orderId=42)[1] == \
        {"code": -2011, "msg": "Unknown order sent."}
    assert venue.signed("GET", "/fapi/v1/order", symbol="BTCUSDT", orderId=42)[1]["code"] == -2013
    assert venue.signed("POST", "/fapi/v1/order", symbol="BTCUSDT", side="BUY", type="MARKET",
                        quantity="100")[1] == {"code": -2019, "msg": "Margin is insufficient."}
    assert venue.signed("POST", "/fapi/v1/order", symbol="BTCUSDT", side="BUY", type="LIMIT",
                        quantity="0.010", timeInForce="GTC")[1]["code"] == -1102  # no price
    errs = fixture("errors.json")
    assert errs["-2019"] == {"code": -2019, "msg": "Margin is insufficient."}


def test_rest_payloads_match_binance_documented_examples(venue):
    venue.signed("POST", "/fapi/v1/order", symbol="DOGEUSDT", side="BUY", type="MARKET", quantity="1000")
    checks = [
        ("time.json", venue.get("/fapi/v1/time")),
        ("exchange_info.json", venue.get("/fapi/v1/exchangeInfo")),
        ("klines.json", venue.get("/fapi/v1/klines", symbol="BTCUSDT", interval="5m", limit=5)),
        ("depth.json", venue.get("/fapi/v1/depth", symbol="BTCUSDT", limit=5)),
        ("premium_index.json", venue.get("/fapi/v1/premiumIndex", symbol="BTCUSDT")),
        ("funding_rate.json", venue.get("/fapi/v1/fundingRate", symbol="BTCUSDT")),
        ("listen_key.json", call(venue.http, "POST", "/fapi/v1/listenKey", {})),
        ("commission_rate.json", venue.signed("GET", "/fapi/v1/commissionRate", symbol="BTCUSDT")),
        ("balance_v2.json", venue.signed("GET", "/fapi/v2/balance")),
        ("account_v2.json", venue.signed("GET", "/fapi/v2/account")),
        ("position_risk_v3.json", venue.signed("GET", "/fapi/v3/positionRisk")),
        ("order.json", venue.signed("POST", "/fapi/v1/order", symbol="BTCUSDT", side="BUY", type="LIMIT",
                                    timeInForce="GTC", quantity="0.010", price="10000.0")),
        ("user_trades.json", venue.signed("GET", "/fapi/v1/userTrades", symbol="DOGEUSDT")),
    ]
    for name, (status, body) in checks:
        assert status == 200, (name, body)
        same_shape(fixture(name), body, name)
    venue.signed("DELETE", "/fapi/v1/allOpenOrders", symbol="BTCUSDT")
    venue.signed("POST", "/fapi/v1/order", symbol="DOGEUSDT", side="SELL", type="MARKET", quantity="1000",
                 reduceOnly="true")


# ---------------------------------------------------------------------------------------------- streams
def test_routed_market_stream_delivers_klines_in_order_at_the_replay_speed(venue):
    msgs = ws_collect(f"{venue.ws}/market/stream?streams=btcusdt@kline_5m/ethusdt@kline_5m", 6, 8 * SPEED + 3)
    assert len(msgs) == 6
    by = {}
    for t, m in msgs:
        assert m["stream"] in ("btcusdt@kline_5m", "ethusdt@kline_5m")
        same_shape(fixture("ws_kline.json"), m["data"])
        assert m["data"]["k"]["x"] is True and m["data"]["k"]["i"] == "5m"
        by.setdefault(m["stream"], []).append((t, m["data"]["k"]["t"], m["data"]["E"]))
    for rows in by.values():
        opens = [r[1] for r in rows]
        assert all(b - a == 300_000 for a, b in zip(opens, opens[1:]))  # consecutive bars, in order
        gaps = [b[0] - a[0] for a, b in zip(rows, rows[1:])]
        assert all(0.5 * SPEED < g < 3 * SPEED for g in gaps), gaps  # one bar per tick
    _, t = venue.get("/fapi/v1/time")
    assert by["btcusdt@kline_5m"][-1][1] + 300_000 <= t["serverTime"]


def test_subscribe_messages_public_depth_and_ping(venue):
    async def run():
        async with websockets.connect(f"{venue.ws}/public/ws", open_timeout=5) as ws:
            await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@depth5@100ms",
                                                                        "ethusdt@bookTicker"], "id": 1}))
            assert json.loads(await ws.recv()) == fixture("ws_subscribe_ack.json")
            await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 3}))
            assert json.loads(await ws.recv()) == {"result": ["btcusdt@depth5@100ms", "ethusdt@bookTicker"], "id": 3}
            pong = await ws.ping()
            await asyncio.wait_for(pong, 2)  # client pings are answered
            got = {}
            while len(got) < 2:
                m = json.loads(await asyncio.wait_for(ws.recv(), 3))
                got[m["e"]] = m
            same_shape(fixture("ws_depth_partial.json"), got["depthUpdate"])
            same_shape(fixture("ws_book_ticker.json"), got["bookTicker"])
            assert got["depthUpdate"]["synthetic"] is True and len(got["depthUpdate"]["b"]) == 5
            await ws.send(json.dumps({"method": "UNSUBSCRIBE", "params": ["btcusdt@depth5@100ms",
                                                                          "ethusdt@bookTicker"], "id": 4}))
            assert json.loads(await ws.recv()) == {"result": None, "id": 4}
    asyncio.run(run())
    msgs = ws_collect(f"{venue.ws}/market/stream?streams=btcusdt@markPrice@1s/btcusdt@aggTrade", 2, 4 * SPEED + 2)
    kinds = {m["data"]["e"]: m["data"] for _, m in msgs}
    same_shape(fixture("ws_mark_price.json"), kinds["markPriceUpdate"])
    same_shape(fixture("ws_agg_trade.json"), kinds["aggTrade"])


def test_legacy_unrouted_path_accepts_market_streams_and_never_delivers(venue):
    sub = [{"method": "SUBSCRIBE", "params": ["btcusdt@kline_5m"], "id": 7}]
    for url, send in [(f"{venue.ws}/ws", sub), (f"{venue.ws}/stream?streams=btcusdt@kline_5m", None),
                      (f"{venue.ws}/ws/btcusdt@kline_5m", None), (f"{venue.ws}/public/ws", sub)]:
        msgs = [m for _, m in ws_collect(url, 5, 4 * SPEED, send)]
        assert msgs == ([{"result": None, "id": 7}] if send else []), url  # acked, then silence
    # the same client on the routed URL gets its bars
    assert ws_collect(f"{venue.ws}/market/ws/btcusdt@kline_5m", 1, 4 * SPEED + 2)[0][1]["e"] == "kline"


def test_order_lifecycle_on_the_user_data_stream(venue):
    st, lk = call(venue.http, "POST", "/fapi/v1/listenKey", {})
    assert st == 200 and call(venue.http, "PUT", "/fapi/v1/listenKey", {})[0] == 200

    async def run():
        async with websockets.connect(f"{venue.ws}/private/ws?listenKey={lk['listenKey']}", open_timeout=5) as ws:
            await asyncio.sleep(0.1)
            r1 = venue.signed("POST", "/fapi/v1/order", symbol="ETHUSDT", side="BUY", type="MARKET",
                              quantity="1.000", newClientOrderId="dolphin-1")[1]
            _, k = venue.get("/fapi/v1/klines", symbol="ETHUSDT", interval="5m", limit=1)
            r2 = venue.signed("POST", "/fapi/v1/order", symbol="ETHUSDT", side="SELL", type="LIMIT",
                              timeInForce="GTC", quantity="1.000", price=f"{float(k[0][4]) * 1.5:.2f}",
                              reduceOnly="true")[1]
            assert venue.signed("GET", "/fapi/v1/openOrders", symbol="ETHUSDT")[1][0]["orderId"] == r2["orderId"]
            c = venue.signed("DELETE", "/fapi/v1/order", symbol="ETHUSDT", orderId=r2["orderId"])[1]
            assert c["status"] == "CANCELED"
            r3 = venue.signed("POST", "/fapi/v1/order", symbol="ETHUSDT", side="SELL", type="MARKET",
                              quantity="1.000", reduceOnly="true")[1]
            events = []
            while len(events) < 8:
                events.append(json.loads(await asyncio.wait_for(ws.recv(), 3)))
            return r1, r2, r3, events
    r1, r2, r3, ev = asyncio.run(run())
    seq = [(e["e"], e["o"]["i"], e["o"]["x"], e["o"]["X"]) if e["e"] == "ORDER_TRADE_UPDATE" else (e["e"],)
           for e in ev]
    assert seq == [("ORDER_TRADE_UPDATE", r1["orderId"], "NEW", "NEW"),
                   ("ORDER_TRADE_UPDATE", r1["orderId"], "TRADE", "FILLED"), ("ACCOUNT_UPDATE",),
                   ("ORDER_TRADE_UPDATE", r2["orderId"], "NEW", "NEW"),
                   ("ORDER_TRADE_UPDATE", r2["orderId"], "CANCELED", "CANCELED"),
                   ("ORDER_TRADE_UPDATE", r3["orderId"], "NEW", "NEW"),
                   ("ORDER_TRADE_UPDATE", r3["orderId"], "TRADE", "FILLED"), ("ACCOUNT_UPDATE",)]
    assert ev[0]["o"]["c"] == "dolphin-1"
    same_shape(fixture("ws_order_trade_update.json"), ev[0])
    same_shape(fixture("ws_order_trade_update_trade.json"), ev[1])
    same_shape(fixture("ws_account_update.json"), ev[2])
    assert ev[2]["a"]["P"][0]["pa"] == "1.000" and ev[7]["a"]["P"][0]["pa"] == "0.000"
    trades = venue.signed("GET", "/fapi/v1/userTrades", symbol="ETHUSDT")[1][-2:]
    entry, exit_ = float(trades[0]["price"]), float(trades[1]["price"])
    assert float(trades[1]["realizedPnl"]) == pytest.approx(exit_ - entry, abs=1e-6)
    assert venue.signed("GET", "/fapi/v3/positionRisk", symbol="ETHUSDT")[1] == []
    assert call(venue.http, "DELETE", "/fapi/v1/listenKey", {})[0] == 200


# ---------------------------------------------------------------------------------------------- process
def test_sigterm_stops_cleanly_and_a_restart_keeps_the_position(tmp_path):
    state = tmp_path / "venue-state.json"
    args = ("--speed", "0.2", "--symbols", "BTCUSDT", "--days", "1", "--history-bars", "20", "--state", str(state))
    v = VenueProcess(*args)
    try:
        st, o = v.signed("POST", "/fapi/v1/order", symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.050")
        assert st == 200
        _, t_before = v.get("/fapi/v1/time")
    finally:
        v.proc.send_signal(signal.SIGTERM)
        rc, log = v.stop()
    assert rc == 0 and "venue stopped" in log and "Traceback" not in log
    assert "data set usdtm-5m-2023" in log
    v2 = VenueProcess(*args)
    try:
        pos = v2.signed("GET", "/fapi/v3/positionRisk", symbol="BTCUSDT")[1]
        _, t_after = v2.get("/fapi/v1/time")
    finally:
        rc2, log2 = v2.stop()
    assert pos and pos[0]["positionAmt"] == "-0.050"
    assert t_after["serverTime"] >= t_before["serverTime"]  # the replay resumes, it does not restart
    assert "state restored" in log2 and rc2 == 0

"""dolphin.book.publisher against a scripted loopback WebSocket server (and a scripted exchangeInfo on the same
port): normal flow, ids out of order / gaps, a dropped connection, silence, malformed JSON, empty and crossed
sides, a failing exchangeInfo request, a symbol that disappears, the 24 h roll, a store outage. Each case is
reported by symbol and nothing crashes. Waits poll for a condition with a generous deadline; no durations are
asserted."""

import asyncio
import json
import threading
import time
from http import HTTPStatus

import pyarrow.dataset as ds
import pytest
from websockets.asyncio.server import serve
from websockets.datastructures import Headers
from websockets.http11 import Response

from dolphin.book.publisher import BookPublisher, StoreWriter
from dolphin.store import FEATURES, StoreUnavailableError
from dolphin.adapters.store_factory import open_store
from runtime.risk import _parse_book

pytestmark = pytest.mark.timeout(90)

BOOK_B = [["100.0", "50"], ["99.9", "40"], ["99.8", "30"]]
BOOK_A = [["100.1", "20"], ["100.2", "20"], ["100.3", "20"]]


def depth(sym, u, *, bids=BOOK_B, asks=BOOK_A, pu=None, e_ms=None):
    return {"stream": f"{sym.lower()}@depth20@500ms",
            "data": {"e": "depthUpdate", "E": e_ms or 1_700_000_000_000 + u * 500, "T": 0, "s": sym, "U": u,
                     "u": u, "pu": u - 1 if pu is None else pu, "b": bids, "a": asks}}


class Rec0:
    value = {}


class MemStore:
    """The store port's put, recording every write (thread-safe); ``down`` makes it unavailable."""

    def __init__(self):
        self.puts, self.lock, self.down = [], threading.Lock(), False

    def put(self, map_name, key, record):
        if self.down:
            raise StoreUnavailableError("scripted outage")
        with self.lock:
            self.puts.append((map_name, key, record))

    def keys_written(self):
        with self.lock:
            return [k for _, k, _ in self.puts]

    def latest(self, key):
        with self.lock:
            return [r for _, k, r in self.puts if k == key][-1]

    def close(self):
        pass


class Script:
    """Connection n gets ``conns[n]`` (the last one again after the list): a list of actions
    ("send", obj|text), ("sleep", s), ("close",), ("hold",). exchangeInfo answers ``info`` (a list of
    (symbol, status)) or HTTP 500 when ``info`` is None."""

    def __init__(self, conns, info=(("AAAUSDT", "TRADING"), ("BBBUSDT", "TRADING"))):
        self.conns, self.info, self.n, self.paths, self.received = conns, info, 0, [], []

    def process_request(self, connection, request):
        self.paths.append(request.path)
        if request.path.startswith("/fapi/v1/exchangeInfo"):
            if self.info is None:
                return Response(500, "Internal Server Error", Headers({"Content-Type": "application/json"}),
                                b'{"code":-1000,"msg":"scripted failure"}')
            body = json.dumps({"symbols": [{"symbol": s, "status": st} for s, st in self.info]}).encode()
            return Response(HTTPStatus.OK, "OK", Headers({"Content-Type": "application/json"}), body)
        return None

    async def handler(self, ws):
        script = self.conns[min(self.n, len(self.conns) - 1)]
        self.n += 1

        async def reader():
            async for m in ws:
                self.received.append(json.loads(m))
        rt = asyncio.create_task(reader())
        try:
            for act in script:
                if act[0] == "send":
                    await ws.send(act[1] if isinstance(act[1], str) else json.dumps(act[1]))
                elif act[0] == "sleep":
                    await asyncio.sleep(act[1])
                elif act[0] == "close":
                    await ws.close()
                    return
                elif act[0] == "hold":
                    break
            await ws.wait_closed()  # hold the connection until the client (or the server's shutdown) closes it
        except Exception:  # the client went away mid-script: the script ends with the connection
            pass
        finally:
            rt.cancel()


def run_case(script, until, *, store=None, timeout=15.0, **kw):
    """Serve ``script`` on loopback, run a publisher until ``until(pub, store)`` holds (or the deadline), stop it."""
    store = MemStore() if store is None else store
    symbols = kw.pop("symbols", ["AAAUSDT", "BBBUSDT"])
    out = {}

    async def main():
        async with serve(script.handler, "127.0.0.1", 0, process_request=script.process_request) as server:
            port = server.sockets[0].getsockname()[1]
            opts = dict(min_interval_s=0, silent_s=0.6, conn_idle_s=1.5, backoff_min_s=0.05, backoff_max_s=0.2,
                        seed=7, info_every_s=3600)
            opts.update(kw)
            pub = BookPublisher(symbols, store, ws_url=f"ws://127.0.0.1:{port}", http_url=f"http://127.0.0.1:{port}",
                                **opts)
            out["pub"] = pub
            stop = asyncio.Event()
            task = asyncio.create_task(pub.run(stop))
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not until(pub, store):
                await asyncio.sleep(0.02)
            out["met"] = until(pub, store)
            stop.set()
            await asyncio.wait_for(task, 20)
    asyncio.run(main())
    assert out["met"], f"condition not met; reports: {out['pub'].reports}"
    return out["pub"], store


def last_u(store, sym):
    ups = [r.value["update_id"] for _, k, r in list(store.puts) if k == f"asset_{sym}_ob"]
    return ups[-1] if ups else None


def written_u(store, sym):
    return [r.value["update_id"] for _, k, r in list(store.puts) if k == f"asset_{sym}_ob"]


def flow(sym, us, **kw):
    return [("send", depth(sym, u, **kw)) for u in us]


@pytest.mark.parametrize("writers", [1, 2])
def test_normal_flow_publishes_every_asset_with_exchange_and_publish_times(tmp_path, writers):
    script = Script([flow("AAAUSDT", range(1, 6)) + flow("BBBUSDT", range(1, 6)) + [("hold",)]])
    pub, store = run_case(script, lambda p, s: last_u(s, "AAAUSDT") == 5 and last_u(s, "BBBUSDT") == 5,
                          record_dir=tmp_path / "book", record_every_s=0, writers=writers)
    assert len(pub.writers) == writers
    assert pub.books["AAAUSDT"].published == 5  # every message handed over; the writer keeps the newest per asset
    rec = store.latest("asset_AAAUSDT_ob")
    v = rec.value
    assert v["symbol"] == "AAAUSDT" and v["update_id"] == 5
    assert v["event_time_ms"] == 1_700_000_002_500 and v["event_time"] == "2023-11-14T22:13:22.500Z"
    assert v["receive_time_ms"] <= v["publish_time_ms"] and rec.timestamp_ms == v["receive_time_ms"]
    assert -1 <= v["imbalance"] <= 1 and 0 <= v["depth_quality"] <= 1 and 0 <= v["fill_prob"] <= 1
    assert -1 <= v["agreement"] <= 1
    b = 100.0 * 50 + 99.9 * 40 + 99.8 * 30
    a = 100.1 * 20 + 100.2 * 20 + 100.3 * 20
    assert v["bid_notional"] == pytest.approx(b) and v["ask_notional"] == pytest.approx(a)
    assert v["imbalance"] == pytest.approx((b - a) / (b + a))
    assert v["depth_quality"] == 1.0  # the same book every time: as deep as its own reference
    dq, fp, ts = _parse_book(rec)  # the runtime reads it
    assert (dq, fp, ts) == (v["depth_quality"], v["fill_prob"], v["receive_time_ms"])
    assert pub.reports == []
    assert script.paths[0] == "/fapi/v1/exchangeInfo"
    assert script.paths[1] == "/public/stream?streams=aaausdt@depth20@500ms/bbbusdt@depth20@500ms"
    rows = ds.dataset(tmp_path / "book", format="parquet").to_table().to_pylist()
    assert len(rows) == pub.writer.written and {r["symbol"] for r in rows} == {"AAAUSDT", "BBBUSDT"}
    assert all(r["visible_ms"] >= r["publish_ms"] >= r["receive_ms"] for r in rows)


def test_embedded_store_receives_the_records(home):
    store = open_store("embedded", path=home / "s.sqlite")
    try:
        script = Script([flow("AAAUSDT", range(1, 4)) + [("hold",)]])
        run_case(script, lambda p, s: (s.get(FEATURES, "asset_AAAUSDT_ob") or Rec0).value.get("update_id") == 3,
                 store=store)
        rec = store.get(FEATURES, "asset_AAAUSDT_ob")
        assert rec is not None and rec.value["update_id"] == 3
        assert store.get(FEATURES, "asset_BBBUSDT_ob") is None  # never heard of: never published
    finally:
        store.close()


def test_duplicates_and_out_of_order_ids_are_dropped_gaps_counted():
    msgs = flow("AAAUSDT", [1, 2, 2, 1, 5, 6])  # 2 again and 1: dropped; 5 after 2: pu=4 != 2 -> one gap
    script = Script([msgs + [("hold",)]])
    pub, store = run_case(script, lambda p, s: last_u(s, "AAAUSDT") == 6)
    b = pub.books["AAAUSDT"]
    assert b.dropped_old == 2 and b.gaps == 1 and b.published == 4
    ups = written_u(store, "AAAUSDT")  # newest per asset: a burst may be coalesced, never reordered
    assert ups == sorted(set(ups)) and set(ups) <= {1, 2, 5, 6}


def test_dropped_connection_reconnects_with_backoff_and_resumes():
    script = Script([flow("AAAUSDT", [1, 2]) + [("close",)],
                     flow("AAAUSDT", [1, 2, 3]) + [("hold",)]])  # the new connection numbers anew: not dropped
    pub, store = run_case(script, lambda p, s: p.books["AAAUSDT"].published >= 5)
    assert pub.connects == [2]
    conn = pub.reported(None, "connection0")
    assert len(conn) == 1 and "reconnecting with back-off (attempt 1" in conn[0].message
    assert "AAAUSDT..BBBUSDT" in conn[0].message  # which connection, by its symbols
    assert store.latest("asset_AAAUSDT_ob").value["update_id"] == 3


def test_silent_symbol_stops_publishing_and_is_reported_by_name():
    # BBB sends twice then falls silent while AAA keeps flowing (the connection stays alive)
    aaa = [x for u in range(1, 40) for x in (("send", depth("AAAUSDT", u)), ("sleep", 0.05))]
    script = Script([flow("BBBUSDT", [1, 2]) + aaa + [("hold",)]])
    pub, store = run_case(script, lambda p, s: bool(p.reported("BBBUSDT", "silent")))
    assert pub.books["BBBUSDT"].status == "silent"
    assert "not published" in pub.reported("BBBUSDT", "silent")[0].message
    assert set(written_u(store, "BBBUSDT")) <= {1, 2} and pub.books["BBBUSDT"].published == 2
    assert not pub.reported("AAAUSDT", "silent")


def test_silent_connection_is_reopened():
    script = Script([flow("AAAUSDT", [1]) + [("hold",)], flow("AAAUSDT", [1, 2]) + [("hold",)]])
    pub, _ = run_case(script, lambda p, s: p.connects[0] >= 2 and p.books["AAAUSDT"].published >= 3,
                      conn_idle_s=0.5)
    assert "no message for 0.5 s" in pub.reported(None, "connection0")[0].message


def test_malformed_json_is_reported_by_symbol_and_the_feed_continues():
    script = Script([flow("AAAUSDT", [1]) + [("send", '{"stream":"bbbusdt@depth20@500ms","data":{"s":"BBBUSDT",'),
                                             ("send", "not json at all"),
                                             ("send", {"stream": "aaausdt@depth20@500ms", "data": {"s": "AAAUSDT"}})]
                    + flow("AAAUSDT", [2]) + [("hold",)]])
    pub, store = run_case(script, lambda p, s: p.books["AAAUSDT"].published >= 2)
    assert len(pub.reported("BBBUSDT", "malformed")) == 1 and "malformed JSON" in pub.reported("BBBUSDT", "malformed")[0].message
    assert len(pub.reported(None, "malformed")) == 1
    assert "without valid E/u/b/a" in pub.reported("AAAUSDT", "malformed")[0].message
    assert pub.connects == [1]


@pytest.mark.parametrize("bids,asks,why", [([], BOOK_A, "empty bid side"),
                                           (BOOK_B, [["100.1", "0"]], "empty ask side"),
                                           ([["101", "1"]], BOOK_A, "crossed book")])
def test_empty_or_crossed_side_is_not_published_and_reported(bids, asks, why):
    script = Script([flow("AAAUSDT", [1]) + flow("AAAUSDT", [2, 3], bids=bids, asks=asks) + flow("AAAUSDT", [4])
                     + [("hold",)]])
    pub, store = run_case(script, lambda p, s: last_u(s, "AAAUSDT") == 4)
    rep = pub.reported("AAAUSDT", "broken")
    assert len(rep) == 1 and why in rep[0].message and "not published" in rep[0].message  # once per episode
    assert set(written_u(store, "AAAUSDT")) <= {1, 4} and pub.books["AAAUSDT"].published == 2
    assert pub.books["AAAUSDT"].status == "live" and pub.books["AAAUSDT"].broken == 2


def test_failing_exchange_info_keeps_the_configured_symbols():
    script = Script([flow("AAAUSDT", [1, 2]) + [("hold",)]], info=None)
    pub, store = run_case(script, lambda p, s: last_u(s, "AAAUSDT") == 2)
    rep = pub.reported(None, "exchange_info")
    assert len(rep) == 1 and "HTTPError" in rep[0].message and "keeping the configured symbols" in rep[0].message
    assert pub.books["AAAUSDT"].status == "live"


def test_symbol_that_disappears_is_unsubscribed_and_no_longer_published():
    script = Script([flow("AAAUSDT", [1]) + flow("BBBUSDT", [1]) + [("sleep", 0.6)] + flow("BBBUSDT", [2, 3])
                     + flow("AAAUSDT", [2]) + [("hold",)]])
    state = {"delisted": False}

    def until(p, s):
        if not state["delisted"] and p.books["BBBUSDT"].published >= 1:
            script.info = (("AAAUSDT", "TRADING"), ("BBBUSDT", "SETTLING"))
            state["delisted"] = True
        return p.books["AAAUSDT"].published >= 2 and bool(p.reported("BBBUSDT", "gone"))
    pub, store = run_case(script, until, info_every_s=0.2)
    rep = pub.reported("BBBUSDT", "gone")
    assert "status SETTLING" in rep[0].message and "unsubscribed" in rep[0].message
    assert {"method": "UNSUBSCRIBE", "params": ["bbbusdt@depth20@500ms"]}.items() <= script.received[0].items()
    assert written_u(store, "BBBUSDT") == [1] and pub.books["BBBUSDT"].published == 1


def test_unknown_symbol_in_the_feed_is_reported_and_ignored():
    script = Script([flow("ZZZUSDT", [1, 2]) + flow("AAAUSDT", [1]) + [("hold",)]])
    pub, store = run_case(script, lambda p, s: last_u(s, "AAAUSDT") == 1)
    assert len(pub.reported("ZZZUSDT", "unknown")) == 1
    assert store.keys_written() == ["asset_AAAUSDT_ob"]


def test_connection_is_rolled_before_the_24h_cut_without_backoff():
    script = Script([flow("AAAUSDT", [1, 2]) + [("hold",)]])
    pub, _ = run_case(script, lambda p, s: p.rolls[0] >= 2 and p.connects[0] >= 3, roll_s=0.3, conn_idle_s=5)
    assert pub.reported(None, "connection0") == []  # a roll is not a failure
    assert pub.connects[0] >= 3


def test_store_outage_keeps_newest_record_and_drops_stale_ones():
    store = MemStore()
    store.down = True
    w = StoreWriter(store, None, drop_after_s=3600)
    w.start()
    base = int(time.time() * 1000)
    for u in (1, 2, 3):
        w.submit({"symbol": "AAAUSDT", "receive_time_ms": base, "update_id": u})
    deadline = time.monotonic() + 10
    while w.failures < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    store.down = False
    deadline = time.monotonic() + 10
    while not store.puts and time.monotonic() < deadline:
        time.sleep(0.02)
    w.stop()
    w.join(10)
    assert [r.value["update_id"] for _, _, r in store.puts] == [3]
    # a pending record older than the silence bound is dropped, not written late
    w2 = StoreWriter(store, None, drop_after_s=1.0)
    w2.start()
    w2.submit({"symbol": "BBBUSDT", "receive_time_ms": base - 5000, "update_id": 9})
    w2.stop()
    w2.join(10)
    assert w2.dropped == 1 and all(k != "asset_BBBUSDT_ob" for k in store.keys_written())


def test_bad_configuration_names_the_problem():
    with pytest.raises(ValueError, match="invalid symbol name"):
        BookPublisher(["BTC-USDT"], MemStore())
    with pytest.raises(ValueError, match="no symbols"):
        BookPublisher([], MemStore())

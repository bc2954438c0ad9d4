"""Live ExF fetchers against a loopback HTTP server that answers in each API's real format, built from the
recorded files in <data>/exf. No test touches the internet: non-loopback connections are refused."""

import csv
import json
import socket
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest

from dolphin.exf import ExfHistory, family_names
from dolphin.adapters.exf_http import (ExfFetchWarning, FetchConfig, fetch_all, fetch_dvol, fetch_fear_greed,
                                  fetch_funding)
from dolphin.exf.indicators import REGISTRY
from dolphin.paths import data_root

UTC = timezone.utc
EXF = data_root() / "exf"
NOW = datetime(2025, 10, 17, 6, 0, tzinfo=UTC)  # after the last recorded fear & greed day (2025-10-16)
NOW_MS = int(NOW.timestamp() * 1000)
FAMILY_KEY = {"fear_greed": "fng", "deribit": "dvol", "binance_funding": "funding", "fred": "fred"}


def _rows(name: str) -> list[tuple[int, str]]:
    """(epoch ms, raw value text) up to NOW: what the real API would have had at NOW."""
    with (EXF / f"{name}.csv").open() as fh:
        out = [(int(datetime.fromisoformat(r["time"]).timestamp() * 1000), r["value"]) for r in csv.DictReader(fh)]
    return [r for r in out if r[0] <= NOW_MS]


def _fng_body(n: int) -> bytes:
    data = [{"value": str(int(float(v))), "value_classification": "Fear", "timestamp": str(t // 1000),
             "time_until_update": "3600"} for t, v in reversed(_rows("fear_greed")[-n:])]  # newest first, as live
    return json.dumps({"name": "Fear and Greed Index", "data": data, "metadata": {"error": None}}).encode()


def _dvol_body(q: dict) -> bytes:
    lo, hi = int(q["start_timestamp"][0]), int(q["end_timestamp"][0])
    rows = [(t, float(v)) for t, v in _rows("dvol_btc") if lo <= t <= hi]
    rows.append((rows[-1][0] + 86_400_000, 99.0))  # today's candle, still open at NOW: must not be used
    data = [[t, c - 1.0, c + 2.0, c - 3.0, c] for t, c in rows]  # close is the 5th column
    return json.dumps({"jsonrpc": "2.0", "result": {"data": data, "continuation": None}, "usIn": 1, "usOut": 2,
                       "usDiff": 1, "testnet": False}).encode()


def _funding_body(q: dict) -> bytes:
    rows = _rows("funding_btc_8h")[-int(q["limit"][0]):]
    return json.dumps([{"symbol": "BTCUSDT", "fundingTime": t,
                        "fundingRate": np.format_float_positional(float(v), trim="-"), "markPrice": "67000.1"}
                       for t, v in rows]).encode()


def _fred_body(q: dict, dots: int = 0) -> bytes:
    sid = q["id"][0]
    name = next(n for n, i in REGISTRY.items() if i.fred_id == sid)
    start = int(datetime.fromisoformat(q["cosd"][0]).replace(tzinfo=UTC).timestamp() * 1000)
    rows = [(t, v) for t, v in _rows(name) if t >= start]
    if dots:
        rows = rows[:-dots] + [(t, ".") for t, _ in rows[-dots:]]
    header = "DATE" if sid == "DGS2" else "observation_date"  # the older header must still parse
    lines = [f"{header},{sid}"] + [f"{datetime.fromtimestamp(t / 1000, UTC):%Y-%m-%d},{v}" for t, v in rows]
    return ("\n".join(lines) + "\n").encode()


class Loopback:
    """Per endpoint: a plan of actions consumed one per request (the last one repeats), and hit counts."""

    def __init__(self):
        self.plan: dict[str, list[str]] = {}
        self.hits: Counter = Counter()
        self.release = threading.Event()
        srv = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                u = urlparse(self.path)
                key = {"/fng/": "fng", "/api/v2/public/get_volatility_index_data": "dvol",
                       "/fapi/v1/fundingRate": "funding", "/graph/fredgraph.csv": "fred"}.get(u.path)
                if key is None:
                    return self._send(404, b"not found")
                srv.hits[key] += 1
                plan = srv.plan.get(key, ["ok"])
                action = plan.pop(0) if len(plan) > 1 else plan[0]
                q = parse_qs(u.query)
                if action == "sleep":
                    srv.release.wait(5)
                    return
                if action == "500":
                    return self._send(500, b"internal error")
                if action == "empty":
                    return self._send(200, b"")
                if action == "malformed":
                    return self._send(200, b'{"data": [{"value": "40",' if key != "fred" else b"<html>oops</html>")
                if action == "shape":
                    return self._send(200, b'{"data": "nope"}' if key != "fred" else b"a,b,c\n1,2,3\n")
                if action in ("deribit400", "deribit200"):
                    body = json.dumps({"jsonrpc": "2.0", "error": {"message": "bad_request", "code": 11050}})
                    return self._send(400 if action == "deribit400" else 200, body.encode())
                if action == "dots":
                    return self._send(200, _fred_body(q, dots=3))
                body = {"fng": lambda: _fng_body(int(q["limit"][0])), "dvol": lambda: _dvol_body(q),
                        "funding": lambda: _funding_body(q), "fred": lambda: _fred_body(q)}[key]()
                return self._send(200, body)

            def _send(self, code, body):
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    real = socket.socket.connect

    def guarded(self, addr):
        if isinstance(addr, tuple) and addr[0] not in ("127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"test tried to reach {addr}: only loopback is allowed")
        return real(self, addr)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture
def server():
    s = Loopback()
    yield s
    s.close()


@pytest.fixture(scope="module")
def hist():
    return ExfHistory.load()


def _cfg(server, **kw) -> tuple[FetchConfig, list]:
    sleeps: list[float] = []
    base = dict(alternative_me_url=server.url, deribit_url=server.url, binance_fapi_url=server.url,
                # healthy answers get a generous read timeout: under CI load a 0.25 s one could expire and
                # retry a family that is not under test; the timeout test sets its own short one
                fred_url=server.url, connect_timeout=1.0, read_timeout=2.0, retries=2, backoff_base=0.01,
                sleep=sleeps.append, now=lambda: NOW)
    base.update(kw)
    cfg = FetchConfig(**base)
    for u in (cfg.alternative_me_url, cfg.deribit_url, cfg.binance_fapi_url, cfg.fred_url):
        assert u.startswith("http://127.0.0.1:"), u
    return cfg, sleeps


LIVE = [n for f in FAMILY_KEY for n in family_names(f)]


def _assert_matches_history(snap, hist, names):
    ref = hist.as_of(NOW)
    for n in names:
        assert snap.values[n] is not None, (n, snap.reasons.get(n))
        assert snap.values[n] == ref.values[n] and snap.observed[n] == ref.observed[n], n


def test_real_formats_parse_to_recorded_values(server, hist):
    cfg, sleeps = _cfg(server)
    snap = fetch_all(cfg)
    _assert_matches_history(snap, hist, LIVE)
    assert snap.as_of == NOW and sleeps == []
    assert server.hits == Counter(fng=1, dvol=1, funding=1, fred=len(family_names("fred")))
    assert snap.observed["dvol_btc"] == "2025-10-16T00:00:00.000Z"  # the open candle of 10-17 is not used
    for n in family_names("market"):
        assert snap.values[n] is None and snap.reasons[n] == "no live fetcher (recorded history only)"
    assert snap.values["m2"] is None and "no source" in snap.reasons["m2"]
    assert all(v.startswith("ok") for v in snap.sources.values()), snap.sources
    json.dumps(snap.to_record(), allow_nan=False)


def test_single_fetchers_return_the_recorded_rows(server):
    cfg, _ = _cfg(server)
    fng = fetch_fear_greed(cfg, NOW_MS)[0]["fear_greed"]
    exp = _rows("fear_greed")[-cfg.fng_limit:]
    assert fng.obs_ms.tolist() == [t for t, _ in exp] and fng.values.tolist() == [float(v) for _, v in exp]
    dv = fetch_dvol(cfg, NOW_MS)[0]["dvol_btc"]
    exp = [(t, float(v)) for t, v in _rows("dvol_btc") if t >= NOW_MS - cfg.dvol_days * 86_400_000]
    assert dv.values[:-1].tolist() == [v for _, v in exp] and dv.values[-1] == 99.0
    fu = fetch_funding(cfg, NOW_MS)[0]["funding_btc_8h"]
    exp = _rows("funding_btc_8h")[-cfg.funding_limit:]
    assert fu.obs_ms.tolist() == [t for t, _ in exp] and fu.values.tolist() == [float(v) for _, v in exp]


@pytest.mark.parametrize("family", list(FAMILY_KEY))
def test_http_500_then_success_retries(server, hist, family):
    server.plan[FAMILY_KEY[family]] = ["500", "ok"]
    cfg, sleeps = _cfg(server)
    snap = fetch_all(cfg)
    _assert_matches_history(snap, hist, LIVE)
    expected = 2 if family != "fred" else len(family_names("fred")) + 1
    assert server.hits[FAMILY_KEY[family]] == expected
    assert sleeps == [cfg.backoff_base]  # one back-off before the single retry


@pytest.mark.parametrize("family", list(FAMILY_KEY))
def test_http_500_forever_gives_none_and_warning_others_fine(server, hist, family):
    key = FAMILY_KEY[family]
    server.plan[key] = ["500"]
    cfg, sleeps = _cfg(server)
    with pytest.warns(ExfFetchWarning, match=rf"ExF {family} fetch failed \({server.url}/") as rec:
        snap = fetch_all(cfg)
    assert len(rec) == 1  # FRED: the host is failing, remaining series skipped, not hammered
    assert "Traceback" not in str(rec[0].message)
    assert server.hits[key] == cfg.retries + 1
    assert sleeps == [0.01, 0.02]  # exponential back-off
    mine = family_names(family)
    for n in mine:
        assert snap.values[n] is None and "fetch failed" in snap.reasons[n] and "HTTP 500" in snap.reasons[n]
    _assert_matches_history(snap, hist, [n for n in LIVE if n not in mine])
    assert snap.sources[family].startswith("failed") or family == "fred"


@pytest.mark.parametrize("family", list(FAMILY_KEY))
def test_timeout_is_bounded_and_isolated(server, hist, family):
    server.plan[FAMILY_KEY[family]] = ["sleep"]
    # 1 s, not less: every source shares the read timeout, and the healthy loopback ones must answer within it
    # on a busy 2-core machine (0.25 s failed a healthy FRED source on a fresh-clone run beside other tests)
    cfg, _ = _cfg(server, retries=1, read_timeout=1.0)
    t0 = time.monotonic()
    with pytest.warns(ExfFetchWarning, match=rf"{family} .*timeout"):
        snap = fetch_all(cfg)
    # two 1 s read timeouts plus the healthy fetches (~3.5 s here); unbounded, the two attempts would wait out the
    # server's 5 s each (>= 10 s)
    assert time.monotonic() - t0 < 8.0
    for n in family_names(family):
        assert snap.values[n] is None and "timeout" in snap.reasons[n]
    _assert_matches_history(snap, hist, [n for n in LIVE if n not in family_names(family)])


@pytest.mark.parametrize("family", list(FAMILY_KEY))
@pytest.mark.parametrize("action,why", [("malformed", r"malformed JSON|unexpected CSV header"),
                                        ("empty", "empty body"),
                                        ("shape", r"wrong shape|unexpected CSV header")])
def test_bad_bodies_fail_without_retry(server, hist, family, action, why):
    key = FAMILY_KEY[family]
    server.plan[key] = [action]
    cfg, sleeps = _cfg(server)
    with pytest.warns(ExfFetchWarning, match=why):
        snap = fetch_all(cfg)
    # a bad answer is not retried (the same bytes would come back); FRED tries each series once
    assert server.hits[key] == (1 if family != "fred" else len(family_names("fred")))
    assert sleeps == []
    for n in family_names(family):
        assert snap.values[n] is None and "fetch failed" in snap.reasons[n]
    _assert_matches_history(snap, hist, [n for n in LIVE if n not in family_names(family)])


@pytest.mark.parametrize("action", ["deribit400", "deribit200"])
def test_deribit_error_object(server, hist, action):
    server.plan["dvol"] = [action]
    cfg, _ = _cfg(server)
    with pytest.warns(ExfFetchWarning, match=r"deribit .*bad_request"):
        snap = fetch_all(cfg)
    assert snap.values["dvol_btc"] is None and "bad_request" in snap.reasons["dvol_btc"]
    assert server.hits["dvol"] == 1
    _assert_matches_history(snap, hist, [n for n in LIVE if n != "dvol_btc"])


def test_fred_missing_dots_skipped(server, hist):
    server.plan["fred"] = ["dots"]
    cfg, _ = _cfg(server)
    snap = fetch_all(cfg)
    rows = [(t, v) for t, v in _rows("fred_DGS10")]
    last_real = rows[-4]  # the 3 newest rows are served as "."
    assert snap.observed["fred_DGS10"] == datetime.fromtimestamp(last_real[0] / 1000, UTC).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")
    assert snap.values["fred_DGS10"] == float(last_real[1])
    assert hist.as_of(NOW).observed["fred_DGS10"] > snap.observed["fred_DGS10"]  # the dots hid newer days


def test_disabled_family_and_config_validation(server):
    cfg, _ = _cfg(server, families=("fear_greed",))
    snap = fetch_all(cfg)
    assert snap.values["fear_greed"] is not None and snap.values["dvol_btc"] is None
    assert "disabled" in snap.reasons["dvol_btc"] and server.hits["dvol"] == 0
    with pytest.raises(ValueError, match="no live fetcher"):
        FetchConfig(families=("market",))

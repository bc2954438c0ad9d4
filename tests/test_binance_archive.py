"""Binance archive downloader against a loopback HTTP server serving zips + .CHECKSUM files built here
from REAL spot-5m-2024 candles, with failure modes: wrong checksum, 404 day, truncated body, dropped
connection (resume with Range), HTTP 500, slow server, corrupt cache entry, missing CHECKSUM."""

import hashlib
import http.server
import io
import threading
import time
import zipfile
from datetime import date

import numpy as np
import pyarrow.parquet as pq
import pytest

from dolphin.data import read_candles
from dolphin.data.binance_archive import ArchiveError, archive_path, download_klines, plan_periods
from dolphin.paths import data_root

DAY_MS = 86_400_000
DAYS = [date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 4)]


def _day_zip(sym, day):
    t = pq.read_table(data_root() / "klines" / "spot-5m-2024" / f"{sym}.parquet")
    ot = t.column("open_time").cast("int64").to_numpy()
    d0 = int(np.datetime64(day, "ms").astype(np.int64))
    m = (ot >= d0) & (ot < d0 + DAY_MS)
    cols = {k: t.column(k).to_numpy()[m] for k in ("open", "high", "low", "close", "volume")}
    lines = []
    for i, o in enumerate(ot[m]):
        v = [repr(float(cols[k][i])) for k in ("open", "high", "low", "close", "volume")]
        # 12 columns: open_time, o, h, l, c, v, close_time, quote_vol, trades, taker_buy_base, taker_buy_quote, ignore
        lines.append(",".join([str(o), *v, str(o + 299_999), "0", "0", "0", "0", "0"]))
    name = f"{sym}-5m-{day.isoformat()}"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{name}.csv", "\n".join(lines) + "\n")
    return f"{name}.zip", buf.getvalue(), ot[m], cols


class Archive:
    """Files by URL path plus per-path misbehaviour programs; every request is recorded."""

    def __init__(self):
        self.files, self.programs, self.requests = {}, {}, []
        self.lock = threading.Lock()

    def add(self, rel, body):
        self.files["/" + rel] = body
        sha = hashlib.sha256(body).hexdigest()
        self.files["/" + rel + ".CHECKSUM"] = f"{sha}  {rel.rsplit('/', 1)[1]}\n".encode()

    def take(self, path, key):
        """Consume one planned misbehaviour for this path (counts down)."""
        with self.lock:
            prog = self.programs.get(path, {})
            n = prog.get(key, 0)
            if n > 0:
                prog[key] = n - 1
                return True
            return False


def _handler(arch):
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def _serve(self, head):
            path = self.path
            rng = self.headers.get("Range")
            arch.requests.append((self.command, path, rng))
            prog = arch.programs.get(path, {})
            if arch.take(path, "slow"):
                time.sleep(1.5)
            if arch.take(path, "status500"):
                self.send_response(500)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = arch.files.get(path)
            if body is None or prog.get("gone"):
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if prog.get("corrupt"):
                body = body[:100] + bytes([body[100] ^ 0xFF]) + body[101:]
            start = 0
            if rng and not prog.get("ignore_range"):
                start = int(rng.split("=")[1].split("-")[0])
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            part = body[start:]
            self.send_header("Content-Length", str(len(part)))
            self.end_headers()
            if head:
                return
            if arch.take(path, "drop"):  # promise everything, send a third, hang up
                self.wfile.write(part[: len(part) // 3])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.wfile.write(part)

        def do_GET(self):
            self._serve(False)

        def do_HEAD(self):
            self._serve(True)

    return H


@pytest.fixture
def server():
    arch = Archive()
    for sym in ("BTCUSDT", "ETHUSDT"):
        for d in DAYS:
            name, body, _, _ = _day_zip(sym, d)
            arch.add(archive_path("spot", "daily", sym, "5m", d.isoformat()), body)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(arch))
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    arch.base = f"http://127.0.0.1:{srv.server_address[1]}"
    yield arch
    srv.shutdown()
    srv.server_close()


def _dl(arch, tmp_path, syms=("BTCUSDT", "ETHUSDT"), **kw):
    kw.setdefault("retries", 3)
    return download_klines(list(syms), "5m", DAYS[0], DAYS[-1], market="spot", cache_dir=tmp_path,
                           base_url=arch.base, granularity="daily", backoff_s=0.01, timeout_s=1.0, **kw)


def _zip_gets(arch):
    return [r for r in arch.requests if r[0] == "GET" and r[1].endswith(".zip")]


def test_download_verifies_caches_and_reuses(server, tmp_path):
    res = _dl(server, tmp_path)
    assert res.downloaded == 6 and res.cached == 0 and not res.missing
    for p in res.all_files():
        rel = "/" + str(p.relative_to(tmp_path))
        assert p.read_bytes() == server.files[rel]
    assert not list(tmp_path.rglob("*.part"))
    server.requests.clear()
    again = _dl(server, tmp_path)
    assert again.cached == 6 and again.downloaded == 0
    assert _zip_gets(server) == []  # only the CHECKSUM files were asked for


def test_downloaded_csv_matches_the_original_candles_and_reads_back(server, tmp_path):
    res = _dl(server, tmp_path, syms=("BTCUSDT",))
    cs = read_candles(res.files["BTCUSDT"][0].parent)
    c = cs["BTCUSDT"]
    ot, cols = [], {k: [] for k in ("open", "high", "low", "close", "volume")}
    for d in DAYS:
        _, _, t, v = _day_zip("BTCUSDT", d)
        ot.append(t)
        for k in cols:
            cols[k].append(v[k])
    assert np.array_equal(c.open_time, np.concatenate(ot))
    for k in cols:
        assert np.array_equal(getattr(c, k), np.concatenate(cols[k]))  # bit-exact values


def test_404_day_is_reported_missing(server, tmp_path):
    rel = "/" + archive_path("spot", "daily", "ETHUSDT", "5m", DAYS[1].isoformat())
    del server.files[rel], server.files[rel + ".CHECKSUM"]
    res = _dl(server, tmp_path)
    assert res.missing == {"ETHUSDT": [DAYS[1].isoformat()]}
    assert len(res.files["ETHUSDT"]) == 2 and len(res.files["BTCUSDT"]) == 3


def test_wrong_checksum_raises_and_leaves_nothing(server, tmp_path):
    rel = "/" + archive_path("spot", "daily", "BTCUSDT", "5m", DAYS[0].isoformat())
    server.files[rel + ".CHECKSUM"] = b"0" * 64 + b"  x.zip\n"
    with pytest.raises(ArchiveError) as e:
        _dl(server, tmp_path, syms=("BTCUSDT",))
    msg = str(e.value)
    assert rel in msg and "0" * 64 in msg and hashlib.sha256(server.files[rel]).hexdigest() in msg
    assert not (tmp_path / rel[1:]).exists()
    assert not list(tmp_path.rglob("*.part"))
    assert len([r for r in _zip_gets(server) if r[1] == rel]) == 3  # retried up to `retries`


def test_corrupt_body_once_is_retried(server, tmp_path):
    rel = "/" + archive_path("spot", "daily", "BTCUSDT", "5m", DAYS[2].isoformat())
    server.programs[rel] = {"corrupt": True}
    with pytest.raises(ArchiveError, match="checksum mismatch"):
        _dl(server, tmp_path, syms=("BTCUSDT",))
    assert not (tmp_path / rel[1:]).exists()


def test_truncated_zip_is_retried_from_scratch_when_range_is_ignored(server, tmp_path):
    rel = "/" + archive_path("spot", "daily", "BTCUSDT", "5m", DAYS[0].isoformat())
    server.programs[rel] = {"drop": 1, "ignore_range": True}
    res = _dl(server, tmp_path, syms=("BTCUSDT",))
    assert (tmp_path / rel[1:]).read_bytes() == server.files[rel]
    assert res.downloaded == 3
    assert len([r for r in _zip_gets(server) if r[1] == rel]) == 2


def test_dropped_connection_resumes_with_range(server, tmp_path):
    rel = "/" + archive_path("spot", "daily", "ETHUSDT", "5m", DAYS[1].isoformat())
    server.programs[rel] = {"drop": 2}
    _dl(server, tmp_path, syms=("ETHUSDT",))
    gets = [r for r in _zip_gets(server) if r[1] == rel]
    assert len(gets) == 3
    assert gets[0][2] is None
    starts = [int(g[2].split("=")[1].rstrip("-")) for g in gets[1:]]
    assert 0 < starts[0] < starts[1] < len(server.files[rel])  # each attempt continued where the last stopped
    assert (tmp_path / rel[1:]).read_bytes() == server.files[rel]


def test_http_500_and_timeouts_are_retried(server, tmp_path):
    rel = "/" + archive_path("spot", "daily", "BTCUSDT", "5m", DAYS[1].isoformat())
    server.programs[rel] = {"status500": 2}
    server.programs[rel + ".CHECKSUM"] = {"slow": 1}
    res = _dl(server, tmp_path, syms=("BTCUSDT",))
    assert res.downloaded == 3
    assert (tmp_path / rel[1:]).read_bytes() == server.files[rel]


def test_persistent_500_gives_a_clear_error(server, tmp_path):
    rel = "/" + archive_path("spot", "daily", "BTCUSDT", "5m", DAYS[0].isoformat())
    server.programs[rel + ".CHECKSUM"] = {"status500": 99}
    with pytest.raises(ArchiveError, match=r"failed after 4 attempts.*HTTP 500"):
        _dl(server, tmp_path, syms=("BTCUSDT",))


def test_corrupt_cache_entry_is_replaced(server, tmp_path):
    _dl(server, tmp_path, syms=("BTCUSDT",))
    rel = archive_path("spot", "daily", "BTCUSDT", "5m", DAYS[2].isoformat())
    (tmp_path / rel).write_bytes(b"garbage")
    res = _dl(server, tmp_path, syms=("BTCUSDT",))
    assert res.downloaded == 1 and res.cached == 2
    assert (tmp_path / rel).read_bytes() == server.files["/" + rel]


def test_missing_checksum_for_existing_zip_is_an_error(server, tmp_path):
    rel = "/" + archive_path("spot", "daily", "BTCUSDT", "5m", DAYS[0].isoformat())
    del server.files[rel + ".CHECKSUM"]
    with pytest.raises(ArchiveError, match="cannot verify"):
        _dl(server, tmp_path, syms=("BTCUSDT",))
    assert not (tmp_path / rel[1:]).exists()


def test_plan_periods_auto_uses_monthly_for_whole_past_months():
    p = plan_periods(date(2024, 1, 30), date(2024, 3, 2), "auto", today=date(2024, 3, 10))
    assert p == [("daily", "2024-01-30"), ("daily", "2024-01-31"), ("monthly", "2024-02"),
                 ("daily", "2024-03-01"), ("daily", "2024-03-02")]
    # the current month is never monthly (not published yet)
    assert plan_periods(date(2024, 3, 1), date(2024, 3, 31), "auto", today=date(2024, 3, 31))[0] == ("daily", "2024-03-01")
    assert archive_path("um", "monthly", "BTCUSDT", "1h", "2023-07") == \
        "data/futures/um/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2023-07.zip"

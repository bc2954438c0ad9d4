"""`dolphin book`: the live order-book publisher (DESIGN.md "Order-book features", the bring-up plan's MIG2.3).

One asyncio process for the whole universe. It reads Binance USD-M *partial* depth, ``<sym>@depth20@500ms``, on
the ``/public`` route (combined streams, ``/public/stream?streams=a/b/...``, at most ``streams_per_conn`` (200)
streams per connection), turns each message into the four features of ``dolphin.book.features`` and publishes
``DOLPHIN_FEATURES/asset_<SYMBOL>_ob``.

Why partial depth and not diff depth + REST snapshot: every partial message is a complete top-20 book, so
there is nothing to keep in sync. A lost, late or duplicated message costs one observation, never a resync;
a reconnect needs no REST snapshot. That matters at 400 symbols: a reconnect with diff depth re-snapshots every
book (``/fapi/v1/depth`` costs 5-20 request weight each, 2 000-8 000 for the universe, against a limit of 2 400 a
minute) and would be throttled exactly when the feed is already disturbed. The features only need the band
near the mid, which the top 20 levels cover (for the most liquid symbols 20 levels span less than the 1 % band:
the band then holds the visible depth, a lower bound; see ``features``). The messages still carry Binance's
``u`` / ``pu`` ids: a message whose ``u`` is not newer than the last one of that symbol on the same connection is
dropped (duplicate or out of order); a ``pu`` that is not the previous ``u`` is counted as a gap and costs nothing.

What is published, per asset, at most once per ``min_interval_s`` (0.9 s: every second message of the 500 ms
stream) and only from a message that just arrived, so an asset's record is at most ~1 s old while its feed is
alive (the issue asks for <= 5 s):

    imbalance, depth_quality, fill_prob, agreement        the features (formulas in dolphin.book.features)
    bid_notional, ask_notional, mid, band_pct             the band summary they come from
    event_time, event_time_ms                             the exchange's event time ``E`` of that message
    receive_time_ms, publish_time, publish_time_ms        when it arrived here, when it was handed to the store
    update_id, gaps, source, synthetic                    Binance's ``u``; ``synthetic`` when the venue says so
    timestamp (the record's own)                          = receive time, on this machine's clock

``timestamp`` is the arrival time, not ``E``: the runtime ages books against its own wall clock, and the local
arrival time is on that clock whatever the skew to the exchange (and a replaying venue's ``E`` is its replay
clock, not now). ``event_time`` keeps the exchange's time.

A silent or broken feed stops publishing that asset: records are written only from fresh messages, so an asset
whose stream is silent ages in the store (the runtime counts > 30 s as stale); after ``silent_s`` (10 s) it is
reported by symbol. A message with an empty or crossed side, or one that does not parse, is reported by
symbol (once per episode; recovery is logged) and publishes nothing. A connection silent for ``conn_idle_s``
(10 s), closed, or broken is reopened with exponential back-off (``backoff_min_s`` 0.5 s doubling up to 30 s)
times a random jitter in [0.5, 1]; the back-off resets after a connection has delivered data for 60 s. Each
connection is rolled after ``roll_s`` (23.5 h), before Binance's 24 h cut, with no back-off (a gap of one
round trip). Pings from the server are answered by the websocket library (pong with the same payload); the
client also pings every 20 s to notice a dead TCP path.

Symbols: ``GET /fapi/v1/exchangeInfo`` at start and every ``info_every_s`` (600 s). A configured symbol that is
not listed, or listed with a status other than TRADING, is reported, unsubscribed and no longer published.
If the request fails the publisher keeps the symbols it has and says so.

Writes to the store run on their own threads ("dolphin-book-writer-<i>", ``--writers``, default 2, assets split
between them so each asset's records stay in order), newest record per asset (older pending
ones are superseded): a slow or unavailable store never stalls the feed; while it is unavailable the writer
backs off (0.1 s .. 5 s) and logs once per outage; a pending record older than ``silent_s`` is dropped, not
written late.

Recording: the written records (every ``record_every_s`` per asset, default 10 s; 0 = every record) are kept as
Parquet under the data home, ``$DOLPHIN_HOME/book/YYYY-MM-DD/features-HHMMSS-<pid>.parquet`` (UTC day of the
receive time; one complete file per flush, every ``flush_s`` (300 s), at the day change and at stop; written to a
temporary name and renamed). Features, not raw books. Read a day with ``pyarrow.dataset`` over its folder.

Logs name the symbol, the connection (shard) and the URL host/path they touch; no secret is involved (public
streams need no key) and query strings are not logged in full.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

from dolphin.book.features import DEFAULT_PARAMS, BookParams, BookSideError, BookState, band_from_levels, step
from dolphin.store import FEATURES, Record, StoreUnavailableError, asset_ob_key, iso_utc

log = logging.getLogger("dolphin.book")

BINANCE_WS = "wss://fstream.binance.com"
BINANCE_HTTP = "https://fapi.binance.com"
STREAM = "depth20@500ms"
SOURCE = f"binance-usdm {STREAM}"
_SYM_IN_TEXT = re.compile(r'"s"\s*:\s*"([A-Za-z0-9]+)"')


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class SymbolBook:
    symbol: str
    shard: int
    state: BookState = field(default_factory=BookState)
    last_u: int | None = None
    last_recv_ms: int | None = None
    last_pub_ms: int | None = None
    status: str = "waiting"  # waiting | live | broken | silent | gone
    messages: int = 0
    published: int = 0
    gaps: int = 0
    dropped_old: int = 0
    broken: int = 0


@dataclass
class Report:
    symbol: str | None
    kind: str  # malformed | broken | silent | gone | unknown | exchange_info | connection | error
    message: str
    ms: int


class Recorder:
    """Daily Parquet of the written feature records (module docstring "Recording")."""

    COLUMNS = ("symbol", "event_ms", "receive_ms", "publish_ms", "visible_ms", "update_id", "imbalance",
               "depth_quality", "fill_prob", "agreement", "bid_notional", "ask_notional", "mid", "synthetic")

    def __init__(self, root: Path, every_s: float = 10.0, flush_s: float = 300.0):
        self.root, self.every_ms, self.flush_s = Path(root), every_s * 1000.0, flush_s
        self.rows: list[tuple] = []
        self.day: str | None = None
        self.last_flush = time.monotonic()
        self.last_row_ms: dict[str, int] = {}
        self.files: list[Path] = []
        self.lock = threading.RLock()  # shared by the writer threads

    def add(self, v: dict, visible_ms: int | None) -> None:
        with self.lock:
            self._add(v, visible_ms)

    def _add(self, v: dict, visible_ms: int | None) -> None:
        sym, recv = v["symbol"], v["receive_time_ms"]
        prev = self.last_row_ms.get(sym)
        if self.every_ms > 0 and prev is not None and recv - prev < self.every_ms:
            return
        day = datetime.fromtimestamp(recv / 1000, tz=timezone.utc).strftime("%Y-%m-%d")
        if self.day is not None and day != self.day:
            self._flush()
        self.day = day
        self.last_row_ms[sym] = recv
        self.rows.append((sym, v["event_time_ms"], recv, v["publish_time_ms"], visible_ms, v["update_id"],
                          v["imbalance"], v["depth_quality"], v["fill_prob"], v["agreement"], v["bid_notional"],
                          v["ask_notional"], v["mid"], v["synthetic"]))

    def maybe_flush(self) -> None:
        with self.lock:
            if self.rows and time.monotonic() - self.last_flush >= self.flush_s:
                self.flush()

    def flush(self) -> None:
        with self.lock:
            self._flush()

    def _flush(self) -> None:
        self.last_flush = time.monotonic()
        if not self.rows:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        cols = list(zip(*self.rows))
        types = [pa.string(), pa.int64(), pa.int64(), pa.int64(), pa.int64(), pa.int64()] + [pa.float64()] * 7 \
            + [pa.bool_()]
        table = pa.table({n: pa.array(c, t) for n, c, t in zip(self.COLUMNS, cols, types)})
        folder = self.root / self.day
        folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.fromtimestamp(self.rows[0][2] / 1000, tz=timezone.utc).strftime("%H%M%S")
        path = folder / f"features-{stamp}-{os.getpid()}.parquet"
        n = 1
        while path.exists():
            path = folder / f"features-{stamp}-{os.getpid()}-{n}.parquet"
            n += 1
        tmp = path.with_name("." + path.name + ".tmp")
        try:
            pq.write_table(table, tmp)
            os.replace(tmp, path)
        except OSError as e:
            log.error("book recording: could not write %s (%d rows kept for the next flush): %s", path,
                      len(self.rows), e)
            return
        self.files.append(path)
        log.info("book recording: %d rows -> %s", len(self.rows), path)
        self.rows = []


class StoreWriter(threading.Thread):
    """Newest record per asset -> the feature store, off the event loop (module docstring)."""

    def __init__(self, store, recorder: Recorder | None, drop_after_s: float, name: str = "dolphin-book-writer"):
        super().__init__(name=name, daemon=True)
        self.store, self.recorder, self.drop_after_ms = store, recorder, drop_after_s * 1000
        self.pending: dict[str, dict] = {}
        self.cond = threading.Condition()
        self.stopping = False
        self.written = self.dropped = self.failures = 0
        self.outage_since: float | None = None

    def submit(self, value: dict) -> None:
        with self.cond:
            self.pending[value["symbol"]] = value
            self.cond.notify()

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify()

    def run(self) -> None:
        backoff = 0.1
        while True:
            with self.cond:
                self.cond.wait_for(lambda: self.pending or self.stopping, timeout=1.0)
                batch, self.pending = self.pending, {}
                stopping = self.stopping
            failed = {}
            for sym, v in batch.items():
                if self._write(v):
                    continue
                failed[sym] = v
            if self.recorder is not None:
                self.recorder.maybe_flush()
            if failed:
                with self.cond:  # keep them unless a newer one arrived meanwhile
                    for sym, v in failed.items():
                        self.pending.setdefault(sym, v)
                if stopping:
                    break
                time.sleep(backoff)
                backoff = min(5.0, backoff * 2)
                continue
            backoff = 0.1
            if stopping:
                with self.cond:
                    if not self.pending:
                        break
        if self.recorder is not None:
            self.recorder.flush()

    def _write(self, v: dict) -> bool:
        sym = v["symbol"]
        if _now_ms() - v["receive_time_ms"] > self.drop_after_ms:
            self.dropped += 1
            if self.recorder is not None:
                self.recorder.add(v, None)
            return True
        v = dict(v, publish_time_ms=_now_ms())
        v["publish_time"] = iso_utc(v["publish_time_ms"])
        try:
            self.store.put(FEATURES, asset_ob_key(sym), Record(v, iso_utc(v["receive_time_ms"])))
        except StoreUnavailableError as e:
            self.failures += 1
            if self.outage_since is None:
                self.outage_since = time.monotonic()
                log.warning("feature store unavailable writing %s/%s (%s): retrying with back-off, newest record "
                            "per asset kept", FEATURES, asset_ob_key(sym), e)
            return False
        except Exception:  # a bug or an unmapped backend error: report it by key, keep the writer alive
            self.failures += 1
            log.exception("writing %s/%s failed", FEATURES, asset_ob_key(sym))
            return False
        if self.outage_since is not None:
            log.info("feature store available again after %.1f s", time.monotonic() - self.outage_since)
            self.outage_since = None
        self.written += 1
        if self.recorder is not None:
            self.recorder.add(v, _now_ms())
        return True


def _safe_url(url: str) -> str:
    u = urlsplit(url)
    return f"{u.scheme}://{u.netloc}{u.path}"


class BookPublisher:
    def __init__(self, symbols, store, *, ws_url: str = BINANCE_WS, http_url: str | None = BINANCE_HTTP,
                 params: BookParams = DEFAULT_PARAMS, min_interval_s: float = 0.9, silent_s: float = 10.0,
                 conn_idle_s: float = 10.0, roll_s: float = 23.5 * 3600, streams_per_conn: int = 200,
                 info_every_s: float = 600.0, backoff_min_s: float = 0.5, backoff_max_s: float = 30.0,
                 record_dir: Path | None = None, record_every_s: float = 10.0, flush_s: float = 300.0,
                 writers: int = 1, seed: int | None = None):
        syms = sorted({str(s).strip().upper() for s in symbols if str(s).strip()})
        if not syms:
            raise ValueError("dolphin book: no symbols given")
        bad = [s for s in syms if not re.fullmatch(r"[A-Z0-9]+", s)]
        if bad:
            raise ValueError(f"dolphin book: invalid symbol name(s): {', '.join(bad)}")
        if streams_per_conn < 1 or streams_per_conn > 1024:
            raise ValueError("streams_per_conn must be in 1..1024 (Binance's limit per connection)")
        self.ws_url, self.http_url = ws_url.rstrip("/"), (http_url.rstrip("/") if http_url else None)
        self.params, self.min_interval_ms = params, min_interval_s * 1000.0
        self.silent_s, self.conn_idle_s, self.roll_s = silent_s, conn_idle_s, roll_s
        self.info_every_s, self.backoff_min_s, self.backoff_max_s = info_every_s, backoff_min_s, backoff_max_s
        self.shards = [syms[i:i + streams_per_conn] for i in range(0, len(syms), streams_per_conn)]
        self.books = {s: SymbolBook(s, i) for i, sh in enumerate(self.shards) for s in sh}
        self.recorder = Recorder(record_dir, record_every_s, flush_s) if record_dir is not None else None
        if writers < 1:
            raise ValueError("writers must be >= 1")
        self.writers = [StoreWriter(store, self.recorder, silent_s, f"dolphin-book-writer-{i}")
                        for i in range(writers)] if store is not None else []
        self._writer_of = {s: self.writers[i % writers] for i, s in enumerate(syms)} if self.writers else {}
        self.reports: list[Report] = []
        self._open_episode: set[tuple] = set()
        self.rng = random.Random(seed)
        self.connects = [0] * len(self.shards)
        self.rolls = [0] * len(self.shards)
        self._ws: dict[int, object] = {}
        self.malformed = 0
        self.started_ms: int | None = None

    @property
    def writer(self):
        """The writers' totals (``written``, ``dropped``, ``failures``), or None without a store."""
        if not self.writers:
            return None
        return argparse.Namespace(**{k: sum(getattr(w, k) for w in self.writers)
                                     for k in ("written", "dropped", "failures")})

    # ------------------------------------------------------------------ reports
    def report(self, symbol: str | None, kind: str, message: str, *, once: bool = True) -> None:
        """Log and keep a problem, naming the symbol; ``once``: once per episode (until ``resolve``)."""
        key = (symbol, kind)
        if once and key in self._open_episode:
            return
        if once:
            self._open_episode.add(key)
        self.reports.append(Report(symbol, kind, message, _now_ms()))
        log.warning("%s: %s", symbol or "book feed", message)

    def resolve(self, symbol: str | None, kind: str, message: str) -> None:
        if (symbol, kind) in self._open_episode:
            self._open_episode.discard((symbol, kind))
            log.info("%s: %s", symbol or "book feed", message)

    def reported(self, symbol: str | None, kind: str) -> list[Report]:
        return [r for r in self.reports if r.symbol == symbol and r.kind == kind]

    # ------------------------------------------------------------------ messages
    def on_message(self, text, recv_ms: int, shard: int = 0) -> str:
        """Handle one text frame; returns what happened (published / kept / dropped / ignored / reported)."""
        try:
            msg = json.loads(text)
        except (ValueError, TypeError) as e:
            self.malformed += 1
            m = _SYM_IN_TEXT.search(text if isinstance(text, str) else "")
            sym = m.group(1).upper() if m else None
            self.report(sym, "malformed", f"connection {shard}: malformed JSON ({e}): {str(text)[:80]!r}",
                        once=False)
            return "reported"
        if not isinstance(msg, dict):
            self.report(None, "malformed", f"connection {shard}: not a JSON object: {str(text)[:80]!r}", once=False)
            return "reported"
        if "id" in msg and ("result" in msg or "error" in msg):
            if msg.get("error"):
                self.report(None, "error", f"connection {shard}: request {msg.get('id')} refused: {msg['error']}",
                            once=False)
                return "reported"
            return "ignored"
        data = msg.get("data", msg) if "stream" in msg else msg
        stream_sym = str(msg.get("stream", "")).split("@", 1)[0].upper() or None
        if not isinstance(data, dict):
            self.report(stream_sym, "malformed", f"connection {shard}: data is not an object", once=False)
            return "reported"
        sym = str(data.get("s") or stream_sym or "").upper() or None
        book = self.books.get(sym) if sym else None
        if book is None:
            self.report(sym, "unknown", f"connection {shard}: depth for a symbol not configured: ignored")
            return "ignored"
        if book.status == "gone":
            return "ignored"
        try:
            e_ms, u = int(data["E"]), int(data["u"])
            pu = data.get("pu")
            bids, asks = data["b"], data["a"]
        except (KeyError, TypeError, ValueError) as e:
            self.report(sym, "malformed", f"depth message without valid E/u/b/a ({type(e).__name__}: {e})",
                        once=False)
            return "reported"
        book.messages += 1
        if book.last_u is not None and u <= book.last_u:
            book.dropped_old += 1
            return "dropped"
        if book.last_u is not None and pu is not None and int(pu) != book.last_u:
            book.gaps += 1
        book.last_u = u
        try:
            band, mid = band_from_levels(bids, asks, self.params.band_pct)
            feats, state = step(book.state, band, mid, e_ms, self.params)
        except BookSideError as e:
            book.broken += 1
            book.status = "broken"
            self.report(sym, "broken", f"depth unusable ({e}): not published")
            return "reported"
        book.state = state
        if book.status in ("broken", "silent"):
            self.resolve(sym, book.status, f"depth usable again after {book.status} spell: publishing")
        book.status = "live"
        book.last_recv_ms = recv_ms
        if book.last_pub_ms is not None and recv_ms - book.last_pub_ms < self.min_interval_ms:
            return "kept"
        book.last_pub_ms = recv_ms
        book.published += 1
        value = {"symbol": sym, "imbalance": feats.imbalance, "depth_quality": feats.depth_quality,
                 "fill_prob": feats.fill_prob, "agreement": feats.agreement, "bid_notional": band.bid_notional,
                 "ask_notional": band.ask_notional, "mid": mid, "band_pct": self.params.band_pct,
                 "event_time": iso_utc(e_ms), "event_time_ms": e_ms, "receive_time_ms": recv_ms,
                 "update_id": u, "gaps": book.gaps, "source": SOURCE, "synthetic": bool(data.get("synthetic"))}
        if self.writers:
            self._writer_of[sym].submit(value)
        return "published"

    def on_connected(self, shard: int) -> None:
        """A new connection: ``u`` restarts its comparison (a restarted exchange/venue may number anew)."""
        for s in self.shards[shard]:
            self.books[s].last_u = None

    # ------------------------------------------------------------------ tasks
    def _streams(self, shard: int) -> list[str]:
        return [f"{s.lower()}@{STREAM}" for s in self.shards[shard] if self.books[s].status != "gone"]

    def _backoff(self, attempt: int) -> float:
        return min(self.backoff_max_s, self.backoff_min_s * 2 ** max(0, attempt - 1)) * self.rng.uniform(0.5, 1.0)

    async def _run_shard(self, shard: int) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import WebSocketException

        attempt = 0
        while True:
            streams = self._streams(shard)
            if not streams:
                log.info("connection %d: every symbol gone, closing it", shard)
                return
            url = f"{self.ws_url}/public/stream?streams={'/'.join(streams)}"
            where = f"connection {shard} ({streams[0].split('@')[0].upper()}..{streams[-1].split('@')[0].upper()}, " \
                    f"{len(streams)} streams) to {_safe_url(url)}"
            rolled, reason = False, None
            try:
                async with connect(url, open_timeout=10, ping_interval=20, ping_timeout=20, close_timeout=2,
                                   max_size=2 ** 22, max_queue=4096) as ws:
                    self.connects[shard] += 1
                    self._ws[shard] = ws
                    self.on_connected(shard)
                    log.info("%s: connected", where)
                    self.resolve(None, f"connection{shard}", f"{where}: connected again")
                    opened = time.monotonic()
                    while True:
                        left = self.roll_s - (time.monotonic() - opened)
                        if left <= 0:
                            rolled = True
                            break
                        try:
                            text = await asyncio.wait_for(ws.recv(), timeout=min(self.conn_idle_s, left))
                        except TimeoutError:
                            if self.roll_s - (time.monotonic() - opened) <= 0:
                                rolled = True
                            else:
                                reason = f"no message for {self.conn_idle_s:g} s"
                            break
                        self.on_message(text, _now_ms(), shard)
                        if attempt and time.monotonic() - opened > 60:
                            attempt = 0
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, WebSocketException) as e:
                reason = f"{type(e).__name__}: {e}"
            finally:
                self._ws.pop(shard, None)
            if rolled:
                self.rolls[shard] += 1
                log.info("%s: rolling the connection after %.0f s (before the exchange's 24 h cut)", where,
                         self.roll_s)
                continue
            attempt += 1
            delay = self._backoff(attempt)
            self.report(None, f"connection{shard}", f"{where}: {reason or 'closed by the server'}; reconnecting "
                        f"with back-off (attempt {attempt}, {delay:.1f} s)", once=False)
            await asyncio.sleep(delay)

    async def _watch_silence(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.silent_s / 4))
            now = _now_ms()
            for b in self.books.values():
                if b.status in ("live", "broken") and b.last_recv_ms is not None \
                        and now - b.last_recv_ms > self.silent_s * 1000:
                    b.status = "silent"
                    self.report(b.symbol, "silent", f"no usable depth for {(now - b.last_recv_ms) / 1000:.1f} s: "
                                "not published (the runtime counts a book older than 30 s as stale)")
                elif b.status == "waiting" and b.last_recv_ms is None and self.started_ms is not None \
                        and now - self.started_ms > self.silent_s * 1000:
                    b.status = "silent"
                    self.report(b.symbol, "silent", f"no depth received in {self.silent_s:g} s since start: "
                                "not published")

    def exchange_info(self) -> dict:
        import requests

        r = requests.get(f"{self.http_url}/fapi/v1/exchangeInfo", timeout=10)
        r.raise_for_status()
        return {s["symbol"]: s.get("status", "TRADING") for s in r.json()["symbols"]}

    async def check_symbols(self) -> bool:
        """exchangeInfo: configured symbols that are not TRADING are reported and dropped. False on failure."""
        if not self.http_url:
            return True
        try:
            listed = await asyncio.to_thread(self.exchange_info)
        except Exception as e:  # any failure of the request: keep going with what we have
            self.report(None, "exchange_info", f"GET {self.http_url}/fapi/v1/exchangeInfo failed ({type(e).__name__}: "
                        f"{e}): keeping the configured symbols, retrying in {self.info_every_s:g} s")
            return False
        self.resolve(None, "exchange_info", "exchangeInfo answers again")
        for sym, b in self.books.items():
            st = listed.get(sym)
            if st != "TRADING" and b.status != "gone":
                b.status = "gone"
                self.report(sym, "gone", f"{'not listed' if st is None else 'status ' + st} in exchangeInfo: "
                            "unsubscribed, no longer published")
                ws = self._ws.get(b.shard)
                if ws is not None:
                    try:
                        await ws.send(json.dumps({"method": "UNSUBSCRIBE", "params": [f"{sym.lower()}@{STREAM}"],
                                                  "id": _now_ms()}))
                    except Exception as e:  # the connection is going anyway; the next one omits the symbol
                        log.info("%s: unsubscribe not sent (%s); the next connection omits it", sym, e)
        return True

    async def _watch_symbols(self) -> None:
        while True:
            await asyncio.sleep(self.info_every_s)
            await self.check_symbols()

    async def run(self, stop: asyncio.Event) -> None:
        self.started_ms = None
        for w in self.writers:
            w.start()
        try:
            await self.check_symbols()
            self.started_ms = _now_ms()
            log.info("order-book publisher: %d symbols on %d connection(s), %s on %s/public, band %g %%, "
                     "at most one record per asset every %g s", len(self.books), len(self.shards), STREAM,
                     self.ws_url, self.params.band_pct, self.min_interval_ms / 1000)
            tasks = [asyncio.create_task(self._run_shard(i), name=f"book-conn-{i}") for i in range(len(self.shards))]
            tasks.append(asyncio.create_task(self._watch_silence(), name="book-silence"))
            if self.http_url:
                tasks.append(asyncio.create_task(self._watch_symbols(), name="book-symbols"))
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for t in tasks:
                if t.done() and not t.cancelled() and t.exception() is not None:
                    log.error("task %s failed: %r", t.get_name(), t.exception())
            for t in [stopper, *tasks]:
                t.cancel()
            await asyncio.gather(stopper, *tasks, return_exceptions=True)
        finally:
            for w in self.writers:
                w.stop()
            for w in self.writers:
                await asyncio.to_thread(w.join, 30)

    def summary(self) -> str:
        pub = sum(b.published for b in self.books.values())
        w = self.writer
        by = {}
        for r in self.reports:
            by[r.kind] = by.get(r.kind, 0) + 1
        return (f"{len(self.books)} symbols, {pub} records published, "
                + (f"{w.written} written, {w.dropped} dropped stale, {w.failures} store failures, " if w else "")
                + f"{sum(self.connects)} connection(s), {sum(self.rolls)} roll(s), reports "
                + (", ".join(f"{k} {v}" for k, v in sorted(by.items())) or "none"))


# ---------------------------------------------------------------------- CLI
def _symbols(arg: str | None) -> list[str]:
    if arg and arg.startswith("@"):
        return [s.strip() for s in Path(arg[1:]).read_text().replace(",", "\n").splitlines() if s.strip()]
    if arg:
        return [s.strip() for s in arg.split(",") if s.strip()]
    env = os.environ.get("DOLPHIN_BOOK_SYMBOLS")
    if env:
        return _symbols(env)
    raise ValueError("no symbols: pass --symbols A,B,... (or @file) or set DOLPHIN_BOOK_SYMBOLS")


def cmd_book(args) -> int:
    from dolphin.paths import data_home
    from dolphin.adapters.store_factory import open_store_from_env, store_config_from_env

    logging.basicConfig(level=getattr(logging, args.log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        symbols = _symbols(args.symbols)
        params = BookParams(band_pct=args.band_pct, order_notional=args.order_notional)
        where = store_config_from_env().describe()
        store = open_store_from_env()
    except (ValueError, OSError) as e:
        print(f"dolphin book: {e}", file=sys.stderr)
        return 2
    record_dir = None if args.no_record else Path(args.record_dir) if args.record_dir else data_home() / "book"
    ws_url = args.ws_url or os.environ.get("DOLPHIN_BOOK_WS_URL") or BINANCE_WS
    http_url = args.http_url or os.environ.get("DOLPHIN_BOOK_HTTP_URL") or BINANCE_HTTP
    try:
        pub = BookPublisher(symbols, store, ws_url=ws_url, http_url=None if http_url == "none" else http_url,
                            params=params, min_interval_s=args.interval_s, silent_s=args.silent_s,
                            roll_s=args.roll_hours * 3600, streams_per_conn=args.streams_per_conn,
                            record_dir=record_dir, record_every_s=args.record_every_s, flush_s=args.flush_s,
                            writers=args.writers)
    except ValueError as e:
        store.close()
        print(f"dolphin book: {e}", file=sys.stderr)
        return 2
    log.info("order-book publisher -> %s (%s), recording %s", where, FEATURES, record_dir or "off")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda s=sig: (log.info("order-book publisher: %s, stopping",
                                                                 signal.Signals(s).name), stop.set()))
        await pub.run(stop)

    try:
        asyncio.run(main())
    finally:
        log.info("order-book publisher stopped: %s", pub.summary())
        store.close()
    return 0


def register(sub) -> None:
    p = sub.add_parser("book", help="order-book publisher: Binance USD-M depth -> asset_<SYMBOL>_ob",
                       description="Reads <sym>@depth20@500ms for every symbol on the /public route and publishes "
                                   "imbalance, depth_quality, fill_prob, agreement to DOLPHIN_FEATURES/"
                                   "asset_<SYMBOL>_ob about every second; records them as daily Parquet under "
                                   "$DOLPHIN_HOME/book. Store: DOLPHIN_FEATURE_STORE / DOLPHIN_HZ_*. Stops cleanly on "
                                   "SIGTERM/SIGINT.")
    p.add_argument("--symbols", default=None,
                   help="comma-separated symbols or @file (one per line); default $DOLPHIN_BOOK_SYMBOLS")
    p.add_argument("--ws-url", default=None, help=f"WebSocket base (default $DOLPHIN_BOOK_WS_URL, else {BINANCE_WS})")
    p.add_argument("--http-url", default=None,
                   help=f"REST base for exchangeInfo (default $DOLPHIN_BOOK_HTTP_URL, else {BINANCE_HTTP}; 'none': off)")
    p.add_argument("--band-pct", type=float, default=DEFAULT_PARAMS.band_pct, help="depth band around mid, %% (1)")
    p.add_argument("--order-notional", type=float, default=DEFAULT_PARAMS.order_notional,
                   help="order size (USDT) for fill_prob (default 37500)")
    p.add_argument("--interval-s", type=float, default=0.9, help="minimum seconds between an asset's records (0.9)")
    p.add_argument("--silent-s", type=float, default=10.0, help="report an asset silent after this (10)")
    p.add_argument("--roll-hours", type=float, default=23.5, help="roll each connection after this (23.5)")
    p.add_argument("--streams-per-conn", type=int, default=200)
    p.add_argument("--writers", type=int, default=2,
                   help="store writer threads, assets split between them (2; Hazelcast: more overlap round trips)")
    p.add_argument("--record-dir", default=None, help="Parquet folder (default $DOLPHIN_HOME/book)")
    p.add_argument("--record-every-s", type=float, default=10.0, help="one row per asset per this (0: every record)")
    p.add_argument("--flush-s", type=float, default=300.0, help="write a Parquet part this often (300)")
    p.add_argument("--no-record", action="store_true", help="do not record Parquet")
    p.add_argument("--log-level", default="INFO")
    p.set_defaults(func=cmd_book)


if __name__ == "__main__":  # python -m dolphin.book.publisher ...: the same as `dolphin book`
    _ap = argparse.ArgumentParser(prog="dolphin")
    register(_ap.add_subparsers(dest="command"))
    _ns = _ap.parse_args(["book", *sys.argv[1:]])
    sys.exit(_ns.func(_ns))

"""Binance public data archive (data.binance.vision) downloader with a verified local cache: klines and
USD-M ``bookDepth``.

Archive layout: ``{base}/data/{spot|futures/um}/{daily|monthly}/klines/{SYM}/{interval}/{SYM}-{interval}-{period}.zip``
and ``{base}/data/futures/um/daily/bookDepth/{SYM}/{SYM}-bookDepth-{YYYY-MM-DD}.zip`` (bookDepth: USD-M futures,
daily files only; the format is described in ``dolphin.data.bookdepth``), each with a sibling ``.zip.CHECKSUM``
holding ``<sha256>  <file name>``. The cache folder mirrors that layout.

Guarantees: a file under its final cache name has matched its published sha256 and opens as a zip.
Downloads go to ``<file>.part`` (resumed with HTTP Range after a dropped connection, also across runs;
restarted when the server ignores Range), are verified, fsync'd and renamed atomically. Connection errors,
timeouts, HTTP 5xx/429 and truncated bodies are retried with exponential back-off; a 404 period is reported
as missing, not raised; a checksum mismatch is re-downloaded and then raised as ``ArchiveError`` naming the
URL and both hashes.
"""

import calendar
import hashlib
import logging
import os
import re
import time
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import requests
import urllib3

from dolphin.data.contracts import DataError

BASE_URL = "https://data.binance.vision"
MARKETS = {"spot": "spot", "um": "futures/um"}
INTERVALS = ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w", "1mo")
# Symbols become path components of the URL and the cache: no separators, no "..".
# (USDT-M delivery contracts carry an underscore, e.g. BTCUSDT_240628.)
_SYMBOL_RE = re.compile(r"^[A-Z0-9]+(?:_[0-9]+)?$")
_CHUNK = 1 << 16

log = logging.getLogger(__name__)


class ArchiveError(DataError):
    """A download that could not be completed or verified (the message names the URL)."""


class _Retryable(Exception):
    pass


@dataclass
class DownloadResult:
    files: dict = field(default_factory=dict)  # symbol -> [verified zip paths], in period order
    missing: dict = field(default_factory=dict)  # symbol -> [periods the archive does not have (404)]
    downloaded: int = 0  # files fetched in this run
    cached: int = 0  # files already in the cache with a matching checksum

    def all_files(self) -> list:
        return [p for ps in self.files.values() for p in ps]


def archive_path(market: str, granularity: str, symbol: str, interval: str, period: str) -> str:
    """Path of one kline zip relative to the archive root (and to the cache folder)."""
    if market not in MARKETS:
        raise DataError(f"market must be one of {sorted(MARKETS)}, got {market!r}")
    if granularity not in ("daily", "monthly"):
        raise DataError(f"granularity must be daily or monthly, got {granularity!r}")
    if interval not in INTERVALS:
        raise DataError(f"interval {interval!r} is not a Binance kline interval ({', '.join(INTERVALS)})")
    if not _SYMBOL_RE.match(symbol):
        raise DataError(f"symbol {symbol!r}: expected upper-case letters/digits like BTCUSDT")
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}" if granularity == "daily" else r"\d{4}-\d{2}", period):
        raise DataError(f"{granularity} period {period!r}: expected {'YYYY-MM-DD' if granularity == 'daily' else 'YYYY-MM'}")
    name = f"{symbol}-{interval}-{period}.zip"
    return f"data/{MARKETS[market]}/{granularity}/klines/{symbol}/{interval}/{name}"


def bookdepth_path(symbol: str, day: str) -> str:
    """Path of one USD-M ``bookDepth`` daily zip relative to the archive root (and to the cache folder)."""
    if not _SYMBOL_RE.match(symbol):
        raise DataError(f"symbol {symbol!r}: expected upper-case letters/digits like BTCUSDT")
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", day):
        raise DataError(f"bookDepth day {day!r}: expected YYYY-MM-DD (the archive has daily bookDepth files only)")
    return f"data/futures/um/daily/bookDepth/{symbol}/{symbol}-bookDepth-{day}.zip"


def archive_url(market: str, granularity: str, symbol: str, interval: str, period: str, base_url: str = BASE_URL) -> str:
    return f"{base_url.rstrip('/')}/{archive_path(market, granularity, symbol, interval, period)}"


def _month_end(d: date) -> date:
    return date(d.year, d.month, calendar.monthrange(d.year, d.month)[1])


def plan_periods(start: date, end: date, granularity: str = "auto", today: date | None = None) -> list:
    """[(granularity, 'YYYY-MM' | 'YYYY-MM-DD')] covering [start, end]. 'auto': monthly files for whole
    months that ended before today's month (the archive publishes them after the month), daily otherwise.
    'monthly' covers every month the range touches."""
    if granularity not in ("auto", "daily", "monthly"):
        raise DataError(f"granularity must be auto, daily or monthly, got {granularity!r}")
    if end < start:
        raise DataError(f"end {end} is before start {start}")
    today = today or datetime.now(timezone.utc).date()
    out, d = [], start
    while d <= end:
        last = _month_end(d)
        whole = d.day == 1 and last <= end and (d.year, d.month) < (today.year, today.month)
        if granularity == "monthly" or (granularity == "auto" and whole):
            out.append(("monthly", f"{d.year:04d}-{d.month:02d}"))
            d = last + timedelta(days=1)
        else:
            out.append(("daily", d.isoformat()))
            d += timedelta(days=1)
    return out


def _days_of_month(period: str) -> list:
    first = date.fromisoformat(period + "-01")
    return [(first + timedelta(days=i)).isoformat() for i in range(_month_end(first).day)]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_valid_zip(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return z.testzip() is None
    except Exception:  # BadZipFile, zlib.error, EOFError, ...: any failure to read it back means unusable
        return False


class _Fetcher:
    def __init__(self, retries, backoff_s, timeout_s, session):
        self.retries, self.backoff_s, self.timeout_s = retries, backoff_s, timeout_s
        self.session = session

    def _with_retries(self, what, fn):
        last = None
        for attempt in range(self.retries + 1):
            if attempt:
                delay = self.backoff_s * 2 ** (attempt - 1)
                log.warning("%s: %s; retry %d/%d in %.2fs", what, last, attempt, self.retries, delay)
                time.sleep(delay)
            try:
                return fn()
            except (_Retryable, requests.ConnectionError, requests.Timeout,
                    requests.exceptions.ChunkedEncodingError) as e:
                last = e
        raise ArchiveError(f"{what}: failed after {self.retries + 1} attempts: {last}")

    @staticmethod
    def _check_status(url, r):
        if r.status_code >= 500 or r.status_code == 429:
            raise _Retryable(f"HTTP {r.status_code}")

    def text(self, url):
        """Body, or None on 404."""
        def go():
            r = self.session.get(url, timeout=self.timeout_s)
            if r.status_code == 404:
                return None
            self._check_status(url, r)
            if r.status_code != 200:
                raise ArchiveError(f"{url}: HTTP {r.status_code}")
            return r.text
        return self._with_retries(url, go)

    def exists(self, url) -> bool:
        def go():
            r = self.session.head(url, timeout=self.timeout_s)
            self._check_status(url, r)
            return r.status_code == 200
        return self._with_retries(url, go)

    def download(self, url, part: Path) -> None:
        """Complete ``part`` (resuming what is there) or raise; retried on drops, stalls and truncation."""
        def go():
            have = part.stat().st_size if part.exists() else 0
            # identity: the checksum is of the file's bytes, and raw reads are not content-decoded
            headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={have}-"} if have else {})}
            with self.session.get(url, headers=headers, stream=True, timeout=self.timeout_s) as r:
                if r.status_code == 416:  # nothing left to send: the part is whole (or stale: the checksum decides)
                    return
                if r.status_code == 404:
                    raise ArchiveError(f"{url}: HTTP 404 (the checksum exists but the file does not)")
                self._check_status(url, r)
                if r.status_code == 206:
                    m = re.match(r"bytes (\d+)-", r.headers.get("Content-Range", ""))
                    if not m or int(m.group(1)) != have:
                        # a range we did not ask for: appending it would splice the file
                        part.unlink(missing_ok=True)
                        raise _Retryable(f"bad Content-Range {r.headers.get('Content-Range')!r} for offset {have}")
                    mode, expect = "ab", have + int(r.headers.get("Content-Length", -1 - have))
                elif r.status_code == 200:  # server ignored Range: start over
                    mode, expect = "wb", int(r.headers.get("Content-Length", -1))
                else:
                    raise ArchiveError(f"{url}: HTTP {r.status_code}")
                with open(part, mode) as f:
                    try:
                        # read1 hands over whatever has arrived, so a dropped connection keeps it for the resume
                        while chunk := r.raw.read1(_CHUNK):
                            f.write(chunk)
                    except (urllib3.exceptions.HTTPError, OSError) as e:  # keep the bytes, retry the rest
                        raise _Retryable(f"connection dropped after {f.tell()} bytes: {e}") from e
                    finally:
                        f.flush()
                        os.fsync(f.fileno())
            size = part.stat().st_size
            if expect >= 0 and size < expect:
                raise _Retryable(f"truncated body: {size} of {expect} bytes")
        self._with_retries(url, go)


def _expected_sha(url: str, text: str) -> str:
    fields = text.split()
    sha = fields[0].lower() if fields else ""
    if not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise ArchiveError(f"{url}.CHECKSUM: not a sha256 line: {text[:80]!r}")
    return sha


def _fetch_one(fx: _Fetcher, url: str, dest: Path, attempts: int) -> str:
    """'cached' | 'downloaded' | 'missing'."""
    cs = fx.text(url + ".CHECKSUM")
    if cs is None:
        if fx.exists(url):
            raise ArchiveError(f"{url}.CHECKSUM: HTTP 404 while the zip exists: cannot verify it")
        return "missing"
    expected = _expected_sha(url, cs)
    if dest.exists():
        if _sha256(dest) == expected:
            return "cached"
        log.warning("%s: cached file does not match the published checksum; downloading it again", dest)
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    actual = None
    for attempt in range(attempts):
        fx.download(url, part)
        actual = _sha256(part)
        # both checks: the sha proves it is the published file, testzip that the published file is sound
        if actual == expected and _is_valid_zip(part):
            os.replace(part, dest)
            _fsync_dir(dest.parent)
            return "downloaded"
        part.unlink(missing_ok=True)
        what = "checksum mismatch" if actual != expected else "matches its checksum but is not a valid zip"
        log.warning("%s: %s (attempt %d/%d)", url, what, attempt + 1, attempts)
    if actual == expected:
        raise ArchiveError(f"{url}: published file matches its checksum {expected} but is not a valid zip")
    raise ArchiveError(f"{url}: checksum mismatch after {attempts} downloads: expected {expected}, got {actual}")


def download_klines(symbols, interval: str, start: date, end: date, *, market: str = "spot", cache_dir,
                    base_url: str = BASE_URL, granularity: str = "auto", retries: int = 5, backoff_s: float = 0.5,
                    timeout_s: float = 30.0, progress: bool = False, today: date | None = None,
                    session: requests.Session | None = None) -> DownloadResult:
    """Fetch the kline zips of ``symbols`` covering the UTC days ``start``..``end`` (inclusive) into ``cache_dir``.

    ``granularity="auto"``: monthly files for whole past months (a month the archive does not have yet falls
    back to its daily files), daily files for the rest. ``retries``: extra attempts per request on transient
    errors, and extra downloads after a checksum mismatch. ``today`` (default: the UTC date) decides which
    months are past. Returns the verified files and the 404 periods per symbol.
    """
    if isinstance(symbols, str):
        symbols = [symbols]
    symbols = [s.strip().upper() for s in symbols if s.strip()]
    if not symbols:
        raise DataError("no symbols given")
    if retries < 0:
        raise DataError(f"retries must be >= 0, got {retries}")
    # validate the arguments before any request
    for s in symbols:
        archive_path(market, "daily", s, interval, start.isoformat())
    periods = plan_periods(start, end, granularity, today)
    cache_dir = Path(cache_dir)
    own_session = session is None
    fx = _Fetcher(retries, backoff_s, timeout_s, session or requests.Session())
    res = DownloadResult()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(symbols) * len(periods), unit="file", desc="binance archive")
    try:
        for sym in symbols:
            queue = list(periods)
            while queue:
                g, period = queue.pop(0)
                rel = archive_path(market, g, sym, interval, period)
                url = f"{base_url.rstrip('/')}/{rel}"
                status = _fetch_one(fx, url, cache_dir / rel, retries + 1)
                if status == "missing" and g == "monthly" and granularity == "auto":
                    # the month's file may not be published yet (or the symbol listed mid-month): use its days
                    days = [("daily", d) for d in _days_of_month(period)]
                    log.info("%s: not in the archive; trying its %d daily files", url, len(days))
                    queue[:0] = days
                    if bar is not None:
                        bar.total += len(days)
                elif status == "missing":
                    log.info("%s: not in the archive (404)", url)
                    res.missing.setdefault(sym, []).append(period)
                else:
                    res.files.setdefault(sym, []).append(cache_dir / rel)
                    res.downloaded += status == "downloaded"
                    res.cached += status == "cached"
                if bar is not None:
                    bar.set_postfix_str(f"{sym} {period} {status}", refresh=False)
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        if own_session:
            fx.session.close()
    return res


def download_bookdepth(symbols, start: date, end: date, *, cache_dir, base_url: str = BASE_URL, retries: int = 5,
                       backoff_s: float = 0.5, timeout_s: float = 30.0, progress: bool = False,
                       session: requests.Session | None = None) -> DownloadResult:
    """Fetch the USD-M ``bookDepth`` daily zips of ``symbols`` for the UTC days ``start``..``end`` (inclusive)
    into ``cache_dir``, with the same guarantees as ``download_klines`` (published sha256 verified, resumed
    ``.part`` files, retries with back-off, atomic rename; nothing is stored under a final name unverified).
    The archive has no monthly bookDepth files; a day it does not have (404: before 2023, before the listing,
    or not published yet) is reported in ``missing``. The CSV content is checked by the reader
    (``dolphin.data.bookdepth.read_bookdepth_file``), not here: a file that matches its published checksum is
    the archive's own data and is kept as published."""
    if isinstance(symbols, str):
        symbols = [symbols]
    symbols = [s.strip().upper() for s in symbols if s.strip()]
    if not symbols:
        raise DataError("no symbols given")
    if retries < 0:
        raise DataError(f"retries must be >= 0, got {retries}")
    if end < start:
        raise DataError(f"end {end} is before start {start}")
    for s in symbols:  # validate every argument before any request
        bookdepth_path(s, start.isoformat())
    days = [(start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]
    cache_dir = Path(cache_dir)
    own_session = session is None
    fx = _Fetcher(retries, backoff_s, timeout_s, session or requests.Session())
    res = DownloadResult()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(symbols) * len(days), unit="file", desc="binance bookDepth")
    try:
        for sym in symbols:
            for day in days:
                rel = bookdepth_path(sym, day)
                url = f"{base_url.rstrip('/')}/{rel}"
                status = _fetch_one(fx, url, cache_dir / rel, retries + 1)
                if status == "missing":
                    log.info("%s: not in the archive (404)", url)
                    res.missing.setdefault(sym, []).append(day)
                else:
                    res.files.setdefault(sym, []).append(cache_dir / rel)
                    res.downloaded += status == "downloaded"
                    res.cached += status == "cached"
                if bar is not None:
                    bar.set_postfix_str(f"{sym} {day} {status}", refresh=False)
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        if own_session:
            fx.session.close()
    return res


KINDS = ("klines", "bookDepth")


def register(data_sub) -> None:
    p = data_sub.add_parser("download", help="download klines or USD-M bookDepth from the Binance public archive "
                                             "(verified cache)")
    p.add_argument("--kind", choices=KINDS, default="klines",
                   help="klines (default) or bookDepth (USD-M order-book depth bands, daily files, ~30 s snapshots)")
    p.add_argument("--symbols", required=True, help="comma-separated, e.g. BTCUSDT,ETHUSDT")
    p.add_argument("--interval", default="5m", choices=INTERVALS, metavar="INTERVAL",
                   help="klines: e.g. 5m, 1h (default 5m); not used for bookDepth")
    p.add_argument("--start", required=True, type=date.fromisoformat, help="YYYY-MM-DD (UTC day)")
    p.add_argument("--end", required=True, type=date.fromisoformat, help="YYYY-MM-DD (UTC day, inclusive)")
    p.add_argument("--market", choices=sorted(MARKETS), default=None,
                   help="spot or um (USDT-M futures); default spot for klines, um for bookDepth (the only market "
                        "the archive has bookDepth for)")
    p.add_argument("--granularity", choices=("auto", "daily", "monthly"), default="auto",
                   help="klines only (bookDepth is published as daily files)")
    p.add_argument("--cache", default=None, help="cache folder (default <DOLPHIN_HOME>/binance-archive)")
    p.add_argument("--base-url", default=BASE_URL)
    p.set_defaults(func=_cmd)


def _cmd(args) -> int:
    import sys

    from dolphin.paths import data_home

    cache = Path(args.cache).expanduser() if args.cache else data_home() / "binance-archive"
    syms = [s for s in args.symbols.split(",") if s.strip()]
    kind = getattr(args, "kind", "klines")
    if kind == "bookDepth":
        if args.market not in (None, "um"):
            raise DataError(f"--kind bookDepth: the archive publishes bookDepth for USD-M futures only "
                            f"(--market um), not {args.market!r}")
        if args.granularity == "monthly":
            raise DataError("--kind bookDepth: the archive has daily bookDepth files only (no --granularity monthly)")
        res = download_bookdepth(syms, args.start, args.end, cache_dir=cache, base_url=args.base_url,
                                 progress=sys.stderr.isatty())
    else:
        res = download_klines(syms, args.interval, args.start, args.end, market=args.market or "spot",
                              cache_dir=cache, base_url=args.base_url, granularity=args.granularity,
                              progress=sys.stderr.isatty())
    print(f"{res.downloaded} downloaded, {res.cached} already cached, under {cache}")
    for sym, files in res.files.items():
        print(f"  {sym}: {len(files)} file(s), {files[0].name} .. {files[-1].name}")
    for sym, periods in res.missing.items():
        print(f"missing in the archive: {sym} {', '.join(periods)}")
    return 0

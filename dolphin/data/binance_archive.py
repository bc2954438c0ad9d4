"""Binance public data archive (data.binance.vision) kline downloader with a verified local cache.

Archive layout: ``{base}/data/{spot|futures/um}/{daily|monthly}/klines/{SYM}/{interval}/{SYM}-{interval}-{period}.zip``
with a sibling ``.zip.CHECKSUM`` holding ``<sha256>  <file name>``.

Guarantees: a file under its final cache name has matched its published sha256 and opens as a zip.
Downloads go to ``<file>.part`` (resumed with HTTP Range after a dropped connection; restarted when the
server ignores Range), are verified, fsync'd and renamed atomically. Connection errors, timeouts, HTTP 5xx
and truncated bodies are retried with exponential back-off; a 404 day is reported as missing, not raised;
a checksum mismatch is retried and then raised as ``ArchiveError`` naming the URL and both hashes.
"""

import calendar
import hashlib
import os
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
_CHUNK = 1 << 16


class ArchiveError(DataError):
    """A download that could not be completed or verified."""


class _Retryable(Exception):
    pass


@dataclass
class DownloadResult:
    files: dict = field(default_factory=dict)  # symbol -> [verified zip paths]
    missing: dict = field(default_factory=dict)  # symbol -> [periods the archive does not have (404)]
    downloaded: int = 0
    cached: int = 0

    def all_files(self) -> list:
        return [p for ps in self.files.values() for p in ps]


def archive_path(market: str, granularity: str, symbol: str, interval: str, period: str) -> str:
    if market not in MARKETS:
        raise ValueError(f"market must be one of {sorted(MARKETS)}, got {market!r}")
    if granularity not in ("daily", "monthly"):
        raise ValueError(f"granularity must be daily or monthly, got {granularity!r}")
    name = f"{symbol}-{interval}-{period}.zip"
    return f"data/{MARKETS[market]}/{granularity}/klines/{symbol}/{interval}/{name}"


def archive_url(market, granularity, symbol, interval, period, base_url=BASE_URL) -> str:
    return f"{base_url.rstrip('/')}/{archive_path(market, granularity, symbol, interval, period)}"


def plan_periods(start: date, end: date, granularity: str = "auto", today: date | None = None) -> list:
    """[(granularity, 'YYYY-MM' | 'YYYY-MM-DD')] covering [start, end]. 'auto': monthly files for whole
    months that ended before today's month (the archive publishes them after the month), daily otherwise."""
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    today = today or datetime.now(timezone.utc).date()
    out, d = [], start
    while d <= end:
        last = date(d.year, d.month, calendar.monthrange(d.year, d.month)[1])
        whole = d.day == 1 and last <= end and (d.year, d.month) < (today.year, today.month)
        if granularity == "monthly" or (granularity == "auto" and whole):
            out.append(("monthly", f"{d.year:04d}-{d.month:02d}"))
            d = last + timedelta(days=1)
        elif granularity in ("daily", "auto"):
            out.append(("daily", d.isoformat()))
            d += timedelta(days=1)
        else:
            raise ValueError(f"granularity must be auto, daily or monthly, got {granularity!r}")
    return out


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


class _Fetcher:
    def __init__(self, retries, backoff_s, timeout_s, session=None):
        self.retries, self.backoff_s, self.timeout_s = retries, backoff_s, timeout_s
        self.session = session or requests.Session()

    def _with_retries(self, what, fn):
        last = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                return fn()
            except (_Retryable, requests.ConnectionError, requests.Timeout,
                    requests.exceptions.ChunkedEncodingError) as e:
                last = e
        raise ArchiveError(f"{what}: failed after {self.retries + 1} attempts: {last}")

    def text(self, url):
        """Body, or None on 404."""
        def go():
            r = self.session.get(url, timeout=self.timeout_s)
            if r.status_code == 404:
                return None
            if r.status_code >= 500:
                raise _Retryable(f"HTTP {r.status_code}")
            if r.status_code != 200:
                raise ArchiveError(f"{url}: HTTP {r.status_code}")
            return r.text
        return self._with_retries(url, go)

    def exists(self, url) -> bool:
        def go():
            r = self.session.head(url, timeout=self.timeout_s)
            if r.status_code >= 500:
                raise _Retryable(f"HTTP {r.status_code}")
            return r.status_code == 200
        return self._with_retries(url, go)

    def download(self, url, part: Path) -> None:
        """Complete ``part`` (resuming what is there) or raise; retried on drops and truncation."""
        def go():
            have = part.stat().st_size if part.exists() else 0
            # identity: the checksum is of the file's bytes, and raw reads are not content-decoded
            headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={have}-"} if have else {})}
            with self.session.get(url, headers=headers, stream=True, timeout=self.timeout_s) as r:
                if r.status_code == 416:  # nothing left to send: the part is already whole
                    return
                if r.status_code == 404:
                    raise ArchiveError(f"{url}: HTTP 404 (the checksum exists but the file does not)")
                if r.status_code >= 500:
                    raise _Retryable(f"HTTP {r.status_code}")
                if r.status_code == 206:
                    mode, expect = "ab", have + int(r.headers.get("Content-Length", -1))
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
                        raise _Retryable(f"connection dropped: {e}") from e
                    finally:
                        f.flush()
                        os.fsync(f.fileno())
            size = part.stat().st_size
            if expect >= 0 and size < expect:
                raise _Retryable(f"truncated body: {size} of {expect} bytes")
        self._with_retries(url, go)


def _fetch_one(fx: _Fetcher, url: str, dest: Path, verify_attempts: int) -> str:
    """'cached' | 'downloaded' | 'missing'."""
    cs = fx.text(url + ".CHECKSUM")
    if cs is None:
        if fx.exists(url):
            raise ArchiveError(f"{url}.CHECKSUM: HTTP 404 while the zip exists: cannot verify it")
        return "missing"
    try:
        expected = cs.split()[0].lower()
        int(expected, 16)
        if len(expected) != 64:
            raise ValueError
    except (IndexError, ValueError):
        raise ArchiveError(f"{url}.CHECKSUM: not a sha256 line: {cs[:80]!r}") from None
    if dest.exists():
        if _sha256(dest) == expected:
            return "cached"
        dest.unlink()  # corrupt or outdated cache entry: fetch again
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    actual = None
    for _ in range(verify_attempts):
        fx.download(url, part)
        actual = _sha256(part)
        ok = actual == expected
        if ok:
            try:
                with zipfile.ZipFile(part) as z:
                    ok = z.testzip() is None
            except zipfile.BadZipFile:
                ok = False
        if ok:
            os.replace(part, dest)
            _fsync_dir(dest.parent)
            return "downloaded"
        part.unlink(missing_ok=True)
    raise ArchiveError(f"{url}: checksum mismatch after {verify_attempts} downloads: expected {expected}, got {actual}")


def download_klines(symbols, interval: str, start: date, end: date, *, market: str = "spot", cache_dir,
                    base_url: str = BASE_URL, granularity: str = "auto", retries: int = 5, backoff_s: float = 0.5,
                    timeout_s: float = 30.0, progress: bool = False, today: date | None = None,
                    session=None) -> DownloadResult:
    cache_dir = Path(cache_dir)
    periods = plan_periods(start, end, granularity, today)
    fx = _Fetcher(retries, backoff_s, timeout_s, session)
    res = DownloadResult()
    jobs = [(s, g, p) for s in symbols for g, p in periods]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), unit="file", desc="download")
    try:
        for sym, g, period in jobs:
            rel = archive_path(market, g, sym, interval, period)
            dest = cache_dir / rel
            status = _fetch_one(fx, f"{base_url.rstrip('/')}/{rel}", dest, max(1, retries))
            if status == "missing":
                res.missing.setdefault(sym, []).append(period)
            else:
                res.files.setdefault(sym, []).append(dest)
                res.downloaded += status == "downloaded"
                res.cached += status == "cached"
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return res


def register(data_sub) -> None:
    p = data_sub.add_parser("download", help="download klines from the Binance public archive (verified cache)")
    p.add_argument("--symbols", required=True, help="comma-separated, e.g. BTCUSDT,ETHUSDT")
    p.add_argument("--interval", default="5m")
    p.add_argument("--start", required=True, help="YYYY-MM-DD")
    p.add_argument("--end", required=True, help="YYYY-MM-DD (inclusive)")
    p.add_argument("--market", choices=sorted(MARKETS), default="spot", help="spot or um (USDT-M futures)")
    p.add_argument("--granularity", choices=("auto", "daily", "monthly"), default="auto")
    p.add_argument("--cache", default=None, help="cache folder (default <DOLPHIN_HOME>/binance-archive)")
    p.add_argument("--base-url", default=BASE_URL)
    p.set_defaults(func=_cmd)


def _cmd(args) -> int:
    import sys

    from dolphin.paths import data_home

    cache = Path(args.cache) if args.cache else data_home() / "binance-archive"
    syms = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    res = download_klines(syms, args.interval, date.fromisoformat(args.start), date.fromisoformat(args.end),
                          market=args.market, cache_dir=cache, base_url=args.base_url,
                          granularity=args.granularity, progress=sys.stderr.isatty())
    print(f"{res.downloaded} downloaded, {res.cached} already cached, under {cache}")
    for sym, periods in sorted(res.missing.items()):
        print(f"missing in the archive: {sym} {', '.join(periods)}")
    return 0

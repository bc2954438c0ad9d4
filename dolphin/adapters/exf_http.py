"""Live ExF fetchers, one per family, each independent: a failing family gives ``None`` for its own indicators
(with a reason and an ``ExfFetchWarning`` naming family and URL), never a crash, and never blocks the others.

Every request has an explicit (connect, read) timeout and bounded retries with exponential back-off on
transport errors, timeouts, HTTP 429 and 5xx; other HTTP errors and unparseable bodies fail at once (the
same bytes would come back). Fetched observations go through the same publication rules and staleness
limits as the recorded history (``ExfHistory.as_of``), so live and backtest agree on what is knowable.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

import requests

from dolphin.exf.history import ExfHistory, ExfSnapshot, Series, to_ms
from dolphin.exf.indicators import (BINANCE_FUNDING, DAY_MS, DERIBIT, FEAR_GREED, FRED, LIVE_FAMILIES, MARKET,
                                    REGISTRY, UNAVAILABLE, family_names)

log = logging.getLogger(__name__)


class ExfFetchWarning(UserWarning):
    """One ExF family (or FRED series) could not be fetched; its indicators are None."""


class FetchError(RuntimeError):
    """A family's fetch failed; the message names the cause (no traceback). ``transport``: the host did not
    answer usefully (timeouts, connection errors, 429/5xx after retries) -- as opposed to a bad answer."""

    def __init__(self, msg: str, transport: bool = False):
        super().__init__(msg)
        self.transport = transport


@dataclass
class FetchConfig:
    alternative_me_url: str = "https://api.alternative.me"
    deribit_url: str = "https://www.deribit.com"
    binance_fapi_url: str = "https://fapi.binance.com"
    fred_url: str = "https://fred.stlouisfed.org"
    connect_timeout: float = 5.0
    read_timeout: float = 20.0
    retries: int = 3  # extra attempts after the first
    backoff_base: float = 0.5  # seconds; attempt k waits base * 2**k, capped at backoff_max
    backoff_max: float = 8.0
    sleep: Callable[[float], None] = time.sleep  # injectable for tests
    now: Callable[[], datetime] = field(default=lambda: datetime.now(timezone.utc))
    families: tuple[str, ...] = LIVE_FAMILIES
    fng_limit: int = 10
    dvol_days: int = 10
    funding_limit: int = 30
    fred_lookback_days: int = 400  # monthly series need > 3 months of history for their lag
    session: requests.Session | None = None

    def __post_init__(self):
        if self.retries < 0 or self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise ValueError("FetchConfig: retries must be >= 0 and timeouts > 0")
        bad = [f for f in self.families if f not in LIVE_FAMILIES]
        if bad:
            raise ValueError(f"FetchConfig.families: {bad} have no live fetcher (live: {', '.join(LIVE_FAMILIES)})")


@dataclass
class _Stats:
    attempts: int = 0


_PATH = {FEAR_GREED: "/fng/", DERIBIT: "/api/v2/public/get_volatility_index_data",
         BINANCE_FUNDING: "/fapi/v1/fundingRate"}


def _url(base: str, path: str) -> str:
    return base.rstrip("/") + path


def _http_get(cfg: FetchConfig, family: str, url: str, params: dict[str, Any], stats: _Stats | None
              ) -> requests.Response:
    stats = stats if stats is not None else _Stats()
    sess = cfg.session or requests
    last = "no attempt"
    for attempt in range(cfg.retries + 1):
        if attempt:
            cfg.sleep(min(cfg.backoff_max, cfg.backoff_base * 2 ** (attempt - 1)))
        stats.attempts += 1
        try:
            r = sess.get(url, params=params, timeout=(cfg.connect_timeout, cfg.read_timeout))
        except requests.Timeout:
            last = f"timeout (connect {cfg.connect_timeout:g}s / read {cfg.read_timeout:g}s)"
            continue
        except requests.RequestException as e:
            last = f"connection error: {type(e).__name__}"
            continue
        if r.status_code == 429 or r.status_code >= 500:
            last = f"HTTP {r.status_code}"
            continue
        if r.status_code >= 400:
            raise FetchError(f"HTTP {r.status_code}: {_snippet(r.text)}")
        return r
    raise FetchError(f"{last} after {cfg.retries + 1} attempt(s)", transport=True)


def _snippet(text: str, n: int = 200) -> str:
    text = " ".join((text or "").split())
    return text[:n] + ("..." if len(text) > n else "")


def _json(r: requests.Response) -> Any:
    if not r.content:
        raise FetchError("empty body")
    try:
        return json.loads(r.content)
    except ValueError:
        raise FetchError(f"malformed JSON: {_snippet(r.text, 120)!r}") from None


def _num(x: Any, what: str) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise FetchError(f"{what}: non-numeric {x!r}") from None
    if not math.isfinite(v):
        raise FetchError(f"{what}: non-finite {x!r}")
    return v


# ---- Alternative.me Fear & Greed
def parse_fear_greed(payload: Any, source: str) -> Series:
    """``{"name": .., "data": [{"value": "40", "timestamp": "1551157200", ..}], "metadata": {"error": null}}``."""
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        raise FetchError(f"wrong shape: expected an object with a 'data' list, got {_snippet(json.dumps(payload), 120)}")
    meta = payload.get("metadata")
    err = meta.get("error") if isinstance(meta, dict) else None
    if err:
        raise FetchError(f"API error: {err}")
    if not payload["data"]:
        raise FetchError("no data points")
    pairs = []
    for k, row in enumerate(payload["data"]):
        if not isinstance(row, dict) or "value" not in row or "timestamp" not in row:
            raise FetchError(f"data[{k}]: expected an object with 'value' and 'timestamp', got {row!r}")
        pairs.append((int(_num(row["timestamp"], f"data[{k}].timestamp")) * 1000, _num(row["value"], f"data[{k}].value")))
    return Series.from_pairs("fear_greed", pairs, source)


def fetch_fear_greed(cfg: FetchConfig, now_ms: int, stats: _Stats | None = None) -> tuple[dict[str, Series], str]:
    url = _url(cfg.alternative_me_url, _PATH[FEAR_GREED])
    r = _http_get(cfg, FEAR_GREED, url, {"limit": cfg.fng_limit, "format": "json"}, stats)
    return {"fear_greed": parse_fear_greed(_json(r), url)}, url


# ---- Deribit DVOL
def parse_dvol(payload: Any, source: str, name: str = "dvol_btc") -> Series:
    """``{"jsonrpc": "2.0", "result": {"data": [[ts_ms, open, high, low, close], ..], "continuation": ..}}``;
    errors ``{"jsonrpc": "2.0", "error": {"message": .., "code": ..}}``. The candle is stamped with its open."""
    if isinstance(payload, dict) and "error" in payload:
        e = payload["error"] if isinstance(payload["error"], dict) else {"message": payload["error"]}
        raise FetchError(f"API error {e.get('code')}: {e.get('message')}")
    res = payload.get("result") if isinstance(payload, dict) else None
    if not isinstance(res, dict) or not isinstance(res.get("data"), list):
        raise FetchError(f"wrong shape: expected result.data list, got {_snippet(json.dumps(payload), 120)}")
    if not res["data"]:
        raise FetchError("no data points")
    pairs = []
    for k, row in enumerate(res["data"]):
        if not isinstance(row, list) or len(row) != 5:
            raise FetchError(f"result.data[{k}]: expected [ts, open, high, low, close], got {row!r}")
        pairs.append((int(_num(row[0], f"result.data[{k}][0]")), _num(row[4], f"result.data[{k}] close")))
    return Series.from_pairs(name, pairs, source)


def fetch_dvol(cfg: FetchConfig, now_ms: int, stats: _Stats | None = None) -> tuple[dict[str, Series], str]:
    url = _url(cfg.deribit_url, _PATH[DERIBIT])
    params = {"currency": "BTC", "start_timestamp": now_ms - cfg.dvol_days * DAY_MS, "end_timestamp": now_ms,
              "resolution": "1D"}
    r = _http_get(cfg, DERIBIT, url, params, stats)
    return {"dvol_btc": parse_dvol(_json(r), url)}, url


# ---- Binance USDT-M funding
def parse_funding(payload: Any, source: str, symbol: str = "BTCUSDT") -> Series:
    """``[{"symbol": "BTCUSDT", "fundingTime": 1698825600000, "fundingRate": "0.00010000", ..}]``."""
    if isinstance(payload, dict) and "code" in payload:
        raise FetchError(f"API error {payload.get('code')}: {payload.get('msg')}")
    if not isinstance(payload, list):
        raise FetchError(f"wrong shape: expected a list, got {_snippet(json.dumps(payload), 120)}")
    if not payload:
        raise FetchError("no data points")
    pairs = []
    for k, row in enumerate(payload):
        if not isinstance(row, dict) or "fundingTime" not in row or "fundingRate" not in row:
            raise FetchError(f"[{k}]: expected an object with fundingTime and fundingRate, got {row!r}")
        if row.get("symbol", symbol) != symbol:
            raise FetchError(f"[{k}]: symbol {row.get('symbol')!r}, asked for {symbol}")
        pairs.append((int(_num(row["fundingTime"], f"[{k}].fundingTime")), _num(row["fundingRate"], f"[{k}].fundingRate")))
    return Series.from_pairs("funding_btc_8h", pairs, source)


def fetch_funding(cfg: FetchConfig, now_ms: int, stats: _Stats | None = None) -> tuple[dict[str, Series], str]:
    url = _url(cfg.binance_fapi_url, _PATH[BINANCE_FUNDING])
    r = _http_get(cfg, BINANCE_FUNDING, url, {"symbol": "BTCUSDT", "limit": cfg.funding_limit}, stats)
    return {"funding_btc_8h": parse_funding(_json(r), url)}, url


# ---- FRED CSV
def parse_fred_csv(text: str, series_id: str, name: str, source: str) -> Series:
    """``observation_date,<ID>`` (older: ``DATE,<ID>``) then ``YYYY-MM-DD,value``; ``.`` / empty = missing."""
    if not text or not text.strip():
        raise FetchError("empty body")
    rows = csv.reader(io.StringIO(text))
    header = [h.strip() for h in next(rows)]
    if len(header) != 2 or header[0].lower() not in ("observation_date", "date") or header[1] != series_id:
        raise FetchError(f"unexpected CSV header {','.join(header)[:120]!r} (expected observation_date,{series_id})")
    pairs = []
    for row in rows:
        if not row or all(not c.strip() for c in row):
            continue
        line = rows.line_num
        if len(row) != 2:
            raise FetchError(f"line {line}: expected 2 columns, got {row!r}")
        d, v = row[0].strip(), row[1].strip()
        try:
            t = int(datetime.fromisoformat(d).replace(tzinfo=timezone.utc).timestamp() * 1000)
        except ValueError:
            raise FetchError(f"line {line}: unparseable date {d!r}") from None
        if v in (".", ""):
            continue
        pairs.append((t, _num(v, f"line {line} ({d})")))
    if not pairs:
        raise FetchError("no observations (all missing)")
    return Series.from_pairs(name, pairs, source)


def fetch_fred(cfg: FetchConfig, now_ms: int, stats: _Stats, warn: Callable[[str, str, str], str]
               ) -> tuple[dict[str, Series], dict[str, str]]:
    """Each FRED series separately: one bad series does not take the other FRED indicators down. When the host
    itself fails (timeouts / 5xx after retries) the remaining series are skipped rather than each waiting out
    its own retries (13 series x retries x timeout would stall the flow for many minutes)."""
    url = _url(cfg.fred_url, "/graph/fredgraph.csv")
    start = datetime.fromtimestamp((now_ms - cfg.fred_lookback_days * DAY_MS) / 1000, tz=timezone.utc)
    out: dict[str, Series] = {}
    failed: dict[str, str] = {}
    down: str | None = None
    for name in family_names(FRED):
        sid = REGISTRY[name].fred_id
        full = f"{url}?id={sid}"
        if down is not None:
            failed[name] = f"fetch failed: {FRED} {full}: skipped, host failing ({down})"
            continue
        try:
            r = _http_get(cfg, FRED, url, {"id": sid, "cosd": start.strftime("%Y-%m-%d")}, stats)
            out[name] = parse_fred_csv(r.text, sid, name, full)
        except FetchError as e:
            failed[name] = warn(FRED, full, str(e))
            if e.transport:
                down = str(e)
        except Exception as e:  # parser bug: isolate it to this series
            failed[name] = warn(FRED, full, f"unexpected {type(e).__name__}: {_snippet(str(e), 120)}")
    return out, failed


_FETCHERS = {FEAR_GREED: fetch_fear_greed, DERIBIT: fetch_dvol, BINANCE_FUNDING: fetch_funding}
_BASE = {FEAR_GREED: "alternative_me_url", DERIBIT: "deribit_url", BINANCE_FUNDING: "binance_fapi_url",
         FRED: "fred_url"}


def fetch_all(config: FetchConfig | None = None) -> ExfSnapshot:
    """Fetch every live family and return what is knowable now (same rules as ``ExfHistory.as_of``).
    Never raises for a source failure: the family's indicators are None with the reason, a warning is issued,
    and ``sources[family]`` says what happened."""
    cfg = config or FetchConfig()
    now_ms = to_ms(cfg.now())
    series: dict[str, Series] = {}
    missing: dict[str, str] = {}
    sources: dict[str, str] = {}

    def warn(family: str, url: str, why: str) -> str:
        msg = f"ExF {family} fetch failed ({url}): {why}"
        log.warning(msg)
        warnings.warn(msg, ExfFetchWarning, stacklevel=3)
        return f"fetch failed: {family} {url}: {why}"

    for family in LIVE_FAMILIES:
        names = family_names(family)
        if family not in cfg.families:
            missing.update({n: f"family {family} not fetched (disabled in FetchConfig.families)" for n in names})
            sources[family] = "disabled"
            continue
        stats = _Stats()
        if family == FRED:
            got, failed = fetch_fred(cfg, now_ms, stats, warn)
            series.update(got)
            missing.update(failed)
            sources[family] = f"ok {len(got)}/{len(names)} series ({stats.attempts} requests)"
            continue
        url = _url(getattr(cfg, _BASE[family]), _PATH[family])  # named in warnings even when the call fails
        try:
            got, url = _FETCHERS[family](cfg, now_ms, stats)
            series.update(got)
            sources[family] = f"ok ({stats.attempts} attempt(s))"
        except FetchError as e:
            reason = warn(family, url, str(e))
            missing.update({n: reason for n in names})
            sources[family] = f"failed: {e}"
        except Exception as e:  # a parser bug must not take down the other families either
            reason = warn(family, url, f"unexpected {type(e).__name__}: {_snippet(str(e), 120)}")
            missing.update({n: reason for n in names})
            sources[family] = f"failed: unexpected {type(e).__name__}"
    for n in family_names(MARKET):
        missing[n] = "no live fetcher (recorded history only)"
    for n in family_names(UNAVAILABLE):
        missing[n] = f"no source available ({REGISTRY[n].source})"
    snap = ExfHistory(series, missing).as_of(now_ms)
    return ExfSnapshot(snap.as_of, snap.values, snap.reasons, snap.observed, sources)

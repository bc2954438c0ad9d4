"""What the code location is built from, read once at import (env), and the day partitions it implies.

- ``DOLPHIN_DAGSTER_DATA``: candle set name under ``<data>/klines`` or a folder path (default
  ``spot-5m-2024``); the partitions are its complete UTC days (the dev set: 2024-01-01 .. 2024-09-05).
- ``DOLPHIN_DAGSTER_SOURCE``: ``folder`` (default) or ``binance_archive`` (then ``DOLPHIN_DAGSTER_SYMBOLS``,
  ``DOLPHIN_DAGSTER_INTERVAL`` (5m), ``DOLPHIN_DAGSTER_MARKET`` (um) and ``DOLPHIN_PARTITION_START`` are
  required/used, and the partitions stay open-ended for the daily paper schedule).
- ``DOLPHIN_PARTITION_START`` / ``DOLPHIN_PARTITION_END`` (``YYYY-MM-DD``; END is the last partition, or
  ``open``) override the window taken from the data.
- ``DOLPHIN_FEATURE_STORE`` (``embedded``, default, or ``hazelcast``), ``DOLPHIN_HZ_MEMBERS`` (comma-separated)
  and ``DOLPHIN_HZ_CLUSTER``: the feature store resource's defaults (docker/compose.yaml sets the last two).

The data's window is found with ``load_panel`` (the aligner's rules decide which days are complete) and
cached under the data home keyed by the files' names, sizes and mtimes: every step process imports this
module, and re-aligning the whole set each time would cost seconds per step.
"""

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import date, timedelta

from dolphin.engine.config import BLUE
from dolphin.paths import data_home, resolve_kline_set
from dolphin.timeutil import DAY_MS, day_str, parse_bar

STRATEGY = "BLUE"
ENGINE_CONFIG = BLUE


@dataclass(frozen=True)
class Settings:
    source: str  # folder | binance_archive
    data: str  # set name or folder path (folder source)
    symbols: tuple  # binance_archive source
    interval: str
    market: str
    bar_ms: int
    start: str  # first partition (YYYY-MM-DD)
    end: str | None  # last partition, None = open-ended
    feature_store: str = "embedded"
    hz_members: tuple = ("127.0.0.1:5701",)
    hz_cluster: str = "dolphin"

    @property
    def end_exclusive(self) -> str | None:
        return None if self.end is None else (date.fromisoformat(self.end) + timedelta(days=1)).isoformat()


def _folder_span(path) -> tuple:
    """(first full day, last full day, bar_ms) of a candle folder/file, cached by file identity."""
    files = sorted(p for p in (path.rglob("*") if path.is_dir() else [path]) if p.is_file())
    ident = json.dumps([str(path)] + [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files])
    cache = data_home() / "cache" / f"dagster_span_{hashlib.sha256(ident.encode()).hexdigest()[:20]}.json"
    if cache.exists():
        try:
            d = json.loads(cache.read_text())
            return d["first"], d["last"], d["bar_ms"]
        except (ValueError, KeyError):
            pass
    from dolphin.data import DataError, load_panel

    try:
        panel = load_panel(path)
    except DataError as e:
        # one unreadable file must not take the code location down: the window comes from the readable
        # files (not cached), and the assets that read the data (market_bars and what follows) fail at run
        # time with this file named, the others run
        panel = _readable_panel(path, e)
        if panel is None:
            raise
        DATA_ERRORS.append(str(e))
        cache = None
    bar = int(panel.bar_ms)
    t0, t1 = int(panel.open_time[0]), int(panel.open_time[-1])
    first = t0 if t0 % DAY_MS == 0 else (t0 // DAY_MS + 1) * DAY_MS
    last = t1 - DAY_MS + bar if (t1 + bar) % DAY_MS == 0 else (t1 // DAY_MS - 1) * DAY_MS
    if last < first:
        raise ValueError(f"{path}: no complete UTC day in the data ({day_str(t0)} .. {day_str(t1)})")
    out = {"first": day_str(first), "last": day_str(last), "bar_ms": bar}
    if cache is None:
        return out["first"], out["last"], bar
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(out))
    os.replace(tmp, cache)
    return out["first"], out["last"], bar


DATA_ERRORS: list = []  # data problems met while building the settings (the code location still loads)


def _readable_panel(path, error):
    """The panel of the symbols whose files can be read, or None when none can."""
    from dolphin.data import DataError, load_panel
    from dolphin.data.readers import candle_symbols

    try:
        symbols = candle_symbols(path)
    except DataError:
        return None
    good = []
    for sym in symbols:
        try:
            load_panel(path, symbols=[sym])
            good.append(sym)
        except DataError:
            pass
    if not good or len(good) == len(symbols):
        return None
    try:
        return load_panel(path, symbols=good)
    except DataError:
        return None


def load_settings(env=None) -> Settings:
    env = os.environ if env is None else env
    source = env.get("DOLPHIN_DAGSTER_SOURCE", "folder")
    data = env.get("DOLPHIN_DAGSTER_DATA", "spot-5m-2024")
    symbols = tuple(s.strip().upper() for s in env.get("DOLPHIN_DAGSTER_SYMBOLS", "").split(",") if s.strip())
    interval = env.get("DOLPHIN_DAGSTER_INTERVAL", "5m")
    market = env.get("DOLPHIN_DAGSTER_MARKET", "um")
    start, end = env.get("DOLPHIN_PARTITION_START"), env.get("DOLPHIN_PARTITION_END")
    if source == "folder":
        first, last, bar = _folder_span(resolve_kline_set(data))
        start, end = start or first, end or last
    elif source == "binance_archive":
        if not start or not symbols:
            raise ValueError("DOLPHIN_DAGSTER_SOURCE=binance_archive needs DOLPHIN_PARTITION_START and "
                             "DOLPHIN_DAGSTER_SYMBOLS (comma-separated)")
        bar, end = parse_bar(interval), end or "open"
    else:
        raise ValueError(f"DOLPHIN_DAGSTER_SOURCE={source!r}: expected folder or binance_archive")
    for v in (start, end):
        if v != "open":
            date.fromisoformat(v)
    members = tuple(m.strip() for m in env.get("DOLPHIN_HZ_MEMBERS", "127.0.0.1:5701").split(",") if m.strip())
    return Settings(source, data, symbols, interval, market, int(bar), start, None if end == "open" else end,
                    env.get("DOLPHIN_FEATURE_STORE", "embedded"), members, env.get("DOLPHIN_HZ_CLUSTER", "dolphin"))


SETTINGS = load_settings()

"""Candle readers: files on disk -> ``dict[str, Candles]`` (raw rows, int64 ms bar-open UTC).

Formats, recognised by file name (a folder may mix them; sub-folders are not entered):

- ``parquet``  ``<SYMBOL>.parquet`` as in ``<data>/klines/<set>/``: columns ``open_time`` (timestamp, or
  ``date`` as freqtrade's parquet format) and ``open high low close volume``.
- ``feather``  freqtrade ``<PAIR>-<tf>.feather`` (spot) or ``<PAIR>-<tf>-futures.feather``; columns
  ``date`` (tz-aware timestamp) ``open high low close volume``.
- ``json``     freqtrade ``<PAIR>-<tf>[-futures].json`` (or ``.json.gz``): a list of
  ``[ms, open, high, low, close, volume]`` rows.
- ``binance-csv`` / ``binance-zip``  Binance public-archive klines ``<SYMBOL>-<tf>-<YYYY-MM[-DD]>.csv``
  / ``.zip`` (the zip holds one CSV): 12 columns, header row optional, ``open_time`` in ms or µs
  (µs, used by spot files from 2025, is recognised per row by magnitude: >= 1e14).

Symbols: ``BTC_USDT`` and ``BTC_USDT_USDT`` (freqtrade futures) both become ``BTCUSDT``. Files of one
symbol are concatenated in file-name order (Binance daily/monthly files sort chronologically); the
aligner then sorts and de-duplicates and reports what it did. The reader itself changes no value: it
only filters by symbol and by ``start_ms <= open_time <= end_ms`` (both inclusive bar opens).

Skipped without error (listed in ``CandleSet.skipped``): files with other extensions (e.g. Binance
``.CHECKSUM``), hidden files, sub-folders, and freqtrade files that are not trade candles (``-mark``,
``-index``, ``-premiumIndex``, ``-funding_rate``). Everything else that cannot be read is a
``DataError`` naming the file (and the line / row and timestamp for a malformed row).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.parquet as pq

from dolphin.data.contracts import Candles, DataError
from dolphin.timeutil import fmt_ms

PRICE_COLUMNS = ("open", "high", "low", "close", "volume")
BINANCE_COLUMNS = (
    "open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume", "count",
    "taker_buy_volume", "taker_buy_quote_volume", "ignore",
)
# Plausible epoch ranges: ms covers 1973..5138, µs the same span in microseconds.
_MS_MIN, _US_MIN, _US_MAX = 10**11, 10**14, 10**17

_TF = r"\d+(?:s|m|h|d|w|M|mo)"
_FREQTRADE_RE = re.compile(
    rf"^(?P<pair>[A-Za-z0-9]+(?:_[A-Za-z0-9]+){{1,2}})-(?P<tf>{_TF})(?:-(?P<ctype>[A-Za-z_]+))?$"
)
_BINANCE_RE = re.compile(rf"^(?P<sym>[A-Za-z0-9]+)-(?P<tf>{_TF})-(?P<date>\d{{4}}-\d{{2}}(?:-\d{{2}})?)$")
_PLAIN_RE = re.compile(r"^[A-Za-z0-9]+$")
_NON_TRADE_TYPES = {"mark", "index", "premiumIndex", "funding_rate"}

_EXTENSIONS = {  # longest first
    ".json.gz": "json", ".parquet": "parquet", ".pq": "parquet", ".feather": "feather", ".ftr": "feather",
    ".json": "json", ".csv": "binance-csv", ".zip": "binance-zip",
}


class CandleSet(dict):
    """``dict[str, Candles]`` plus where it came from (for ``dolphin data inspect`` and reports)."""

    def __init__(self, *args, path: str = "", **kw):
        super().__init__(*args, **kw)
        self.path = path
        self.formats: dict[str, tuple] = {}  # symbol -> formats its files had
        self.file_formats: dict[str, str] = {}  # file read -> its format
        self.skipped: list[tuple[str, str]] = []  # (file, reason)


@dataclass(frozen=True)
class _FileSpec:
    path: Path
    fmt: str
    symbol: str
    timeframe: str | None  # from the file name, if it has one
    market: str | None  # "spot" / "futures" for freqtrade names, else None


def normalize_symbol(s: str) -> str:
    """'BTC/USDT', 'BTC/USDT:USDT', 'btc_usdt', 'BTC-USDT' -> 'BTCUSDT'."""
    s = s.strip().upper().split(":")[0]
    return re.sub(r"[/_\-\s]", "", s)


def _split_ext(name: str) -> tuple[str, str | None]:
    low = name.lower()
    for ext, fmt in _EXTENSIONS.items():
        if low.endswith(ext):
            return name[: -len(ext)], fmt
    return name, None


def _classify(path: Path) -> _FileSpec | str:
    """A _FileSpec, or the reason the file is not a candle file (a str)."""
    stem, fmt = _split_ext(path.name)
    if fmt is None:
        return "not a candle file extension"
    m = _FREQTRADE_RE.match(stem)
    if m and fmt in ("feather", "json", "parquet"):
        ctype = m.group("ctype")
        if ctype in _NON_TRADE_TYPES:
            return f"freqtrade {ctype!r} candles, not trades"
        if ctype not in (None, "futures", "spot"):
            raise DataError(f"{path}: unknown freqtrade candle type {ctype!r} in the file name")
        parts = m.group("pair").upper().split("_")
        market = "futures" if (ctype == "futures" or len(parts) == 3) else "spot"
        return _FileSpec(path, fmt, parts[0] + parts[1], m.group("tf"), market)
    m = _BINANCE_RE.match(stem)
    if m:
        return _FileSpec(path, fmt, m.group("sym").upper(), m.group("tf"), None)
    # <SYMBOL>.parquet / <SYMBOL>.csv / <SYMBOL>-<tf>.<ext>
    base, _, tf = stem.partition("-")
    if _PLAIN_RE.match(base) and (not tf or re.fullmatch(_TF, tf)):
        return _FileSpec(path, fmt, base.upper(), tf or None, None)
    raise DataError(
        f"{path}: cannot tell the symbol from the file name (expected <SYMBOL>.parquet, "
        f"<PAIR>-<tf>[-futures].feather/.json or <SYMBOL>-<tf>-<date>.csv/.zip)"
    )


# ----------------------------------------------------------------------------------------------
# conversions


def _row(i: int, line_offset: int | None) -> str:
    return f"row {i}" if line_offset is None else f"line {i + line_offset}"


def _ints_to_ms(t: np.ndarray, where: str, line_offset: int | None = None) -> np.ndarray:
    """Integer epoch times in ms or µs (per value, by magnitude) -> int64 ms."""
    t = np.asarray(t, dtype=np.int64)
    if t.size == 0:
        return t
    bad = (t < _MS_MIN) | (t >= _US_MAX)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{where}: {_row(i, line_offset)}: open_time {int(t[i])} is neither epoch milliseconds nor microseconds"
        )
    us = t >= _US_MIN
    if us.any():
        frac = us & (t % 1000 != 0)
        if frac.any():
            i = int(np.flatnonzero(frac)[0])
            raise DataError(f"{where}: {_row(i, line_offset)}: open_time {int(t[i])} µs is not a whole millisecond")
        t = np.where(us, t // 1000, t)
    return t


def _time_column_to_ms(col: pa.ChunkedArray | pa.Array, where: str, line_offset: int | None = None) -> np.ndarray:
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if col.null_count:
        i = int(np.flatnonzero(np.asarray(col.is_null()))[0])
        raise DataError(f"{where}: {_row(i, line_offset)}: open_time is empty")
    typ = col.type
    if pa.types.is_timestamp(typ):
        raw = col.cast(pa.int64()).to_numpy()
        scale = {"s": -1000, "ms": 1, "us": 1000, "ns": 1_000_000}[typ.unit]
        if scale == -1000:
            return raw * 1000
        if scale > 1:
            sub = raw % scale != 0
            if sub.any():
                i = int(np.flatnonzero(sub)[0])
                raise DataError(f"{where}: {_row(i, line_offset)}: open_time {col[i]} is not a whole millisecond")
            return raw // scale
        return raw
    if pa.types.is_integer(typ):
        return _ints_to_ms(col.cast(pa.int64()).to_numpy(), where, line_offset)
    if pa.types.is_floating(typ):
        f = col.to_numpy(zero_copy_only=False)
        nonint = ~np.isfinite(f) | (f != np.floor(f))
        if nonint.any():
            i = int(np.flatnonzero(nonint)[0])
            raise DataError(f"{where}: {_row(i, line_offset)}: open_time {f[i]!r} is not an integer epoch time")
        return _ints_to_ms(f.astype(np.int64), where, line_offset)
    raise DataError(f"{where}: open_time column has type {typ}, expected a timestamp or integer epoch ms")


def _price_column(table: pa.Table, name: str, where: str) -> np.ndarray:
    col = table.column(name)
    if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type) or pa.types.is_decimal(col.type)):
        raise DataError(f"{where}: column {name!r} has type {col.type}, expected numbers")
    # nulls become NaN: the aligner reports such a bar as bad_price
    return np.ascontiguousarray(col.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def _table_to_arrays(table: pa.Table, time_col: str, where: str, line_offset: int | None = None):
    t = np.ascontiguousarray(_time_column_to_ms(table.column(time_col), where, line_offset), dtype=np.int64)
    return t, [_price_column(table, c, where) for c in PRICE_COLUMNS]


def _require_columns(names, path: Path, time_options=("open_time", "date")) -> str:
    time_col = next((c for c in time_options if c in names), None)
    missing = [c for c in PRICE_COLUMNS if c not in names]
    if time_col is None or missing:
        need = ([f"{'/'.join(time_options)}"] if time_col is None else []) + missing
        raise DataError(f"{path}: not a candle file: missing column(s) {', '.join(need)} (has: {', '.join(names)})")
    return time_col


# ----------------------------------------------------------------------------------------------
# per-format readers: return (open_time ms, [open, high, low, close, volume]) unfiltered by symbol


def _read_parquet(path: Path, start_ms, end_ms):
    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:
        raise DataError(f"{path}: unreadable Parquet file ({exc})") from None
    names = pf.schema_arrow.names
    time_col = _require_columns(names, path)
    groups = list(range(pf.num_row_groups))
    if start_ms is not None or end_ms is not None:
        groups = _prune_row_groups(pf, names.index(time_col), groups, start_ms, end_ms)
    try:
        table = pf.read_row_groups(groups, columns=[time_col, *PRICE_COLUMNS]) if groups else None
    except Exception as exc:
        raise DataError(f"{path}: unreadable Parquet file ({exc})") from None
    if table is None:
        return np.empty(0, np.int64), [np.empty(0) for _ in PRICE_COLUMNS]
    return _table_to_arrays(table, time_col, str(path))


def _prune_row_groups(pf, col_idx, groups, start_ms, end_ms):
    """Skip row groups whose time statistics lie wholly outside the window (row-level filter follows)."""
    typ = pf.schema_arrow.field(col_idx).type
    if not pa.types.is_timestamp(typ) or typ.unit != "ms":
        return groups
    keep = []
    for g in groups:
        st = pf.metadata.row_group(g).column(col_idx).statistics
        if st is None or not st.has_min_max:
            keep.append(g)
            continue
        lo, hi = (int(pa.scalar(v, type=typ).cast(pa.int64()).as_py()) for v in (st.min, st.max))
        if (end_ms is not None and lo > end_ms) or (start_ms is not None and hi < start_ms):
            continue
        keep.append(g)
    return keep


def _read_feather(path: Path, start_ms, end_ms):
    try:
        table = feather.read_table(path, memory_map=False)  # no mmap: freqtrade rewrites files in place
    except Exception as exc:
        raise DataError(f"{path}: unreadable feather file ({exc})") from None
    time_col = _require_columns(table.column_names, path, ("date", "open_time"))
    return _table_to_arrays(table, time_col, str(path))


def _read_json(path: Path, start_ms, end_ms):
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rt") as fh:
                rows = json.load(fh)
        else:
            with open(path, "rb") as fh:
                rows = json.load(fh)
    except Exception as exc:
        raise DataError(f"{path}: unreadable JSON candle file ({exc})") from None
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a JSON list of [ms, open, high, low, close, volume] rows")
    if not rows:
        return np.empty(0, np.int64), [np.empty(0) for _ in PRICE_COLUMNS]
    try:
        arr = np.array(rows, dtype=np.float64)
        ok = arr.ndim == 2 and arr.shape[1] == 6
    except (ValueError, TypeError):
        ok = False
    if not ok:
        _diagnose_json_rows(rows, path)
        raise DataError(f"{path}: expected rows of [ms, open, high, low, close, volume]")
    # Timestamps as float64 are exact below 2**53 (year ~287000 in ms).
    ts = arr[:, 0]
    nonint = ~np.isfinite(ts) | (ts != np.floor(ts))
    if nonint.any():
        i = int(np.flatnonzero(nonint)[0])
        raise DataError(f"{path}: row {i}: timestamp {rows[i][0]!r} is not an integer epoch time")
    t = _ints_to_ms(ts.astype(np.int64), str(path))
    return t, [np.ascontiguousarray(arr[:, k]) for k in range(1, 6)]


def _diagnose_json_rows(rows, path: Path) -> None:
    names = ("timestamp",) + PRICE_COLUMNS
    for i, row in enumerate(rows):
        ts = row[0] if isinstance(row, list) and row else None
        at = f"row {i} (timestamp {ts!r}{_fmt_suffix(ts)})"
        if not isinstance(row, list) or len(row) != 6:
            n = len(row) if isinstance(row, list) else type(row).__name__
            raise DataError(f"{path}: {at}: expected 6 values [ms, open, high, low, close, volume], got {n}")
        for name, v in zip(names, row):
            if v is None and name != "timestamp":
                continue  # null price -> NaN, reported by the aligner
            try:
                float(v)
            except (TypeError, ValueError):
                raise DataError(f"{path}: {at}: {name} value {v!r} is not a number") from None


def _fmt_suffix(ts) -> str:
    try:
        v = int(float(ts))
        v = v // 1000 if v >= _US_MIN else v
        return f" = {fmt_ms(v)} UTC" if _MS_MIN <= v < _US_MIN else ""
    except (TypeError, ValueError, OverflowError, OSError):
        return ""


_CSV_TYPES = {"open_time": pa.int64(), **{c: pa.float64() for c in PRICE_COLUMNS}}


def _read_binance_csv_bytes(data: bytes, where: str):
    """Binance kline CSV (12 columns, optional header) from bytes."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if not data.strip():
        raise DataError(f"{where}: empty file")
    first = data.split(b"\n", 1)[0].strip()
    first_field = first.split(b",", 1)[0].strip().strip(b'"')
    has_header = not first_field.lstrip(b"-").isdigit()
    if has_header:
        ncol = len(first.split(b","))
        if ncol != len(BINANCE_COLUMNS):
            raise DataError(
                f"{where}: line 1 (header): expected the {len(BINANCE_COLUMNS)} Binance kline columns, got {ncol}"
            )
    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(column_names=list(BINANCE_COLUMNS), skip_rows=1 if has_header else 0),
            convert_options=pacsv.ConvertOptions(column_types=_CSV_TYPES, include_columns=["open_time", *PRICE_COLUMNS]),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        _diagnose_csv(data, where, has_header)
        raise DataError(f"{where}: malformed Binance kline CSV ({exc})") from None
    return _table_to_arrays(table, "open_time", where, line_offset=2 if has_header else 1)


def _diagnose_csv(data: bytes, where: str, has_header: bool) -> None:
    """Find the first malformed row for the error message (slow path, only after a parse failure)."""
    text = data.decode("utf-8", errors="replace").splitlines()
    for lineno, fields in enumerate(csv.reader(text), start=1):
        if (has_header and lineno == 1) or not fields:
            continue
        ts = fields[0].strip()
        at = f"line {lineno} (open_time {ts}{_fmt_suffix(ts)})"
        if len(fields) != len(BINANCE_COLUMNS):
            raise DataError(f"{where}: {at}: expected {len(BINANCE_COLUMNS)} columns, got {len(fields)}")
        try:
            int(ts)
        except ValueError:
            raise DataError(f"{where}: line {lineno}: open_time {ts!r} is not an integer epoch time") from None
        for name, v in zip(BINANCE_COLUMNS[1:6], fields[1:6]):
            if v.strip() == "":
                continue  # empty -> NaN, reported by the aligner
            try:
                float(v)
            except ValueError:
                raise DataError(f"{where}: {at}: {name} value {v!r} is not a number") from None


def _read_binance_csv(path: Path, start_ms, end_ms):
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    return _read_binance_csv_bytes(data, str(path))


def _read_binance_zip(path: Path, start_ms, end_ms):
    try:
        with zipfile.ZipFile(path) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            csvs = [m for m in members if m.filename.lower().endswith(".csv")]
            if len(csvs) != 1:
                raise DataError(
                    f"{path}: expected one CSV inside the zip, found {len(csvs)} "
                    f"({', '.join(m.filename for m in members) or 'empty archive'})"
                )
            data = zf.read(csvs[0])
            member = csvs[0].filename
    except DataError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, zipfile.LargeZipFile) as exc:
        raise DataError(f"{path}: not a readable zip archive ({exc})") from None
    return _read_binance_csv_bytes(data, f"{path}:{member}")


_READERS = {
    "parquet": _read_parquet,
    "feather": _read_feather,
    "json": _read_json,
    "binance-csv": _read_binance_csv,
    "binance-zip": _read_binance_zip,
}


# ----------------------------------------------------------------------------------------------
# public entry point


def read_candles(
    path: str | os.PathLike,
    *,
    symbols=None,
    start_ms: int | None = None,
    end_ms: int | None = None,
    timeframe: str | None = None,
) -> CandleSet:
    """Read one candle file or a folder of them into ``{symbol: Candles}`` (raw, unaligned).

    ``symbols``: only these (any spelling, see ``normalize_symbol``); a requested symbol with no file is a
    DataError. ``start_ms``/``end_ms``: keep rows with ``start_ms <= open_time <= end_ms``.
    ``timeframe`` (e.g. ``"5m"``): only files whose name carries that timeframe (needed when a folder
    holds several timeframes of one symbol, which is otherwise a DataError).
    """
    p = Path(path).expanduser()
    out = CandleSet(path=str(p))
    specs = _select_files(p, out.skipped, symbols, timeframe)

    by_symbol: dict[str, list[_FileSpec]] = {}
    for s in specs:
        by_symbol.setdefault(s.symbol, []).append(s)
    for sym, group in by_symbol.items():
        _check_consistent(sym, group)

    def load(spec: _FileSpec):
        t, cols = _READERS[spec.fmt](spec.path, start_ms, end_ms)
        if start_ms is not None or end_ms is not None:
            m = np.ones(t.shape[0], bool)
            if start_ms is not None:
                m &= t >= start_ms
            if end_ms is not None:
                m &= t <= end_ms
            if not m.all():
                t, cols = t[m], [c[m] for c in cols]
        return t, cols

    # pyarrow and zlib release the GIL, so threads overlap the per-file work
    if len(specs) > 1:
        with ThreadPoolExecutor(max_workers=min(8, len(specs), (os.cpu_count() or 1) * 2)) as pool:
            results = list(pool.map(load, specs))
    else:
        results = [load(s) for s in specs]
    loaded = dict(zip((s.path for s in specs), results))

    for sym in sorted(by_symbol):
        group = by_symbol[sym]
        out[sym] = _concat(sym, [(s.path, *loaded[s.path]) for s in group])
        out.formats[sym] = tuple(sorted({s.fmt for s in group}))
        out.file_formats.update((str(s.path), s.fmt) for s in group)
    return out


def candle_symbols(path, *, symbols=None, timeframe: str | None = None) -> list[str]:
    """The symbols ``read_candles`` would return, from the file names alone (nothing is read)."""
    return sorted({s.symbol for s in _select_files(Path(path).expanduser(), [], symbols, timeframe)})


def _select_files(p: Path, skipped: list, symbols, timeframe) -> list[_FileSpec]:
    if not p.exists():
        raise DataError(f"{p}: no such file or directory")
    specs: list[_FileSpec] = []
    if p.is_dir():
        for f in sorted(p.iterdir(), key=lambda x: x.name):
            if f.name.startswith("."):
                continue
            if f.is_dir():
                skipped.append((str(f), "sub-folder (not searched)"))
                continue
            spec = _classify(f)
            if isinstance(spec, str):
                skipped.append((str(f), spec))
            else:
                specs.append(spec)
        if not specs:
            raise DataError(
                f"{p}: no candle files found (looked for {', '.join(sorted(_EXTENSIONS))})"
                + (f"; skipped {len(skipped)} other file(s)" if skipped else "")
            )
    else:
        spec = _classify(p)
        if isinstance(spec, str):
            raise DataError(f"{p}: not a candle file ({spec})")
        specs.append(spec)

    if timeframe is not None:
        kept = [s for s in specs if s.timeframe in (None, timeframe)]
        skipped.extend((str(s.path), f"timeframe {s.timeframe} (asked for {timeframe})") for s in specs if s not in kept)
        specs = kept
    if symbols is not None:
        wanted = {normalize_symbol(s) for s in ([symbols] if isinstance(symbols, str) else symbols)}
        available = {s.symbol for s in specs}
        missing = sorted(wanted - available)
        if missing:
            raise DataError(
                f"{p}: symbol(s) not found: {', '.join(missing)} (available: {', '.join(sorted(available)) or 'none'})"
            )
        specs = [s for s in specs if s.symbol in wanted]
    return specs


def _check_consistent(sym: str, group: list[_FileSpec]) -> None:
    tfs = {s.timeframe for s in group if s.timeframe is not None}
    if len(tfs) > 1:
        listing = "; ".join(f"{tf}: {', '.join(s.path.name for s in group if s.timeframe == tf)}" for tf in sorted(tfs))
        raise DataError(f"{sym}: files with different timeframes ({listing}); pass timeframe= / read one timeframe")
    markets = {s.market for s in group if s.market is not None}
    if len(markets) > 1:
        raise DataError(
            f"{sym}: both spot and futures freqtrade files ({', '.join(s.path.name for s in group)}); "
            "read them from separate folders"
        )


def _concat(sym: str, parts: list) -> Candles:
    if len(parts) == 1:
        path, t, cols = parts[0]
        return Candles(sym, t, *cols, source=str(path))
    t = np.concatenate([p[1] for p in parts])
    cols = [np.concatenate([p[2][k] for p in parts]) for k in range(5)]
    file_index = np.repeat(np.arange(len(parts), dtype=np.int32), [p[1].shape[0] for p in parts])
    files = tuple(str(p[0]) for p in parts)
    common = os.path.commonpath(files)
    source = f"{common}/ ({len(files)} files of {sym})"
    return Candles(sym, t, *cols, source=source, files=files, file_index=file_index)

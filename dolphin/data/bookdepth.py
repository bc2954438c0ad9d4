"""Reader for Binance's USD-M ``bookDepth`` archive files (order-book depth at fixed bands around the mid).

Format, as confirmed from public sources (searched 2025; Binance publishes no schema page for this dataset):

* Where: ``data.binance.vision/data/futures/um/daily/bookDepth/<SYMBOL>/<SYMBOL>-bookDepth-YYYY-MM-DD.zip``
  with a ``.zip.CHECKSUM`` sibling like every archive file. Daily files only (no monthly folder), USD-M
  futures only. First day 2023-01-01 (2022-12-31 is a 404), according to a public availability probe
  (tools/cost/measure_impact.py in a freqtrade fork, found by the code search).
* One CSV per zip, header row ``timestamp,percentage,depth,notional`` (sample quoted in
  binance/binance-public-data issue #431, ``BTCUSDT-bookDepth-2025-05-19``):
  ``2025-05-19 11:07:31,-5,7885.27500000,647368074.36920000``.
  - ``timestamp``: UTC wall time ``YYYY-MM-DD HH:MM:SS`` (one-second resolution), one snapshot about every
    30 s (confirmed by a Binance maintainer in issue #437). All rows of one snapshot share the timestamp.
  - ``percentage``: the band, in percent of the mid price; negative = bid side, positive = ask side. The grid
    is -5..-1 and 1..5 in early files; later files add -0.2 and 0.2 (so the grid changes between vintages:
    the reader keeps whatever bands a file has).
  - ``depth``: cumulative base-asset quantity resting between the mid and that band ("orderbook depth for
    that percentage level in coin-terms", maintainer answer in issue #447); grows outward.
  - ``notional``: the same in quote currency (USDT), cumulative.
* Known quality problems: some snapshots miss a band (a public user measured and dropped them); in 2025-04/05
  notional/depth of BTCUSDT sat far from the traded price (issue #431). Issue #345 (2024-10) said the dataset
  was no longer updated, but files dated 2025 exist. So: every band is optional per snapshot, and the reader
  checks only what the format promises (fields, numbers, signs), not how plausible the prices are.

Reader rules: header row optional (recognised by its first field ``timestamp``); ``timestamp`` must be
``YYYY-MM-DD HH:MM:SS`` (integer epoch milliseconds are also accepted); ``percentage`` a finite non-zero
number; ``depth`` and ``notional`` finite and >= 0. Anything else is a ``DataError`` naming the file, the
line and the offending text. A row repeating (timestamp, percentage) replaces the earlier one and is counted
(``duplicates``). Nothing is written anywhere by the reader.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from dolphin.data.contracts import DataError
from dolphin.timeutil import fmt_ms

COLUMNS = ("timestamp", "percentage", "depth", "notional")
FILE_RE = re.compile(r"^(?P<sym>[A-Z0-9]+(?:_[0-9]+)?)-bookDepth-(?P<day>\d{4}-\d{2}-\d{2})\.(?P<ext>zip|csv)$")
_TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
_INT_RE = re.compile(r"^\d{11,17}$")
_MS_MIN, _US_MIN = 10**11, 10**14


@dataclass(frozen=True)
class BookDepthRows:
    """The validated rows of one file (or several files of one symbol), sorted by (timestamp, percentage)."""

    symbol: str
    ts: np.ndarray  # (n,) int64 ms UTC
    percentage: np.ndarray  # (n,) float64, signed
    depth: np.ndarray  # (n,) float64 >= 0, cumulative base quantity
    notional: np.ndarray  # (n,) float64 >= 0, cumulative quote notional
    files: tuple = ()
    duplicates: int = 0

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    @property
    def n_snapshots(self) -> int:
        return int(np.unique(self.ts).size) if len(self) else 0


def parse_name(path) -> tuple[str, str]:
    """(symbol, day) of ``<SYMBOL>-bookDepth-YYYY-MM-DD.zip|csv``; DataError otherwise."""
    m = FILE_RE.match(Path(path).name)
    if not m:
        raise DataError(f"{path}: not a bookDepth file name (expected <SYMBOL>-bookDepth-YYYY-MM-DD.zip or .csv)")
    return m.group("sym"), m.group("day")


def _read_text(path: Path) -> bytes:
    if path.suffix != ".zip":
        try:
            return path.read_bytes()
        except OSError as e:
            raise DataError(f"{path}: cannot read: {e}") from e
    try:
        with zipfile.ZipFile(path) as z:
            members = [n for n in z.namelist() if not n.endswith("/")]
            if len(members) != 1 or not members[0].endswith(".csv"):
                raise DataError(f"{path}: expected one CSV inside the zip, found {members}")
            return z.read(members[0])
    except DataError:
        raise
    except Exception as e:  # BadZipFile, zlib.error, EOFError, OSError: a damaged or unreadable zip
        raise DataError(f"{path}: cannot read the zip: {e}") from e


def _bad_line(path: Path, lines: list, header: int) -> DataError:
    """Slow path: find the first row that does not parse and name it."""
    for i, line in enumerate(lines[header:], start=header + 1):
        if not line.strip():
            continue
        f = line.rstrip("\r").split(",")
        why = _row_problem(f)
        if why:
            return DataError(f"{path}: line {i}: {why}: {line[:120]!r}")
    return DataError(f"{path}: could not be parsed as bookDepth CSV")


def _row_problem(f: list) -> str | None:
    if len(f) != 4:
        return f"expected 4 fields (timestamp,percentage,depth,notional), got {len(f)}"
    ts = f[0].strip()
    if not (_TS_RE.match(ts) or _INT_RE.match(ts)):
        return f"timestamp {ts!r} is not 'YYYY-MM-DD HH:MM:SS' or epoch milliseconds"
    if _TS_RE.match(ts):
        try:
            np.datetime64(ts.replace(" ", "T"), "s")
        except ValueError:
            return f"timestamp {ts!r} is not a valid date/time"
    vals = []
    for name, v in zip(COLUMNS[1:], f[1:]):
        try:
            x = float(v)
        except ValueError:
            return f"{name} {v.strip()!r} is not a number"
        if not np.isfinite(x):
            return f"{name} {v.strip()!r} is not finite"
        vals.append(x)
    if vals[0] == 0:
        return "percentage 0 (a band must be below (-) or above (+) the mid)"
    if vals[1] < 0 or vals[2] < 0:
        return f"negative depth/notional ({vals[1]}, {vals[2]})"
    return None


def read_bookdepth_file(path) -> BookDepthRows:
    """One ``<SYMBOL>-bookDepth-YYYY-MM-DD.zip`` (or ``.csv``) -> validated rows. DataError names the file and
    line of the first malformed row."""
    path = Path(path)
    symbol, _day = parse_name(path)
    raw = _read_text(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e})") from e
    lines = text.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    header = 1 if lines and lines[0].strip().lower().startswith("timestamp") else 0
    if header and [c.strip().lower() for c in lines[0].rstrip("\r").split(",")] != list(COLUMNS):
        raise DataError(f"{path}: line 1: header {lines[0][:120]!r}, expected {','.join(COLUMNS)}")
    if len(lines) <= header:
        return BookDepthRows(symbol, np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0), (str(path),))
    try:
        tbl = pacsv.read_csv(
            io.BytesIO(raw),
            read_options=pacsv.ReadOptions(column_names=list(COLUMNS), skip_rows=header),
            parse_options=pacsv.ParseOptions(ignore_empty_lines=True),
            convert_options=pacsv.ConvertOptions(
                column_types={"timestamp": pa.string(), "percentage": pa.float64(), "depth": pa.float64(),
                              "notional": pa.float64()}, strings_can_be_null=False, quoted_strings_can_be_null=False))
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        raise _bad_line(path, lines, header) from None
    if tbl.num_rows == 0:
        return BookDepthRows(symbol, np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0), (str(path),))
    for c in COLUMNS[1:]:
        if tbl.column(c).null_count:
            raise _bad_line(path, lines, header)
    pct = tbl.column("percentage").to_numpy()
    depth = tbl.column("depth").to_numpy()
    notional = tbl.column("notional").to_numpy()
    bad = ~(np.isfinite(pct) & np.isfinite(depth) & np.isfinite(notional)) | (pct == 0) | (depth < 0) | (notional < 0)
    if bad.any():
        raise _bad_line(path, lines, header)
    ts = _timestamps(path, tbl.column("timestamp").to_pylist(), lines, header)
    order = np.lexsort((pct, ts))
    ts, pct, depth, notional = ts[order], pct[order], depth[order], notional[order]
    return _dedupe(symbol, ts, pct, depth, notional, (str(path),))


def _timestamps(path: Path, strs: list, lines: list, header: int) -> np.ndarray:
    uniq, inv = np.unique(np.asarray(strs, dtype=object).astype(str), return_inverse=True)
    uniq = np.char.strip(uniq)
    wall = np.array([bool(_TS_RE.match(s)) for s in uniq], dtype=bool)
    out = np.empty(uniq.size, np.int64)
    try:
        if wall.any():
            out[wall] = np.char.replace(uniq[wall], " ", "T").astype("datetime64[ms]").astype(np.int64)
        for k in np.flatnonzero(~wall):
            if not _INT_RE.match(uniq[k]):
                raise ValueError(uniq[k])
            v = int(uniq[k])
            out[k] = v // 1000 if v >= _US_MIN else v
    except ValueError:
        raise _bad_line(path, lines, header) from None
    return out[inv]


def _dedupe(symbol, ts, pct, depth, notional, files) -> BookDepthRows:
    """Sorted rows -> rows with unique (ts, percentage); a later row wins (stable sort keeps file order)."""
    if ts.size > 1:
        same = (ts[1:] == ts[:-1]) & (pct[1:] == pct[:-1])
        if same.any():
            keep = np.r_[~same, True]  # the last of each run
            n = int(same.sum())
            return BookDepthRows(symbol, ts[keep], pct[keep], depth[keep], notional[keep], files, n)
    return BookDepthRows(symbol, ts, pct, depth, notional, files, 0)


def combine(parts: list) -> BookDepthRows:
    """Rows of several files of one symbol (any order) -> one sorted set; a later file wins a duplicate."""
    if not parts:
        raise DataError("no bookDepth rows to combine")
    syms = {p.symbol for p in parts}
    if len(syms) != 1:
        raise DataError(f"bookDepth rows of several symbols cannot be combined: {sorted(syms)}")
    ts = np.concatenate([p.ts for p in parts])
    pct = np.concatenate([p.percentage for p in parts])
    depth = np.concatenate([p.depth for p in parts])
    notional = np.concatenate([p.notional for p in parts])
    order = np.lexsort((pct, ts))  # stable: equal keys stay in file order
    files = tuple(f for p in parts for f in p.files)
    r = _dedupe(parts[0].symbol, ts[order], pct[order], depth[order], notional[order], files)
    return BookDepthRows(r.symbol, r.ts, r.percentage, r.depth, r.notional, files,
                         r.duplicates + sum(p.duplicates for p in parts))


def find_bookdepth_files(path, symbols=None, first_day: str | None = None, last_day: str | None = None) -> dict:
    """{symbol: [files in day order]} under ``path`` (a file, a flat folder, or the download cache's
    ``data/futures/um/daily/bookDepth/<SYM>/`` tree; searched recursively), optionally only ``symbols`` and
    days ``first_day..last_day`` (YYYY-MM-DD, inclusive). A day present both as .zip and .csv: the zip is used."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder (order-book history)")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*-bookDepth-*") if p.is_file())
    want = None if symbols is None else {s.upper() for s in symbols}
    out: dict = {}
    for f in files:
        m = FILE_RE.match(f.name)
        if not m:
            continue
        sym, day = m.group("sym"), m.group("day")
        if want is not None and sym not in want:
            continue
        if (first_day and day < first_day) or (last_day and day > last_day):
            continue
        prev = out.setdefault(sym, {}).get(day)
        if prev is None or (prev.suffix == ".csv" and f.suffix == ".zip"):
            out[sym][day] = f
    return {s: [d[k] for k in sorted(d)] for s, d in sorted(out.items())}


def write_bookdepth_zip(path, ts_ms, percentage, depth, notional, *, compresslevel: int | None = None) -> Path:
    """Write rows in Binance's layout (header ``timestamp,percentage,depth,notional``, ``YYYY-MM-DD HH:MM:SS``,
    integer bands written as integers) as one zipped CSV named like the zip, atomically (temporary file +
    rename). Numbers are written in their shortest exact form. Used to build synthetic sets and test files."""
    path = Path(path)
    parse_name(path)
    ts_s = np.asarray(ts_ms, np.int64) // 1000
    stamps = np.char.replace(np.datetime_as_string(ts_s.astype("datetime64[s]"), unit="s"), "T", " ")
    pct = np.asarray(percentage, float)
    pct_col = pa.array(pct.astype(np.int64)) if np.all(pct == np.round(pct)) else pa.array(pct)
    table = pa.table({"timestamp": pa.array(stamps), "percentage": pct_col,
                      "depth": pa.array(np.asarray(depth, float)), "notional": pa.array(np.asarray(notional, float))})
    buf = io.BytesIO()
    buf.write(b"timestamp,percentage,depth,notional\n")
    pacsv.write_csv(table, buf, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=compresslevel) as z:
        z.writestr(path.name[:-4] + ".csv", buf.getvalue())
    tmp.replace(path)
    return path


def describe_rows(r: BookDepthRows) -> str:
    if not len(r):
        return f"{r.symbol}: no rows"
    return (f"{r.symbol}: {r.n_snapshots:,} snapshots {fmt_ms(int(r.ts[0]))} .. {fmt_ms(int(r.ts[-1]))} UTC, "
            f"bands {sorted(set(np.round(r.percentage, 6).tolist()))}, {len(r.files)} file(s)")

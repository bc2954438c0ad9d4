"""Scan files: one Parquet per UTC day (batch) and one Arrow IPC file per scan (live).

Layout and columns: see ``dolphin.scanner.schema``. Every file is written atomically (temporary
file in the same directory, fsync, ``os.replace``), so a reader (e.g. a sensor watching the scan
directory) never sees a partial file. A scan belongs to the UTC day of its bar OPEN time.
"""

import os
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dolphin.scanner.core import ScanResult
from dolphin.scanner.schema import parse_metadata, scan_schema
from dolphin.timeutil import DAY_MS, day_str, parse_time

_DAY_FILE = re.compile(r"^scans_(\d{4}-\d{2}-\d{2})\.parquet$")
_TS_UTC = pa.timestamp("ms", tz="UTC")


def to_table(scans: ScanResult) -> pa.Table:
    N = scans.n_assets
    T = len(scans)
    schema = scan_schema(scans.symbols, scans.bar_ms, scans.windows)

    def fixed(a2d):
        return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(a2d).reshape(-1)), N)

    cols = [
        pa.array(scans.timestamp.astype(np.int64)),
        pa.array(scans.open_time.astype(np.int64)).cast(_TS_UTC),
        pa.array(np.full(T, N, dtype=np.int32)),
    ]
    for k in range(len(scans.windows)):
        lam = scans.lam[:, k]
        cols += [
            pa.array(np.ascontiguousarray(lam)),
            pa.array(lam / N),
            pa.array(np.ascontiguousarray(scans.velocity[:, k])),
            pa.array(np.ascontiguousarray(scans.instability[:, k])),
            pa.array(np.ascontiguousarray(scans.valid[:, k])),
            fixed(scans.loadings[:, k, :]),
        ]
    cols += [
        pa.array(np.ascontiguousarray(scans.vel_div)),
        fixed(scans.close),
        pa.array(scans.fallbacks.astype(np.int8)),
    ]
    return pa.Table.from_arrays(cols, schema=schema)


def from_table(table: pa.Table) -> ScanResult:
    symbols, bar_ms, windows = parse_metadata(table.schema)
    N, T, K = len(symbols), table.num_rows, len(windows)

    def col(name):
        return table.column(name).to_numpy()

    def fixed(name):
        arr = table.column(name).combine_chunks()
        return arr.flatten().to_numpy().reshape(T, N)

    lam = np.empty((T, K))
    vel = np.empty((T, K))
    inst = np.empty((T, K))
    valid = np.empty((T, K), dtype=np.bool_)
    load = np.empty((T, K, N))
    for k, w in enumerate(windows):
        lam[:, k] = col(f"lambda_w{w}")
        vel[:, k] = col(f"velocity_w{w}")
        inst[:, k] = col(f"instability_w{w}")
        valid[:, k] = col(f"valid_w{w}")
        load[:, k, :] = fixed(f"loadings_w{w}")
    return ScanResult(
        symbols=symbols,
        bar_ms=bar_ms,
        windows=windows,
        open_time=table.column("bar_open_time").cast(pa.int64()).to_numpy(),
        lam=lam,
        velocity=vel,
        instability=inst,
        valid=valid,
        loadings=load,
        close=fixed("close"),
        fallbacks=col("fallbacks").astype(np.int8),
    )


def _atomic_write(path: Path, write, fsync: bool = True) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_day_parquet(scans: ScanResult, out_dir, *, compression: str = "zstd") -> list:
    """Write ``<out_dir>/scans_YYYY-MM-DD.parquet`` per UTC day (bar open) present in ``scans``.

    A day only partly covered by ``scans`` gets a file with just those rows (a later run over the
    whole day replaces it). Returns the paths written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if len(scans) == 0:
        return []
    day = scans.open_time // DAY_MS
    cuts = np.flatnonzero(np.diff(day)) + 1
    paths = []
    for a, b in zip([0, *cuts.tolist()], [*cuts.tolist(), len(scans)]):
        table = to_table(scans[a:b])
        path = out / f"scans_{day_str(scans.open_time[a])}.parquet"
        paths.append(_atomic_write(
            path, lambda f: pq.write_table(table, f, compression=compression, use_dictionary=False)
        ))
    return paths


# ---------------------------------------------------------------- per-scan files: ONE layout
# The live scanner of the runtime (runtime/scan_files.py), `dolphin scan --arrow-files`, the Dagster scan-file
# sensor / scan_latest asset and the scan bridge (`dolphin bridge`) all name files with these two functions.


def scan_dir(path=None) -> Path:
    """The folder of per-scan Arrow files: ``path`` if given, else ``$DOLPHIN_HOME/scans`` -- the folder the
    scan-file sensor (``ScanDir``'s default) and the scan bridge watch and the runtime writes into."""
    if path:
        return Path(path).expanduser()
    from dolphin.paths import data_home

    return data_home() / "scans"


def scan_file_path(root, open_ms: int, scan_ts: int) -> Path:
    """``<root>/YYYY-MM-DD/scan_<scan_ts>.arrow``: the UTC day of the bar OPEN, named by the scan time (bar
    close, ms). Watchers never order by the name (``dolphin.scan_files``: by mtime)."""
    return Path(root) / day_str(int(open_ms)) / f"scan_{int(scan_ts)}.arrow"


def write_scan_arrow(row: ScanResult, scan_dir, *, fsync: bool = True) -> Path:
    """Write one scan (a one-row ScanResult) to ``scan_file_path(scan_dir, ...)`` =
    ``<scan_dir>/YYYY-MM-DD/scan_<timestamp>.arrow``, atomically (temporary name, then rename)."""
    if len(row) != 1:
        raise ValueError(f"write_scan_arrow takes one scan, got {len(row)} rows")
    path = scan_file_path(scan_dir, row.open_time[0], row.timestamp[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    table = to_table(row)

    def write(f):
        with pa.ipc.new_file(f, table.schema) as w:
            w.write_table(table)

    return _atomic_write(path, write, fsync=fsync)


def read_scan_arrow(path) -> ScanResult:
    with pa.memory_map(str(path)) as src:
        return from_table(pa.ipc.open_file(src).read_all())


def time_bounds(start=None, end=None) -> tuple:
    """(start_ms, end_ms) inclusive bar-open bounds; a date-only ``end`` means the whole day."""
    s = None if start is None else (int(start) if isinstance(start, (int, np.integer)) else parse_time(start))
    if end is None:
        e = None
    elif isinstance(end, (int, np.integer)):
        e = int(end)
    else:
        e = parse_time(end)
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(end).strip()):
            e += DAY_MS - 1
    return s, e


def read_scans_table(scan_dir, start=None, end=None) -> pa.Table:
    """Scans with bar open time in [start, end] from daily Parquet files (or, if there are none,
    per-scan Arrow files) under ``scan_dir``; ``start``/``end``: ms or time strings."""
    s, e = time_bounds(start, end)
    d = Path(scan_dir)
    files = []
    for p in sorted(d.glob("scans_*.parquet")):
        m = _DAY_FILE.match(p.name)
        if not m:
            continue
        day0 = parse_time(m.group(1))
        if (s is None or day0 + DAY_MS > s) and (e is None or day0 <= e):
            files.append(p)
    if files:
        tables = [pq.read_table(p) for p in files]
    else:
        arrows = sorted(d.glob("*/scan_*.arrow"), key=lambda p: int(p.stem.split("_")[1]))
        tables = []
        for p in arrows:
            with pa.memory_map(str(p)) as src:
                tables.append(pa.ipc.open_file(src).read_all())
    if not tables:
        raise FileNotFoundError(f"no scan files in {d}")
    metas = {(tuple(sym), bar, win) for sym, bar, win in (parse_metadata(t.schema) for t in tables)}
    if len(metas) > 1:
        raise ValueError(f"scan files in {d} disagree on symbols / bar / windows; read them separately")
    table = pa.concat_tables(tables)
    ot = table.column("bar_open_time").cast(pa.int64()).to_numpy()
    keep = np.ones(len(ot), dtype=bool)
    if s is not None:
        keep &= ot >= s
    if e is not None:
        keep &= ot <= e
    if not keep.all():
        table = table.filter(pa.array(keep))
    return table


def read_scans(scan_dir, start=None, end=None) -> ScanResult:
    """``read_scans_table`` as a ScanResult of numpy arrays."""
    return from_table(read_scans_table(scan_dir, start, end))

"""Order-book history for backtests: Binance ``bookDepth`` files -> the four book features on the bar grid.

Pipeline (``load_book_history`` then ``BookHistory.on_grid``):

1. Files: ``<SYMBOL>-bookDepth-YYYY-MM-DD.zip|csv`` anywhere under the given path (the download cache of
   ``dolphin data download --kind bookDepth`` or a flat folder), for the panel's symbols and the days of the
   window plus ``warmup_ms`` (default one day) before it, read by ``dolphin.data.bookdepth`` (malformed rows
   are a ``DataError`` naming file and line).
2. Features per snapshot, in time order, with the formula functions of ``dolphin.book.features`` (the same
   ones the live publisher uses): ``band_from_cumulative`` on the snapshot's (percentage, notional) rows at
   ``+-params.band_pct``, ``mid_from_cumulative`` for the mid proxy (None if a side is empty within the band),
   then ``step`` (imbalance, depth_quality, fill_prob, agreement against the history *before* the snapshot).
   A snapshot without both ``+-band_pct`` rows, or whose band ``step`` rejects, is skipped and counted (the
   first few are named by symbol and timestamp): the book is then simply older at the next bar.
3. Bar grid, no look-ahead: the features of bar t (the decision at its close ``close_time[t]``) are those
   of the LAST snapshot with ``timestamp <= close_time[t]``; its age is ``close_time[t] - timestamp``. A bar
   with no snapshot, or one older than ``max_age_s`` (default 30 s, the survival stack's ``ob_max_age_s``:
   DESIGN.md's "a book older than 30 s is stale"), is stale.

Consumers (``dolphin backtest --book PATH``):

* Flow port (``BookFlowProvider``, ``dolphin.engine.inputs.FlowProvider``): ``imbalance`` (the ranking's flow
  term ``w_flow * side * imbalance``) and ``fill_prob``; a stale bar gives the neutral values (imbalance 0,
  fill_prob 0.5). ``agreement`` and ``depth_quality`` are computed and reported, not used by the kernel.
* Cat3 (``BookGrid.cat3_inputs``), as the runtime does it (``runtime.risk.StoreRiskSource._read_book``):
  over the assets tradable at the check, the minimum depth quality, the minimum fill probability and the age
  of the oldest book; any tradable asset without a fresh book -> no book (Cat3 = 0.5, stale).

Results are cached (Parquet under ``<DOLPHIN_HOME>/cache/book``) by the files' names, sizes and mtimes, the
window, the parameters and the code of this module and of ``features.py``; a cache entry is written whole
(temporary file + rename) or not at all.

A folder holding a file named ``SYNTHETIC.md`` is a synthetic set: its first line is carried into every
description, note and report ("SYNTHETIC book history: ..."). ``python -m dolphin.book.history synth`` builds
one from candles (rule in ``synthesize_from_panel``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dolphin.book import features as F
from dolphin.data.bookdepth import combine, find_bookdepth_files, read_bookdepth_file, write_bookdepth_zip
from dolphin.data.contracts import DataError
from dolphin.timeutil import fmt_ms

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
MAX_AGE_S = 30.0  # DESIGN.md: a book older than 30 s is stale (SurvivalConfig.ob_max_age_s)
SYNTHETIC_MARKER = "SYNTHETIC.md"
FEATURES = ("imbalance", "depth_quality", "fill_prob", "agreement")
_EXAMPLES = 5


@dataclass
class FeatureSeries:
    """The four features of one symbol at each usable snapshot (exchange time, ms)."""

    symbol: str
    ts: np.ndarray  # (S,) int64 ms, strictly increasing
    imbalance: np.ndarray
    depth_quality: np.ndarray
    fill_prob: np.ndarray
    agreement: np.ndarray
    skipped: int = 0  # snapshots that could not be used
    skipped_examples: list = field(default_factory=list)  # "timestamp: reason"
    duplicates: int = 0  # rows repeating (timestamp, percentage), later one kept

    def __len__(self) -> int:
        return int(self.ts.shape[0])


def features_from_rows(rows, params: F.BookParams = F.DEFAULT_PARAMS) -> FeatureSeries:
    """``BookDepthRows`` of one symbol (sorted by timestamp) -> ``FeatureSeries`` via ``features.step``."""
    ts_all, pct_all = rows.ts, rows.percentage
    n = len(rows)
    if n == 0:
        z = np.zeros(0)
        return FeatureSeries(rows.symbol, np.zeros(0, np.int64), z, z, z, z, duplicates=rows.duplicates)
    starts = np.flatnonzero(np.r_[True, ts_all[1:] != ts_all[:-1]])
    ends = np.r_[starts[1:], n]
    band = float(params.band_pct)
    is_bid = np.isclose(pct_all, -band, rtol=0, atol=1e-9)
    is_ask = np.isclose(pct_all, band, rtol=0, atol=1e-9)
    # row index of the -band / +band row of each snapshot (-1: absent); rows are unique per (ts, pct)
    snap_of_row = np.repeat(np.arange(starts.size), ends - starts)
    bid_row = np.full(starts.size, -1, np.int64)
    ask_row = np.full(starts.size, -1, np.int64)
    bid_row[snap_of_row[is_bid]] = np.flatnonzero(is_bid)
    ask_row[snap_of_row[is_ask]] = np.flatnonzero(is_ask)
    depth, notional = rows.depth, rows.notional
    out_ts, out = [], ([], [], [], [])
    skipped, examples = 0, []
    state = F.BookState()
    for k in range(starts.size):
        t = int(ts_all[starts[k]])
        bi, ai = int(bid_row[k]), int(ask_row[k])
        if bi < 0 or ai < 0:
            skipped += 1
            if len(examples) < _EXAMPLES:
                have = sorted(set(np.round(pct_all[starts[k]:ends[k]], 6).tolist()))
                examples.append(f"{fmt_ms(t)}: no +/-{band:g} % band (bands {have})")
            continue
        try:
            bd = F.band_from_cumulative([(-band, notional[bi]), (band, notional[ai])], band)
            try:
                mid = F.mid_from_cumulative([(-band, depth[bi], notional[bi]), (band, depth[ai], notional[ai])], band)
            except F.BookSideError:
                mid = None  # a side empty within the band: no price; agreement 0, mid history unchanged
            feats, state = F.step(state, bd, mid, t, params)
        except (F.BookSideError, ValueError) as e:
            skipped += 1
            if len(examples) < _EXAMPLES:
                examples.append(f"{fmt_ms(t)}: {e}")
            continue
        out_ts.append(t)
        for j in range(4):
            out[j].append(feats[j])
    return FeatureSeries(rows.symbol, np.asarray(out_ts, np.int64), *(np.asarray(o, np.float64) for o in out),
                         skipped=skipped, skipped_examples=examples, duplicates=rows.duplicates)


@dataclass
class BookGrid:
    """Book features on a bar grid: row t = as of bar t's close (``close_time[t]``)."""

    symbols: list
    open_time: np.ndarray  # (T,)
    close_time: np.ndarray  # (T,)
    imbalance: np.ndarray  # (T, N), NaN where no snapshot at or before the close
    depth_quality: np.ndarray
    fill_prob: np.ndarray
    agreement: np.ndarray
    age_s: np.ndarray  # (T, N) seconds since the snapshot used; inf where none
    max_age_s: float
    source: str

    @property
    def fresh(self) -> np.ndarray:
        return self.age_s <= self.max_age_s

    def coverage(self, lo: int = 0, hi: int | None = None, tradable: np.ndarray | None = None) -> dict:
        """{symbol: fraction of (tradable) bars in [lo, hi) with a fresh book}."""
        hi = len(self.close_time) if hi is None else hi
        fr = self.fresh[lo:hi]
        tr = np.ones_like(fr) if tradable is None else tradable[lo:hi]
        out = {}
        for j, s in enumerate(self.symbols):
            n = int(tr[:, j].sum())
            out[s] = float((fr[:, j] & tr[:, j]).sum()) / n if n else 1.0
        return out

    def cat3_inputs(self, bar: int, tradable_row: np.ndarray | None = None) -> tuple:
        """(depth_quality, fill_prob, age_s) for the survival stack at bar ``bar``'s close over the assets tradable
        there (``dolphin.book.features.cat3_inputs``: medians over the fresh books; (None, None, None) = stale
        unless a majority of them has one), the runtime's rule."""
        from dolphin.book.features import cat3_inputs

        cols = np.arange(len(self.symbols)) if tradable_row is None else np.flatnonzero(tradable_row)
        return cat3_inputs(self.depth_quality[bar, cols], self.fill_prob[bar, cols], self.age_s[bar, cols],
                           self.max_age_s)

    def describe_cat3(self) -> str:
        return (f"Cat3 from {self.source}: median depth quality / fill prob over the tradable assets with a book "
                f"<= {self.max_age_s:g} s old; no majority of them with one -> stale (0.5)")


class BookFlowProvider:
    """``FlowProvider`` over a ``BookGrid``: imbalance and fill_prob where the book is fresh, the neutral
    values (0, 0.5) where it is stale or missing."""

    def __init__(self, grid: BookGrid):
        self.grid = grid

    def features(self, open_time, symbols):
        from dolphin.engine.inputs import FlowFeatures

        g = self.grid
        if list(symbols) != list(g.symbols) or not np.array_equal(np.asarray(open_time), g.open_time):
            raise ValueError("BookFlowProvider: the book grid was built for other bars or symbols "
                             f"({len(g.symbols)} symbols x {len(g.open_time)} bars, asked "
                             f"{len(symbols)} x {len(open_time)})")
        fresh = g.fresh
        imb = np.where(fresh, np.nan_to_num(g.imbalance), 0.0)
        fp = np.where(fresh, np.nan_to_num(g.fill_prob, nan=0.5), 0.5)
        return FlowFeatures(np.ascontiguousarray(imb), np.ascontiguousarray(fp), False, g.source)


@dataclass
class BookHistory:
    path: str
    series: dict  # symbol -> FeatureSeries
    files: dict  # symbol -> [file names]
    params: F.BookParams
    synthetic: str | None  # first line of SYNTHETIC.md, if the set is synthetic
    cache_hit: bool = False

    @property
    def source(self) -> str:
        kind = f"SYNTHETIC book history ({self.synthetic})" if self.synthetic else "real book history (Binance bookDepth)"
        return f"{kind} from {self.path}, band +-{self.params.band_pct:g} %"

    def span(self) -> tuple | None:
        ts = [s.ts for s in self.series.values() if len(s)]
        if not ts:
            return None
        return int(min(t[0] for t in ts)), int(max(t[-1] for t in ts))

    def on_grid(self, symbols, open_time, close_time, *, max_age_s: float = MAX_AGE_S) -> BookGrid:
        """Features as of each bar close: the last snapshot with timestamp <= close (no look-ahead)."""
        if not max_age_s > 0:
            raise ValueError(f"max_age_s must be > 0, got {max_age_s}")
        close_time = np.asarray(close_time, np.int64)
        T, N = close_time.size, len(symbols)
        arrs = {k: np.full((T, N), np.nan) for k in FEATURES}
        age = np.full((T, N), np.inf)
        for j, s in enumerate(symbols):
            fs = self.series.get(s)
            if fs is None or not len(fs):
                continue
            idx = np.searchsorted(fs.ts, close_time, side="right") - 1
            ok = idx >= 0
            for k in FEATURES:
                arrs[k][ok, j] = getattr(fs, k)[idx[ok]]
            age[ok, j] = (close_time[ok] - fs.ts[idx[ok]]) / 1000.0
        return BookGrid(list(symbols), np.asarray(open_time, np.int64), close_time, arrs["imbalance"],
                        arrs["depth_quality"], arrs["fill_prob"], arrs["agreement"], age, float(max_age_s),
                        self.source)

    def problems(self) -> list:
        out = []
        for s, fs in self.series.items():
            if fs.skipped:
                out.append(f"{s}: {fs.skipped} snapshot(s) skipped, e.g. " + "; ".join(fs.skipped_examples))
            if fs.duplicates:
                out.append(f"{s}: {fs.duplicates} repeated (timestamp, percentage) row(s), later one kept")
        return out


def _synthetic_label(path: Path) -> str | None:
    for d in [path] + list(path.parents) if path.is_dir() else [path.parent] + list(path.parent.parents):
        m = d / SYNTHETIC_MARKER
        if m.is_file():
            first = m.read_text().strip().splitlines()
            return first[0].lstrip("# ").strip() if first else "synthetic"
    return None


def _code_hash() -> str:
    h = hashlib.sha256()
    for f in (Path(F.__file__), Path(__file__)):
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def load_book_history(path, symbols, start_ms: int | None = None, end_ms: int | None = None, *,
                      params: F.BookParams = F.DEFAULT_PARAMS, warmup_ms: int = DAY_MS,
                      cache_dir=None) -> BookHistory:
    """Read the bookDepth files under ``path`` for ``symbols`` and compute their feature series over
    ``[start_ms - warmup_ms, end_ms]`` (the warm-up gives the EWMA references history before the window).
    DataError if ``path`` holds no bookDepth file for any of ``symbols`` in that span."""
    path = Path(path).expanduser()
    first_day = None if start_ms is None else str(np.datetime64((start_ms - warmup_ms) // DAY_MS * DAY_MS, "ms"))[:10]
    last_day = None if end_ms is None else str(np.datetime64(end_ms // DAY_MS * DAY_MS, "ms"))[:10]
    files = find_bookdepth_files(path, symbols, first_day, last_day)
    if not files:
        raise DataError(f"{path}: no bookDepth file (<SYMBOL>-bookDepth-YYYY-MM-DD.zip) for "
                        f"{', '.join(list(symbols)[:5])}{' ...' if len(symbols) > 5 else ''} "
                        f"between {first_day or 'the start'} and {last_day or 'the end'}")
    synthetic = _synthetic_label(path)
    lo = None if start_ms is None else start_ms - warmup_ms
    desc = {"code": _code_hash(), "params": params.__dict__, "lo": lo, "hi": end_ms,
            "files": {s: [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in fs] for s, fs in files.items()}}
    key = hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:24]
    if cache_dir is None:
        from dolphin.paths import data_home

        cache_dir = data_home() / "cache" / "book"
    cache = Path(cache_dir) / f"{key}.parquet"
    names = {s: [f.name for f in fs] for s, fs in files.items()}
    label = str(path)
    series = _read_cache(cache, files)
    if series is not None:
        return BookHistory(label, series, names, params, synthetic, cache_hit=True)
    series = {}
    for sym, fs in files.items():
        rows = combine([read_bookdepth_file(f) for f in fs])
        if lo is not None or end_ms is not None:
            m = np.ones(len(rows), bool)
            if lo is not None:
                m &= rows.ts >= lo
            if end_ms is not None:
                m &= rows.ts <= end_ms
            rows = type(rows)(rows.symbol, rows.ts[m], rows.percentage[m], rows.depth[m], rows.notional[m],
                              rows.files, rows.duplicates)
        series[sym] = features_from_rows(rows, params)
    _write_cache(cache, series)
    return BookHistory(label, series, names, params, synthetic)


def _read_cache(cache: Path, files: dict) -> dict | None:
    if not cache.exists():
        return None
    try:
        t = pq.read_table(cache)
        meta = json.loads(t.schema.metadata[b"dolphin_book"])
        sym = t.column("symbol").to_numpy(zero_copy_only=False)
        cols = {k: t.column(k).to_numpy() for k in ("ts", *FEATURES)}
        out = {}
        for s in files:
            m = sym == s
            info = meta.get(s, {})
            out[s] = FeatureSeries(s, cols["ts"][m].astype(np.int64), *(cols[k][m] for k in FEATURES),
                                   skipped=int(info.get("skipped", 0)),
                                   skipped_examples=list(info.get("examples", [])),
                                   duplicates=int(info.get("duplicates", 0)))
        return out
    except (OSError, pa.ArrowInvalid, KeyError, ValueError, TypeError):
        log.warning("%s: unreadable book cache entry; recomputing", cache)
        return None


def _write_cache(cache: Path, series: dict) -> None:
    syms = [s for s in series for _ in range(len(series[s]))]
    cols = {"symbol": pa.array(syms, pa.string()),
            "ts": pa.array(np.concatenate([series[s].ts for s in series]) if series else [], pa.int64())}
    for k in FEATURES:
        cols[k] = pa.array(np.concatenate([getattr(series[s], k) for s in series]) if series else [], pa.float64())
    meta = {s: {"skipped": fs.skipped, "examples": fs.skipped_examples, "duplicates": fs.duplicates}
            for s, fs in series.items()}
    table = pa.table(cols).replace_schema_metadata({b"dolphin_book": json.dumps(meta).encode()})
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f"{cache.name}.tmp{os.getpid()}")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, cache)
    finally:
        tmp.unlink(missing_ok=True)


def book_for_panel(path, panel, *, params: F.BookParams = F.DEFAULT_PARAMS, max_age_s: float = MAX_AGE_S,
                   cache_dir=None) -> tuple[BookGrid, list]:
    """The book grid for ``panel`` and the notes that say where it came from and what it covers.

    DataError when the files cover none of the simulated bars; partial coverage is reported (per symbol) and
    its stale bars get the neutral flow and Cat3 0.5."""
    lo = panel.warmup_bars
    start_ms, end_ms = int(panel.open_time[lo]), int(panel.close_time[-1])
    hist = load_book_history(path, panel.symbols, start_ms, end_ms, params=params, cache_dir=cache_dir)
    grid = hist.on_grid(panel.symbols, panel.open_time, panel.close_time, max_age_s=max_age_s)
    tradable = ~(panel.filled | panel.excluded)
    cov = grid.coverage(lo, panel.n_bars, tradable)
    total = float(np.mean(list(cov.values()))) if cov else 0.0
    if total == 0.0:
        span = hist.span()
        have = "no usable snapshot" if span is None else f"snapshots {fmt_ms(span[0])} .. {fmt_ms(span[1])} UTC"
        raise DataError(f"{path}: the order-book history does not cover the backtest window "
                        f"{fmt_ms(start_ms)} .. {fmt_ms(end_ms)} UTC ({have}; no bar has a book <= "
                        f"{max_age_s:g} s old)")
    notes = [f"order-book/flow: {hist.source}"
             f"{' (features cached)' if hist.cache_hit else ''}; features as of each bar close from the last "
             f"snapshot at or before it; a book older than {max_age_s:g} s is stale (neutral flow, Cat3 0.5)"]
    missing = [s for s in panel.symbols if s not in hist.files]
    partial = {s: c for s, c in cov.items() if c < 1.0}
    if partial:
        worst = sorted(partial.items(), key=lambda kv: kv[1])[:8]
        notes.append(f"order-book coverage PARTIAL: {total * 100:.1f} % of tradable asset-bars have a fresh book; "
                     f"{len(partial)} of {len(cov)} symbols below 100 % ("
                     + ", ".join(f"{s} {c * 100:.1f} %" for s, c in worst) + (" ..." if len(partial) > 8 else "")
                     + "); missing bars are stale: neutral flow, Cat3 0.5"
                     + (f"; no file at all for {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}"
                        if missing else ""))
    else:
        notes.append(f"order-book coverage: 100 % of tradable asset-bars of the window have a fresh book")
    fr = grid.fresh[lo:] & tradable[lo:]
    if fr.any():
        notes.append("order-book features over fresh bars: "
                     + ", ".join(f"{k} mean {np.mean(getattr(grid, k)[lo:][fr]):.3f}" for k in FEATURES)
                     + " (agreement and depth_quality are not used by the engine's ranking)")
    notes.extend("order-book data: " + p for p in hist.problems()[:10])
    return grid, notes


# ---------------------------------------------------------------- synthetic sets (labelled)

SYNTH_RULE = (
    "one snapshot per bar, stamped at the bar's close; mid = bar close; thin-side base depth "
    "D = 2 x mean quote volume (close x volume) of the last 12 bars / (1 + (r / 0.5 %)^2) with r = close/open - 1; "
    "imbalance i = 0.5 x tanh(r / 0.5 %); cumulative notional at k % (k = 1..5) = k x D x (1 + i) on the bid side, "
    "k x D x (1 - i) on the ask side; depth (base units) = notional / (close x (1 -+ k/200))")


def synthesize_from_panel(panel, out_dir, *, lo: int = 0) -> int:
    """Write a SYNTHETIC bookDepth set in Binance's file format from candles (rule: ``SYNTH_RULE``), one zip per
    symbol and UTC day, plus ``SYNTHETIC.md`` stating the rule. Only bars' own data (known at their close) go
    into each snapshot. Returns the number of files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / SYNTHETIC_MARKER).write_text(
        "SYNTHETIC bookDepth built from candles, not market data\n\n"
        f"Rule: {SYNTH_RULE}.\n\nCandles: {getattr(panel, 'source', '') or 'see the command that built it'}; "
        f"{len(panel.symbols)} symbols, {fmt_ms(int(panel.close_time[lo]))} .. {fmt_ms(int(panel.close_time[-1]))} UTC.\n")
    close, opn, vol = panel.close[lo:], panel.open[lo:], panel.volume[lo:]
    ct = np.asarray(panel.close_time[lo:], np.int64)
    qv = close * vol
    csum = np.cumsum(np.vstack([np.zeros((1, qv.shape[1])), qv]), axis=0)
    w = 12
    idx = np.arange(1, len(ct) + 1)
    mean_qv = (csum[idx] - csum[np.maximum(idx - w, 0)]) / np.minimum(idx, w)[:, None]
    r = close / opn - 1.0
    base = 2.0 * mean_qv / (1.0 + (r / 0.005) ** 2)
    imb = 0.5 * np.tanh(r / 0.005)
    ks = np.array([-5, -4, -3, -2, -1, 1, 2, 3, 4, 5], float)
    day = ct // DAY_MS
    # a bar closing exactly at midnight belongs to the next day's file (its timestamp's day)
    n = 0
    for j, sym in enumerate(panel.symbols):
        for d in np.unique(day):
            m = np.flatnonzero(day == d)
            k = np.abs(ks)[None, :]
            side = np.where(ks < 0, 1.0 + imb[m, j][:, None], 1.0 - imb[m, j][:, None])
            notional = k * base[m, j][:, None] * side
            px = close[m, j][:, None] * np.where(ks < 0, 1.0 - k / 200.0, 1.0 + k / 200.0)
            depth = notional / px
            ts = np.repeat(ct[m], ks.size)
            name = f"{sym}-bookDepth-{str(np.datetime64(int(d) * DAY_MS, 'ms'))[:10]}.zip"
            write_bookdepth_zip(out / sym / name, ts, np.tile(ks, m.size), depth.ravel(), notional.ravel(),
                                compresslevel=1)
            n += 1
    return n


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m dolphin.book.history",
                                 description="order-book history tools (synthetic sets for ablations)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("synth", help="write a SYNTHETIC bookDepth set from a candle set (labelled as such)")
    s.add_argument("--data", default="spot-5m-2024")
    s.add_argument("--out", required=True)
    s.add_argument("--start", default=None)
    s.add_argument("--end", default=None)
    a = ap.parse_args(argv)
    from dolphin.data import load_panel
    from dolphin.paths import resolve_kline_set
    from dolphin.scanner.writer import time_bounds

    start, end = time_bounds(a.start, a.end)
    panel = load_panel(resolve_kline_set(a.data), start_ms=start, end_ms=end)
    n = synthesize_from_panel(panel, a.out)
    print(f"{n} SYNTHETIC bookDepth files under {a.out} (rule in {Path(a.out) / SYNTHETIC_MARKER})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

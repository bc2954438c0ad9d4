"""Load → align → scan (cached) → engine → metrics, shared by `dolphin backtest`, Dagster and bench."""

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import dolphin.scanner.core as scanner_core
import dolphin.scanner.kernels as scanner_kernels
from dolphin.data import load_panel
from dolphin.engine.backtest import BacktestResult, run_backtest
from dolphin.engine.calibrate import split_index
from dolphin.engine.config import EngineConfig
from dolphin.engine.funding import find_funding_dir
from dolphin.metrics import compute_metrics, daily_table, evaluate_floors
from dolphin.paths import data_home, resolve_kline_set
from dolphin.scanner.core import WARMUP_BARS, scan
from dolphin.scanner.writer import from_table, to_table


def _code_fingerprint() -> str:
    """Scanner source hash: cached scans are invalid as soon as the scanner code changes."""
    h = hashlib.sha256()
    for mod in (scanner_core, scanner_kernels):
        h.update(Path(mod.__file__).read_bytes())
    return h.hexdigest()[:16]


def _inputs_key(path: Path, panel) -> str:
    files = sorted(p for p in (path.iterdir() if path.is_dir() else [path]) if p.is_file())
    desc = {
        "code": _code_fingerprint(),
        "files": [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files],
        "symbols": list(panel.symbols), "bar_ms": panel.bar_ms,
        "first": int(panel.open_time[0]), "last": int(panel.open_time[-1]), "n": panel.n_bars,
        "filled": hashlib.sha256(np.packbits(panel.filled).tobytes()).hexdigest()[:16],
    }
    return hashlib.sha256(json.dumps(desc).encode()).hexdigest()[:24]


def scans_cached(path: Path, panel, *, cache_dir: Path | None = None, progress=False):
    """Scan every bar of ``panel`` or reuse the cached scans of identical inputs. Returns (scans, hit)."""
    cache_dir = Path(cache_dir or data_home() / "cache" / "scans")
    f = cache_dir / f"{_inputs_key(path, panel)}.arrow"
    if f.exists():
        try:
            with pa.memory_map(str(f)) as src:
                scans = from_table(pa.ipc.open_file(src).read_all())
            if len(scans) == panel.n_bars and np.array_equal(scans.open_time, panel.open_time):
                return scans, True
        except (pa.ArrowInvalid, OSError, KeyError, ValueError):
            pass  # unreadable cache entry: rescan and overwrite
    scans = scan(panel, int(panel.open_time[0]), None, progress=progress)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = f.with_suffix(f".tmp{os.getpid()}")
    table = to_table(scans)
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
        w.write_table(table)
    os.replace(tmp, f)
    return scans, False


@dataclass
class BacktestRun:
    data: str
    result: BacktestResult
    split_ms: int | None  # first out-of-sample bar open (None: no split)
    periods: dict  # name -> dict(metrics=Metrics, daily=DataFrame, floors=FloorReport, trades=DataFrame)
    scan_cache_hit: bool
    funding_dir: Path | None
    panel: object
    risk_run: object = None  # dolphin.engine.risklayer.RiskBacktestResult when a risk layer ran
    flow_source: str = "neutral (no order-book data)"  # what fed the flow port (and Cat3): book history or neutral
    book: object = None  # dolphin.book.history.BookGrid when --book was given
    arbiter: object = None  # dolphin.engine.arbiter.ArbiterWeights when both GREEN legs trade


def _period(res: BacktestResult, lo: int, hi: int, initial: float):
    """Metrics of bars [lo, hi): trades by entry bar, equity rebased to the period's starting equity."""
    tr = res.trades[(res.trades.entry_bar >= lo) & (res.trades.entry_bar < hi)]
    start_eq = float(res.equity[lo - 1]) if lo > 0 else initial
    ts, eq = res.ts[lo:hi], res.equity[lo:hi]
    m = compute_metrics(tr, ts, eq, start_eq, bar_ms=res.bar_ms)
    daily = daily_table(tr, ts, eq, start_eq)
    # the drawdown floor on the per-bar equity, the series the max-drawdown metric uses
    return {"metrics": m, "daily": daily, "floors": evaluate_floors(daily, tr, bars=(ts, eq)), "trades": tr,
            "start_equity": start_eq, "bars": (lo, hi)}


def flat_cut(res: BacktestResult, cut: int) -> int:
    """The first UTC-midnight bar at or after ``cut`` where the book is flat (no position held at the previous
    close), so that no trade straddles the split: every trade, with all its PnL, lies in the period it was
    opened in, and no day belongs to both periods. ``cut`` itself when no such midnight exists."""
    day = (np.asarray(res.open_time, np.int64)) // 86_400_000
    starts = np.flatnonzero(np.r_[False, day[1:] != day[:-1]])
    for c in starts[starts >= cut]:
        if res.position_asset[c - 1] < 0:
            return int(c)
    return int(cut)


def run(data: str, cfg: EngineConfig, *, start_ms=None, end_ms=None, split: float | None = 0.6,
        progress=False, cache_dir=None, risk=None, risk_layer="none", exf=None, book=None,
        book_cache_dir=None, rules=None) -> BacktestRun:
    """``risk_layer``: 'none' (``risk`` or the neutral defaults), 'acb', 'full' or a ``RiskLayers``; the risk
    layer reads ExF from ``exf`` (default ``ExfHistory.load()``). ``book``: a folder / file of Binance
    ``bookDepth`` files (``dolphin.book.history``): its features feed the engine's flow port and, with the
    survival stack, Cat3; None = no order-book data (neutral flow, Cat3 0.5: the behaviour without it)."""
    path = resolve_kline_set(data)
    warm = WARMUP_BARS + cfg.vol_lookback + cfg.vol_window if start_ms is not None else 0
    panel = load_panel(path, start_ms=start_ms, end_ms=end_ms, warmup_bars=warm, rules=rules)
    scans, hit = scans_cached(path, panel, cache_dir=cache_dir, progress=progress)
    funding_dir = find_funding_dir(path) if path.is_dir() else None
    trade_from = int(panel.close_time[panel.warmup_bars]) if panel.warmup_bars else None
    grid, flow, book_notes = None, None, []
    arb, leg_w = None, None
    if cfg.arbitrated:  # GREEN with both legs: the capital arbiter splits each day's capital between them
        from dolphin.engine.arbiter import arbiter_weights
        from dolphin.exf.history import ExfHistory

        arb = arbiter_weights(panel, scans.vel_div / panel.n_assets, cfg, exf if exf is not None else ExfHistory.load())
        leg_w = arb.per_bar(panel.close_time)
    if book is not None:
        from dolphin.book.history import BookFlowProvider, book_for_panel

        grid, book_notes = book_for_panel(book, panel, cache_dir=book_cache_dir)
        flow = BookFlowProvider(grid)
    risk_run = None
    if not isinstance(risk_layer, str) or risk_layer != "none":
        from dolphin.engine.risklayer import RiskLayers, run_risk_backtest
        from dolphin.exf.history import ExfHistory

        if risk is not None:
            raise ValueError("run(): give either risk (fixed inputs) or risk_layer, not both")
        layers = RiskLayers.preset(risk_layer) if isinstance(risk_layer, str) else risk_layer
        risk_run = run_risk_backtest(panel, scans, cfg, layers=layers, exf=exf if exf is not None else ExfHistory.load(),
                                     funding_dir=funding_dir, trade_from_ms=trade_from, book=grid,
                                     leg_weights=leg_w)
        res = risk_run.result
    else:
        res = run_backtest(panel, scans, cfg, funding_dir=funding_dir, trade_from_ms=trade_from, risk=risk, flow=flow,
                           leg_weights=leg_w)
    if arb is not None:
        res.notes.extend(arb.notes)
    if book_notes:  # replaces the engine's one-line "order-book/flow: <source>" with source, rule, coverage
        at = next((i for i, n in enumerate(res.notes) if n.startswith("order-book/flow:")), 0)
        res.notes[at:at + 1] = book_notes
    lo = panel.warmup_bars
    periods = {}
    split_ms = None
    if split:
        nominal = lo + split_index(panel.open_time[lo:], split)
        cut = flat_cut(res, nominal)
        split_ms = int(panel.open_time[cut])
        if cut != nominal:
            from dolphin.timeutil import fmt_ms

            res.notes.append(f"split moved from {fmt_ms(int(panel.open_time[nominal]))} to {fmt_ms(split_ms)} UTC: "
                             f"the first midnight with a flat book, so no trade straddles the two periods")
        periods["In-sample"] = _period(res, lo, cut, cfg.initial_capital)
        periods["Out-of-sample"] = _period(res, cut, panel.n_bars, cfg.initial_capital)
    periods["All"] = _period(res, lo, panel.n_bars, cfg.initial_capital)
    flow_source = grid.source if grid is not None else "neutral (no order-book data)"
    return BacktestRun(data, res, split_ms, periods, hit, funding_dir, panel, risk_run, flow_source, grid, arb)

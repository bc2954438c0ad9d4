"""Memory-bounded backtest: load, align, scan and run the engine block by block (UTC days).

The batch path (``dolphin.engine.pipeline.run``) holds the whole (T, N) panel and all (T, K, N) scans:
memory grows with the length of the data. This module gives the SAME results (bit-identical equity,
decisions, trades, final state: ``tests/unit/dolphin/engine/test_streaming.py``) while carrying only what each stage needs
from one block to the next, so peak memory grows with N^2 and the windows, not with T:

- load + align: a planning pass reads ONE symbol file at a time and runs ``dolphin.data.align``'s own
  per-asset cleaning (rules 1-5) and window choice (rules 6-7) on it, keeping only first/last bar and
  first open per asset; then each block's rows are read (Parquet row-group pruning), cleaned by the same
  functions and gridded by ``align._build_panel`` (rules 8-9), seeded by the last real bar of the block
  before (carried), so forward fills and day exclusions are those of the batch panel;
- scan: one ``dolphin.scanner.core._Engine`` (ring of max(W)+1 returns, window sums, eigenpairs) carried
  across blocks, day-anchored exactly as ``scanner.core._run`` does (seed at each UTC day, then the
  incremental numba kernel);
- vol regime: the last ``vol_window + vol_lookback`` market returns (``regime.vol_regime`` on tail+block);
- engine: ``kernel.run_kernel`` on [history rows + block rows] with the kernel's own state vector carried
  (entry bar shifted to the block's coordinates); history = ``rank_lookback`` bars of prices and the last
  ``vel_div`` (what the kernel reads before the current bar).

Outputs kept for the whole run are per-bar scalars (equity, decision, asset, leverage, vel_div: ~40 bytes
a bar) and the trades: results, not working state. ``on_block(panel_block, scans_block)`` lets a caller
write each day's scans (or compare them) without keeping them.
"""

import importlib
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dolphin.data.contracts import Candles, DataError, DataIssue
from dolphin.data.loader import _probe_bar_ms, skipped_files_issue
from dolphin.data.readers import CandleSet, candle_symbols, read_candles
from dolphin.engine.backtest import _trades_frame, check_leg_weights
from dolphin.engine.config import EngineConfig
from dolphin.engine.funding import find_funding_dir, read_funding_rates
from dolphin.engine.inputs import FlowProvider, NeutralFlowProvider, RiskInputs
from dolphin.engine.kernel import S_EBAR, S_INPOS, pack_params, run_kernel
from dolphin.engine.regime import market_returns, rolling_past_percentile, rolling_std
from dolphin.engine.state import EngineState, StateError
from dolphin.paths import resolve_kline_set
from dolphin.scanner import kernels as scan_kernels
from dolphin.scanner.blas import single_threaded
from dolphin.scanner.core import WARMUP_BARS, WINDOWS, ScanResult, _alloc, _blank_row, _check_windows, _Engine
from dolphin.timeutil import DAY_MS, fmt_ms

# the module (``dolphin.data.align`` the name is shadowed by the function that dolphin.data re-exports)
A = importlib.import_module("dolphin.data.align")

# ------------------------------------------------------------------------------------------------
# load + align


@dataclass
class StreamPlan:
    """What the planning pass decided (the batch ``align`` window, members, warm-up start) and where each
    member's cleaned rows were spilled."""

    path: Path
    bar_ms: int
    offset: int
    symbols: list  # kept, sorted (the batch panel's columns)
    ws: int  # first bar open of the panel (warm-up included)
    we: int  # last bar open
    start: int  # first bar open of the requested window (ws + warmup_bars * bar)
    spill: Path  # <symbol>.t.bin (int64 bar opens) and <symbol>.v.bin ((n, 5) float64 o/h/l/c/volume) per member
    jumps: dict  # symbol -> bar opens of persistent price jumps (rule 5c)
    sources: dict
    issues: list

    @property
    def n_bars(self) -> int:
        return int((self.we - self.ws) // self.bar_ms + 1)

    @property
    def warmup_bars(self) -> int:
        return int((self.start - self.ws) // self.bar_ms)


class _Stub:
    """What ``align._Window`` reads of a series: first/last bar, symbol, source."""

    def __init__(self, symbol, first, last, source):
        self.symbol = symbol
        self.t = np.array([first, last], dtype=np.int64)
        self.src = Candles(symbol, self.t[:0], *(np.empty(0) for _ in range(5)), source=source)


def _clean(s, bar: int, offset: int, rules, now_ms: int, issues: list, cap: int) -> None:
    """Rules 4-5d on one asset's sorted series: the same calls, in the same order, as ``align.align``."""
    A._drop_bad_times(s, rules.earliest_ms, now_ms + bar, issues, cap)
    A._drop_off_grid(s, bar, offset, issues, cap)
    A._drop_bad_prices(s, issues, cap)
    A._drop_inconsistent_ohlc(s, issues, cap)
    A._drop_duplicates(s, issues, cap)
    A._drop_bad_ticks(s, rules.max_bar_ratio, issues, cap)
    A._adjust_jumps(s, rules.max_bar_ratio, issues, cap)
    A._drop_stray_rows(s, bar, rules, issues, cap)


def plan_stream(set_or_path, spill_dir, *, start_ms=None, end_ms=None, warmup_bars: int = 0, symbols=None,
                rules=None, timeframe: str | None = None) -> StreamPlan:
    """The batch loader's decisions (``load_panel`` with the same arguments), one symbol file at a time.

    Every row rule that looks along an asset's whole history (bad ticks, persistent jumps that rescale
    earlier prices, stray rows) runs on that asset's full series here, exactly as in ``align``; the cleaned
    rows go to ``spill_dir`` so the blocks read them back by bar range. Peak memory: one asset's series."""
    rules = rules or A.AlignRules()
    path = resolve_kline_set(str(set_or_path))
    cap = rules.max_reported_timestamps
    if start_ms is not None and end_ms is not None and start_ms > end_ms:
        raise DataError(f"align: start {fmt_ms(start_ms)} is after end {fmt_ms(end_ms)}")
    pad = DAY_MS  # as dolphin.data.loader.read_for_window
    if start_ms is not None and warmup_bars > 0:
        bar = rules.bar_ms or _probe_bar_ms(path, symbols, start_ms, end_ms, timeframe)
        pad = max(pad, (warmup_bars + 1) * bar)
    read_lo = None if start_ms is None else int(start_ms) - pad
    names = candle_symbols(path, symbols=symbols, timeframe=timeframe)
    if not names:
        raise DataError(f"{path}: no candle files")
    issues: list = []
    skipped: list = []

    def read_one(sym):
        cs = read_candles(path, symbols=[sym], start_ms=read_lo, end_ms=end_ms, timeframe=timeframe)
        skipped.extend(x for x in cs.skipped if x not in skipped)
        return cs.get(sym)

    # rule 2 needs every asset's interval before any asset is cleaned: a first, cheap pass
    if rules.bar_ms is None:
        intervals = {}
        for sym in names:
            c = read_one(sym)
            if c is not None:
                intervals[sym] = A.infer_bar_ms(A._distinct_sorted(c.open_time))
        distinct = sorted({v for v in intervals.values() if v is not None})
        if not distinct:
            raise DataError("align: cannot infer the bar interval (every asset has fewer than 2 bars); "
                            "pass AlignRules(bar_ms=...)")
        if len(distinct) > 1:
            raise DataError(f"align: mixed bar intervals ({distinct} ms); pass AlignRules(bar_ms=...) / --bar-ms "
                            "to keep one interval")
        bar = distinct[0]
    else:
        bar = int(rules.bar_ms)
    offset = rules.offset_for(bar)
    now_ms = int(time.time() * 1000) if rules.now_ms is None else int(rules.now_ms)
    spill = Path(spill_dir)
    spill.mkdir(parents=True, exist_ok=True)
    stubs, jumps, sources = [], {}, {}
    for sym in names:
        c = read_one(sym)
        if c is None:
            continue
        s = A._sorted_series(sym, c, issues, cap)
        iv = A.infer_bar_ms(s.t)
        if iv is not None and iv != bar:
            issues.append(DataIssue("mixed_interval", sym, int(s.t.shape[0]), A._ts(s.t[:1], cap),
                                    f"dropped: its bars are {iv} ms apart, the panel uses {bar} ms", c.source))
            continue
        _clean(s, bar, offset, rules, now_ms, issues, cap)
        if s.t.shape[0] == 0:
            issues.append(DataIssue("no_data", sym, 0, (), "dropped: no valid bar", c.source))
            continue
        np.ascontiguousarray(s.t, dtype=np.int64).tofile(spill / f"{sym}.t.bin")
        np.ascontiguousarray(np.stack(s.v, axis=1), dtype=np.float64).tofile(spill / f"{sym}.v.bin")
        stubs.append(_Stub(sym, int(s.t[0]), int(s.t[-1]), c.source))
        jumps[sym], sources[sym] = list(s.jumps), c.source
        del s, c
    if not stubs:
        raise DataError("align: no asset has a valid bar" + A._window_text(start_ms, end_ms))
    win = A._Window(stubs, bar, offset, rules, start_ms, end_ms, issues, cap)
    members = [s for s, k in zip(stubs, win.kept) if k]
    ws = win.extend_warmup(members, warmup_bars)
    if skipped:
        cs = CandleSet(path=str(path))
        cs.skipped.extend(skipped)
        issues.insert(0, skipped_files_issue(cs))
    syms = [s.symbol for s in members]
    return StreamPlan(path, bar, offset, syms, int(ws), int(win.end), int(win.start), spill,
                      {k: jumps[k] for k in syms}, {k: sources[k] for k in syms}, issues)


def _block_bounds(plan: StreamPlan, block_days: int):
    """[(first bar open, last bar open)] covering ws..we, cut at UTC day boundaries every block_days days."""
    out = []
    a = plan.ws
    while a <= plan.we:
        day_end = (a // DAY_MS + block_days) * DAY_MS  # exclusive
        b = min(plan.we, plan.offset + ((day_end - 1 - plan.offset) // plan.bar_ms) * plan.bar_ms)
        out.append((a, b))
        a = b + plan.bar_ms
    return out


class StreamLoader:
    """Yields the batch panel's rows block by block (each block a ``Panel`` of whole UTC days).

    Rules 8-9 run per block through ``align._build_panel`` on the spilled series (its forward-fill seed is
    the real bar before the block, as in the batch panel; days are whole, so day exclusion is the same);
    rule 10's trailing window is completed with the previous block's last filled flags."""

    def __init__(self, plan: StreamPlan, rules=None, block_days: int = 1):
        if block_days < 1:
            raise ValueError("block_days must be >= 1")
        self.plan, self.rules, self.block_days = plan, rules or A.AlignRules(), int(block_days)
        self.issues: dict = {}  # (rule, symbol) -> merged DataIssue of rules 8-10
        self.cursor: dict = {}  # symbol -> spill row of the next block's first row

    def _merge(self, new: list) -> None:
        cap = self.rules.max_reported_timestamps
        for i in new:
            k = (i.rule, i.symbol)
            old = self.issues.get(k)
            if old is None:
                self.issues[k] = i
            else:
                ts = (old.timestamps + i.timestamps)[:cap]
                self.issues[k] = DataIssue(i.rule, i.symbol, old.count + i.count, ts, old.action, old.source)

    def _series(self, sym: str, bs: int, be: int):
        """The spilled rows [real bar before bs (the fill seed) or the first row, .., last row <= be].

        Rows are unique and on the grid, so a block holds at most (be - bs) / bar + 1 of them: each block
        reads only its own slice of the spill (a cursor per asset), never the asset's whole history."""
        p = self.plan
        tf = p.spill / f"{sym}.t.bin"
        pos = self.cursor.get(sym)
        if pos is None:  # first block: locate the start once
            t_all = np.fromfile(tf, dtype=np.int64)
            pos = int(np.searchsorted(t_all, bs, side="left"))
            del t_all
        n_rows = tf.stat().st_size // 8
        lo = max(pos - 1, 0)  # the real bar before the block seeds the forward fill; row 0 the back fill
        hi = min(n_rows, pos + int((be - bs) // p.bar_ms) + 1)
        t = np.fromfile(tf, dtype=np.int64, count=hi - lo, offset=8 * lo)
        b = lo + int(np.searchsorted(t, be, side="right"))
        t = t[:b - lo].copy()
        v = np.fromfile(p.spill / f"{sym}.v.bin", dtype=np.float64, count=5 * (b - lo), offset=40 * lo).reshape(-1, 5)
        self.cursor[sym] = b
        src = Candles(sym, t[:0], *(np.empty(0) for _ in range(5)), source=p.sources[sym])
        return A._Series(sym, src, t, [np.ascontiguousarray(v[:, k]) for k in range(5)], None,
                         [j for j in p.jumps[sym] if bs <= j <= be])

    def blocks(self):
        p, r = self.plan, self.rules
        W = int(r.signal_window_bars)
        hist = np.zeros((0, len(p.symbols)), bool)  # filled flags of the previous W-1 bars
        for bs, be in _block_bounds(p, self.block_days):
            members = [self._series(sym, bs, be) for sym in p.symbols]
            block_issues: list = []
            panel = A._build_panel(members, p.bar_ms, bs, be, bs, r, block_issues)
            del members
            if hist.shape[0] and (panel.filled.any() or hist.any()):
                # rule 10 again on [previous W-1 bars, block]: the block alone undercounts the filled bars
                # of its first W-1 rows' trailing windows; the union is the batch panel's exclusion
                h = hist.shape[0]
                f = np.concatenate([hist, panel.filled])
                ex = np.zeros_like(f)
                ot = np.concatenate([panel.open_time[0] - p.bar_ms * np.arange(h, 0, -1), panel.open_time])
                A._exclude_outages(ot, f, ex, p.symbols, r, [])
                new = ex[h:] & ~panel.excluded
                if new.any():
                    panel.excluded |= new
                    rows = np.flatnonzero(new.any(axis=1))
                    block_issues.append(DataIssue(
                        "outage_window", "*", int(new.sum()), A._ts(panel.open_time[rows], r.max_reported_timestamps),
                        f"excluded from trading: the {W}-bar signal window reaching into the previous block holds "
                        f"more than {100 * r.max_filled_window_share:g}% filled bars"))
            self._merge(block_issues)
            hist = np.concatenate([hist, panel.filled])[-(W - 1):] if W > 1 else hist[:0]
            yield panel

    def all_issues(self) -> list:
        return list(self.plan.issues) + list(self.issues.values())


# ------------------------------------------------------------------------------------------------
# scan


class StreamScanner:
    """The batch scanner's day-anchored segments, fed block by block (bit-identical rows)."""

    def __init__(self, symbols, bar_ms: int, windows=WINDOWS):
        self.symbols, self.bar_ms = list(symbols), int(bar_ms)
        self.windows = _check_windows(windows)
        self.eng = _Engine(len(self.symbols), self.windows)
        self.prev_close = None  # (N,) close of the last bar seen
        self.rows = 0

    def scan_block(self, open_time: np.ndarray, close: np.ndarray) -> ScanResult:
        T, N = close.shape
        K = len(self.windows)
        if not (np.isfinite(close).all() and (close > 0).all()):
            raise DataError("scan: panel closes must be finite positive prices")
        out = _alloc(T, K, N)
        ext = np.empty((T + 1, N))
        ext[1:] = close
        ext[0] = close[0] if self.prev_close is None else self.prev_close
        rets = np.empty_like(ext)
        scan_kernels.log_returns(ext, rets)  # rets[i + 1] = r of block row i
        day = open_time // DAY_MS
        cuts = np.flatnonzero(np.diff(day)) + 1
        with single_threaded():
            for a0, b in zip([0, *cuts.tolist()], [*cuts.tolist(), T]):
                a = a0
                if self.rows + a == 0:  # the panel's first bar has no return
                    _blank_row(out, 0)
                    a += 1
                self.eng.seed()
                if b > a:
                    self.eng.advance(rets[a + 1:b + 1], out, a)
        self.prev_close = close[-1].copy()
        self.rows += T
        return ScanResult(symbols=self.symbols, bar_ms=self.bar_ms, windows=self.windows,
                          open_time=np.asarray(open_time, np.int64), close=close, **out)


# ------------------------------------------------------------------------------------------------
# engine


@dataclass
class StreamResult:
    """The per-bar outputs and trades of ``BacktestResult`` (no panel, no scans, no per-asset arrays)."""

    config: EngineConfig
    symbols: list
    bar_ms: int
    open_time: np.ndarray
    equity: np.ndarray
    trades: pd.DataFrame
    decision: np.ndarray
    decision_asset: np.ndarray
    decision_leverage: np.ndarray
    position_asset: np.ndarray
    vel_div: np.ndarray
    regime_ok: np.ndarray
    final_state: EngineState
    first_bar: int
    issues: list
    notes: list = field(default_factory=list)
    blocks: int = 0

    @property
    def ts(self) -> np.ndarray:
        return self.open_time + self.bar_ms

    @property
    def final_capital(self) -> float:
        return float(self.equity[-1]) if len(self.equity) else self.final_state.capital


class _Grow:
    """Append-only per-bar output (amortised doubling; no per-block list of arrays)."""

    def __init__(self, dtype, fill):
        self.a = np.full(1024, fill, dtype)
        self.n, self.fill = 0, fill

    def extend(self, x):
        need = self.n + len(x)
        if need > self.a.shape[0]:
            b = np.full(max(need, 2 * self.a.shape[0]), self.fill, self.a.dtype)
            b[:self.n] = self.a[:self.n]
            self.a = b
        self.a[self.n:need] = x
        self.n = need

    def get(self):
        return self.a[:self.n].copy()


def run_stream(data, cfg: EngineConfig, *, start_ms=None, end_ms=None, symbols=None, block_days: int = 1,
               rules: A.AlignRules | None = None, flow: FlowProvider | None = None, risk_for=None,
               funding_dir="auto", state: EngineState | None = None, acb_adverse_exit: bool = False,
               acb_drop: float = 0.2, on_block=None, timeframe: str | None = None, leg_weights_for=None,
               spill_dir=None) -> StreamResult:
    """``pipeline.run(data, cfg, start_ms=..., end_ms=...)``'s engine result, streamed (risk layer 'none').

    ``risk_for(open_time, close_time) -> RiskInputs`` gives a block's risk inputs (default: the neutral
    defaults, as the batch path without a risk layer); ``flow`` must be a pure function of the bar times
    (as ``NeutralFlowProvider`` and the book history are); ``leg_weights_for(open_time) -> (T, 2)`` the arbiter's
    leg weights (default 1.0, BLUE). ``funding_dir``: 'auto' = as the batch pipeline. The planning pass spills
    each member's cleaned rows under ``spill_dir`` (default: the system temp dir); removed at the end."""
    rules = rules or A.AlignRules()
    warm = WARMUP_BARS + cfg.vol_lookback + cfg.vol_window if start_ms is not None else 0
    spill_root = tempfile.mkdtemp(prefix="dolphin-stream-", dir=spill_dir)
    try:
        plan = plan_stream(data, spill_root, start_ms=start_ms, end_ms=end_ms, warmup_bars=warm, symbols=symbols,
                           rules=rules, timeframe=timeframe)
        return _run_plan(plan, cfg, rules=rules, block_days=block_days, flow=flow, risk_for=risk_for,
                         leg_weights_for=leg_weights_for, funding_dir=funding_dir, state=state,
                         acb_adverse_exit=acb_adverse_exit, acb_drop=acb_drop, on_block=on_block,
                         trade_from_start=start_ms is not None)
    finally:
        shutil.rmtree(spill_root, ignore_errors=True)


def _run_plan(plan, cfg, *, rules, block_days, flow, risk_for, leg_weights_for, funding_dir, state,
              acb_adverse_exit, acb_drop, on_block, trade_from_start) -> StreamResult:
    if funding_dir == "auto":
        funding_dir = find_funding_dir(plan.path) if plan.path.is_dir() else None
    syms, bar, N = plan.symbols, plan.bar_ms, len(plan.symbols)
    loader = StreamLoader(plan, rules, block_days)
    scanner = StreamScanner(syms, bar)
    flow = flow or NeutralFlowProvider()
    params = pack_params(cfg, acb_adverse_exit, acb_drop)
    wk = scanner.windows.index(int(cfg.rank_window))
    H = max(int(cfg.rank_lookback), 1)
    L = int(cfg.vol_window) + int(cfg.vol_lookback)
    open0 = plan.ws
    first_bar = plan.warmup_bars if trade_from_start and plan.warmup_bars else 0
    trade_from_close = open0 + first_bar * bar + bar
    st = state or EngineState.fresh(cfg.initial_capital)
    if st.as_of_ms is not None and st.as_of_ms > trade_from_close - bar:
        raise StateError(f"state is as of {st.as_of_ms} ms but the run starts at bar close {trade_from_close} ms: "
                         "runs must follow each other in order")
    vec = st.to_vector(syms, open0, bar)  # bar indices relative to the panel's row 0 (global)
    notes = [f"order-book/flow: {getattr(flow, 'source', type(flow).__name__)}"]
    funding = _Funding(funding_dir, syms, bar) if funding_dir is not None and cfg.charge_funding else None
    if funding is not None:
        notes.append(f"funding charged from {funding_dir} for {len(funding.covered)} symbols")
    else:
        notes.append("funding: no funding data for this set (spot candles): not charged")
    # carried between blocks
    h_open = h_high = h_low = h_close = np.empty((0, N))
    h_vd = np.empty(0)
    m_tail = np.empty(0)  # market returns of the last L bars
    last_close = None
    g = 0  # global row of the block's first bar
    out = {k: _Grow(d, f) for k, d, f in (("equity", np.float64, np.nan), ("decision", np.int64, 0),
                                           ("dec_asset", np.int64, -1), ("dec_lev", np.float64, 0.0),
                                           ("pos", np.int64, -1), ("vd", np.float64, np.nan),
                                           ("ok", np.bool_, False), ("ot", np.int64, 0))}
    trades: list = []
    blocks = list(_block_bounds(plan, block_days))
    n_blocks = len(blocks)
    for bi, panel in enumerate(loader.blocks()):
        T = panel.n_bars
        scans = scanner.scan_block(panel.open_time, panel.close)
        if on_block is not None:
            on_block(panel, scans)
        vd = scans.vel_div / N
        # vol regime over [tail, block]; the close before the block gives the block's first market return
        if last_close is None:
            m_blk = market_returns(panel.close)
        else:
            m_blk = market_returns(np.concatenate([last_close[None, :], panel.close]))[1:]
        m_all = np.concatenate([m_tail, m_blk])
        ok = _regime_ok(m_all, cfg)[len(m_tail):]
        m_tail = m_all[-L:]
        last_close = panel.close[-1].copy()
        # kernel chunk: H history rows (prices, vel_div) + the block
        h = h_close.shape[0]
        C = h + T
        lo_g = g - h  # global row of chunk row 0
        fb = max(h, first_bar - lo_g)
        is_last = bi == n_blocks - 1
        equity = np.full(T, vec[0])
        decision = np.zeros(T, np.int64)
        dec_asset = np.full(T, -1, np.int64)
        dec_lev = np.zeros(T)
        pos = np.full(T, -1, np.int64)
        if fb < C:
            tradable = np.zeros((C, N), bool)
            tradable[h:] = ~(panel.filled | panel.excluded)
            loadings = np.zeros((C, N))
            loadings[h:] = scans.loadings[:, wk, :]
            vol_ok = np.zeros(C, bool)
            vol_ok[h:] = ok
            risk = risk_for(panel.open_time, panel.close_time) if risk_for else RiskInputs.defaults(T)
            risk.check(T)
            rk = {}
            for name, fillv in (("posture", 0), ("mc_status", 0), ("acb_boost", 1.0), ("rm", 1.0)):
                a = getattr(risk, name)
                x = np.full(C, fillv, a.dtype)
                x[h:] = a
                rk[name] = x
            fl = np.zeros((C, N))
            fl[h:] = flow.features(panel.open_time, syms).imbalance
            fund = np.zeros((C, N))
            if funding is not None:
                fund[h:] = funding.grid(panel.open_time)
            lw = np.ones((C, 2))
            if leg_weights_for is not None:
                lw[h:] = check_leg_weights(leg_weights_for(panel.open_time), T)
            cat = lambda hist, blk: np.ascontiguousarray(np.concatenate([hist, blk]))  # noqa: E731
            kv = vec.copy()
            if kv[S_INPOS] > 0:
                kv[S_EBAR] -= lo_g
            res = run_kernel(params, cat(h_open, panel.open), cat(h_high, panel.high), cat(h_low, panel.low),
                             cat(h_close, panel.close), tradable, cat(h_vd, vd), loadings, vol_ok, rk["posture"],
                             rk["mc_status"], rk["acb_boost"], rk["rm"], fl, fund, fb, kv, is_last, lw)
            n = int(res[0])
            if n:
                cols = [np.asarray(x[:n]).copy() for x in res[1:17]]
                cols[0] = cols[0] + lo_g  # entry bar -> global
                cols[1] = cols[1] + lo_g  # exit bar -> global
                trades.append(cols)
            eq, pa_, dc, da, dl, vec = res[17:]
            if vec[S_INPOS] > 0:
                vec[S_EBAR] += lo_g
            equity, pos, decision, dec_asset, dec_lev = eq[h:], pa_[h:], dc[h:], da[h:], dl[h:]
        for k, x in (("equity", equity), ("decision", decision), ("dec_asset", dec_asset), ("dec_lev", dec_lev),
                     ("pos", pos), ("vd", vd), ("ok", ok), ("ot", panel.open_time)):
            out[k].extend(x)
        keep = min(H, C)
        h_open, h_high, h_low, h_close = (cat_tail(hx, px, keep) for hx, px in (
            (h_open, panel.open), (h_high, panel.high), (h_low, panel.low), (h_close, panel.close)))
        h_vd = cat_tail(h_vd, vd, keep)
        g += T
        del panel, scans
    open_time = out["ot"].get()
    if trades:
        cols = [np.concatenate([t[i] for t in trades]) for i in range(16)]
        tframe = _trades_frame((len(cols[0]), *cols), syms, open_time, bar)
    else:
        tframe = _trades_frame((0, *(np.empty(0, np.int64) for _ in range(16))), syms, open_time, bar)
    last_close_ms = int(open_time[-1]) + bar if len(open_time) else None
    final = EngineState.from_vector(vec, syms, open0, bar, last_close_ms)
    return StreamResult(cfg, syms, bar, open_time, out["equity"].get(), tframe, out["decision"].get(),
                        out["dec_asset"].get(), out["dec_lev"].get(), out["pos"].get(), out["vd"].get(),
                        out["ok"].get(), final, first_bar, loader.all_issues(), notes, n_blocks)


class _Funding:
    """``funding.funding_grid`` block by block from rates read once (3 a day per asset: tiny beside the bars).

    Same reading, checks and mapping as the batch function (a funding time between grid points is charged
    at the bar containing it); ``tests/unit/dolphin/engine/test_streaming.py`` compares the two on the real perpetual set."""

    def __init__(self, funding_dir, symbols, bar_ms):
        self.bar = int(bar_ms)
        self.n = len(symbols)
        self.rates = []  # (column, funding times ms, rates)
        for j, sym in enumerate(symbols):
            got = read_funding_rates(funding_dir, sym)
            if got is not None:
                self.rates.append((j, *got))
        self.covered = [symbols[j] for j, _, _ in self.rates]

    def grid(self, open_time: np.ndarray) -> np.ndarray:
        T = len(open_time)
        out = np.zeros((T, self.n))
        if T == 0:
            return out
        t0 = int(open_time[0])
        for j, ft, fr in self.rates:
            idx = (ft - t0) // self.bar
            ok = (idx >= 0) & (idx < T)
            np.add.at(out[:, j], idx[ok].astype(np.int64), fr[ok])
        return out


def cat_tail(hist: np.ndarray, blk: np.ndarray, keep: int) -> np.ndarray:
    """The last ``keep`` rows of [hist, blk] (a copy: the block itself is not retained)."""
    if keep <= 0:
        return hist[:0].copy()
    if blk.shape[0] >= keep:
        return blk[-keep:].copy()
    return np.concatenate([hist, blk])[-keep:].copy()


def _regime_ok(m: np.ndarray, cfg: EngineConfig) -> np.ndarray:
    """``regime.vol_regime``'s ok flag from market returns (the tail carries the history it needs)."""
    vol = rolling_std(np.ascontiguousarray(m), int(cfg.vol_window))
    thr = rolling_past_percentile(vol, int(cfg.vol_lookback), float(cfg.vol_percentile))
    return np.isfinite(vol) & np.isfinite(thr) & (vol > thr)


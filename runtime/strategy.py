"""``DolphinStrategy``: the BLUE/GREEN alpha engine as a NautilusTrader strategy.

Per bar close (all N instruments' bars of one timestamp assembled) it does what one step of
``dolphin.engine.kernel.run_kernel`` does, but lets Nautilus (a simulated venue in replay, Binance
live) do the fills:

1. scan: ``dolphin.scanner.LiveScanner`` pushes the N closes and returns this bar's eigenvalue scan.
   The scanner runs INSIDE the strategy, not behind a ``scan_latest`` feature-store feed, because
   (a) it is bit-identical to the batch scanner (same kernels, same UTC-day anchoring), so replay,
   backtest and live see the same numbers; (b) a decision never waits on, or silently uses a stale,
   external scan (no clock skew, no missing-event handling between two processes); (c) it costs
   ~40 µs per bar at N = 50. The alternative, consuming ``scan_latest`` events published by the
   Dagster scanner asset, is what a 400-asset multi-machine deployment would do; it would replace
   the ``LiveScanner.push`` call in ``_on_bar_close`` and nothing else.
2. vol regime: the same numba functions as ``dolphin.engine.regime`` (``market_returns``,
   ``rolling_std``, ``_interp_pct``) applied to rolling buffers, so ``vol_ok`` is bit-identical to
   the batch ``vol_regime`` of the same history (causal: the percentile is over strictly past bars).
3. risk: posture, Rm, ACB boost and MC status from the ``RiskSource`` port (runtime.risk), read at
   every bar close, i.e. before every entry or exit order.
4. decision: the SAME njit functions as the backtest (``decide_exit``, ``entry_allowed``,
   ``signal_side``, ``signal_leverage``, ``rank_asset``) with ``pack_params(cfg)``.
5. orders: APEX → market entry; STALKER → limit entry at the signal bar's close (leverage ≤ 2x via
   ``signal_leverage``), cancelled if not filled within the next bar (the kernel's rule); TURTLE → no
   new entries; HIBERNATE → close everything, no entries. When an entry fills, a reduce-only LIMIT
   take-profit rests at entry ± 95 bps; max-hold, posture and HIBERNATE exits cancel it and close
   with a reduce-only MARKET order.

Capital and the trade list are kept here from the fill events (the strategy's ledger view; the
durable ledger is dolphin/ledger, and Nautilus's own account is NOT the source of truth: the sandbox
client resets it on restart). Quantities are fixed at submission as notional / signal-bar close,
because Binance USDT-M orders take a base quantity (no quote-quantity orders).

Funding: Binance charges it on a live account. In replay Nautilus does not, so an optional
``FundingSchedule`` (recorded rates on the bar grid, the kernel's own mapping) is charged here by the
kernel's rule: at the bar whose open contains a funding time, on a position entered in an earlier
bar, ``side * rate * qty * open``.
"""

import math
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from nautilus_trader.config import StrategyConfig
from nautilus_trader.model.enums import LiquiditySide, OrderSide, TimeInForce
from nautilus_trader.trading.strategy import Strategy

from dolphin.engine import kernel as K
from dolphin.engine.config import BLUE, STALKER, EngineConfig
from dolphin.engine.regime import _interp_pct, market_returns, rolling_std, vol_regime
from dolphin.scanner import LiveScanner
from runtime.instruments import bar_type, instrument_id, to_float
from runtime.risk import DefaultRiskSource, RiskSource

NS_PER_MS = 1_000_000
_REASON_NAMES = K.EXIT_REASONS  # code -> name, shared with the backtest's trade list


class DolphinStrategyConfig(StrategyConfig, frozen=True):
    """``engine``: ``EngineConfig.to_dict()`` (None = BLUE). ``end_of_data_ms``: replay only, the
    last bar's close: there, like ``run_backtest(close_at_end=True)``, the position is closed at
    market instead of acting on the decision. ``bar_timeout_ms``: live only, how long after a bar's
    close an incomplete set of bars is processed anyway (missing closes forward-filled, those
    instruments not tradable for that bar)."""

    symbols: tuple[str, ...]
    bar_ms: int = 300_000
    engine: dict | None = None
    end_of_data_ms: int | None = None
    bar_timeout_ms: int | None = None
    keep_log: bool = True
    acb_adverse_exit: bool = False  # exit when the ACB boost fell by more than acb_drop since entry
    acb_drop: float = 0.2


class FundingSchedule:
    """Funding rates on the bar grid: ``rates[row, i]`` applies to the bar opening at ``open_ms[row]``
    (``dolphin.engine.funding.funding_grid`` output)."""

    def __init__(self, open_ms: np.ndarray, rates: np.ndarray):
        self._row = {int(t): k for k, t in enumerate(np.asarray(open_ms, dtype=np.int64))}
        self._rates = np.asarray(rates, dtype=np.float64)

    def rate(self, i: int, bar_open_ms: int) -> float:
        k = self._row.get(int(bar_open_ms))
        return 0.0 if k is None else float(self._rates[k, i])


@dataclass
class _Trade:
    asset: int
    side: int
    entry_bar: int  # index = bar close ms // bar_ms of the bar the entry filled in
    entry_fill_ns: int
    qty: float
    entry_px: float
    target_notional: float
    leverage: float
    fees: float
    capital_before: float
    signal: float
    posture: int
    boost: float
    maker_entry: bool
    entry_fee: float = 0.0
    entry_liquidity: str = ""
    funding: float = 0.0
    realised: float = 0.0  # gross PnL of the closed quantity
    closed_qty: float = 0.0
    exit_notional: float = 0.0  # sum of exit qty * px (for the average exit price)
    exit_fill_ns: int = 0
    exit_reason: int = 0
    tp_price: float = float("nan")


@dataclass
class _Pending:
    """The entry order decided at the last bar close (kernel: the pending order)."""

    order: object
    asset: int
    side: int
    target_notional: float
    leverage: float
    signal: float
    posture: int
    boost: float
    limit: bool
    capital_before: float
    filled_qty: float = 0.0
    filled_notional: float = 0.0
    fees: float = 0.0
    first_fill_ns: int = 0
    taker: bool = False  # any part filled as taker (a limit marketable on arrival, or a market order)


@dataclass
class RuntimeLog:
    """What the strategy saw and did, for parity tests, audits and the latency bench."""

    close_ms: list = field(default_factory=list)  # every processed bar close
    vel_div: list = field(default_factory=list)  # vel_div / N at that close
    vol_ok: list = field(default_factory=list)
    decisions: list = field(default_factory=list)  # (close_ms, decision code, asset, leverage)
    bar_to_order_ns: deque = field(default_factory=lambda: deque(maxlen=200_000))
    bar_to_decision_ns: deque = field(default_factory=lambda: deque(maxlen=200_000))
    incomplete_bars: int = 0


class DolphinStrategy(Strategy):
    scan_files = None  # runtime.scan_files.ScanFileWriter: each scan -> an Arrow file (set by runtime.nodes)

    def __init__(self, config: DolphinStrategyConfig, *, risk_source: RiskSource | None = None,
                 history=None, funding: FundingSchedule | None = None, tradable=None,
                 capital: float | None = None, journal=None):
        """``history``: a ``dolphin.data.Panel`` of the bars just before the first live bar, same
        symbols in the same order (warms the scanner, the regime and the ranking lookback).
        ``tradable``: optional ``close_ms -> (N,) bool`` (replay passes the panel's
        ~(filled | excluded)); without it an instrument is tradable when its real bar arrived.
        ``capital``: starting capital of this session (the ledger's closing capital; default the
        config's ``initial_capital``).
        ``journal``: optional sink with ``record(kind, event_id, ts_ns, symbol, side, role, qty, price, fee,
        amount, liquidity, capital_after)`` (``runtime.ledger.LedgerSink``): called after every fill and
        funding charge has been applied, before the strategy acts on it further."""
        super().__init__(config)
        self.cfg = EngineConfig.from_dict(dict(config.engine)) if config.engine else BLUE
        self.p = K.pack_params(self.cfg, config.acb_adverse_exit, config.acb_drop)
        self.symbols = list(config.symbols)
        self.N = len(self.symbols)
        self.bar_ms = int(config.bar_ms)
        self.ids = [instrument_id(s) for s in self.symbols]
        self.bar_types = [bar_type(s, self.bar_ms) for s in self.symbols]
        self._index = {iid: i for i, iid in enumerate(self.ids)}
        self.risk_source = risk_source or DefaultRiskSource()
        if hasattr(self.risk_source, "bind"):
            self.risk_source.bind(self)  # e.g. the survival stack's Cat5 reads this strategy's capital
        self.funding = funding
        self._tradable_fn = tradable
        self.capital = float(self.cfg.initial_capital if capital is None else capital)
        self.journal = journal
        self.trades: list = []
        self.log_data = RuntimeLog()
        self._keep = bool(config.keep_log)
        self._end_ms = config.end_of_data_ms
        self._timeout_ms = config.bar_timeout_ms
        self._instr = [None] * self.N
        self._rank_w = self.cfg.rank_window
        self._stopped_signalling = False

        # bar assembly for the current timestamp
        N = self.N
        self._cur_ms = None
        self._got = np.zeros(N, np.bool_)
        self._n_got = 0
        self._open = [None] * N  # Price objects: converted only where needed (funding)
        self._close = np.zeros(N)
        self._last_close = np.full(N, np.nan)
        self._last_arrival = 0

        self._reset_market_state()
        self._last_close_ms = None

        # orders and position
        self._pending: _Pending | None = None
        self._trade: _Trade | None = None
        self._tp_order = None
        self._exit_order = None
        self._exit_reason = 0
        self._closing_bar = None  # TP filled inside this bar: finalise at its close (funding first)
        self._roles = {}  # client_order_id -> "entry" | "tp" | "exit"

        self._precompile()
        if history is not None:
            self._warm_up(history)

    def _precompile(self) -> None:
        """Load the njit decision functions now (from numba's cache, or compile them) with the exact
        argument types used per bar, so the first signal of a session does not pay for it."""
        p, lb = self.p, self._rk_close.shape[0]
        K.signal_side(p, np.nan, np.nan)
        K.signal_leverage(p, -1, 0.0, 0, 1.0, 1.0)
        K.entry_allowed(p, False, 0, 0)
        K.decide_exit(p, 1, 0, 0, 1.0, 0, 1.0)
        z = np.ones((lb, self.N))
        K.rank_asset(p, -1, lb - 1, z, np.zeros((lb, self.N), np.bool_), z, z)
        market_returns(np.ones((2, self.N)))
        rolling_std(np.zeros(self.cfg.vol_window), self.cfg.vol_window)
        _interp_pct(np.zeros(2), 2, 50.0)

    def _reset_market_state(self) -> None:
        """Cold scanner, regime and ranking buffers: no entries until they are warm again."""
        N = self.N
        self._scanner = LiveScanner(self.symbols, self.bar_ms)
        self._w_idx = self._scanner.windows.index(self._rank_w)
        self._vd_prev = np.nan
        self._m_ring = np.full(self.cfg.vol_window, np.nan)
        self._vol_hist = deque()
        self._vol_sorted = np.empty(self.cfg.vol_lookback + 1)  # insert before evict
        self._n_sorted = 0
        self._n_nonfinite = 0
        lb = self.cfg.rank_lookback + 1
        self._rk_close = np.full((lb, N), np.nan)
        self._rk_trad = np.zeros((lb, N), np.bool_)
        self._rk_load = np.full((lb, N), np.nan)
        self._rk_flow = np.zeros((lb, N))  # order-book flow: neutral until a live OB feed exists
        self._rk_rows = 0
        self._two = np.empty((2, N))
        self._last_close[:] = np.nan

    # ------------------------------------------------------------------ warm-up
    def _warm_up(self, hist) -> None:
        if list(hist.symbols) != self.symbols or int(hist.bar_ms) != self.bar_ms:
            raise ValueError("history must have the strategy's symbols (same order) and bar length")
        n = hist.n_bars
        if n == 0:
            return
        if n >= 2:
            self._scanner = LiveScanner.from_panel(hist, upto_ms=int(hist.open_time[-2]))
        row = self._scanner.push(int(hist.open_time[-1]), hist.close[-1])
        self._vd_prev = float(row.vel_div[0]) / self.N
        cfg = self.cfg
        reg = vol_regime(hist.close, cfg.vol_window, cfg.vol_lookback, cfg.vol_percentile)
        m = reg.market_return[-cfg.vol_window:]
        self._m_ring[-len(m):] = m
        for v in reg.realised_vol[-cfg.vol_lookback:]:
            self._push_vol(float(v))
        L = self._rk_close.shape[0]
        k = min(L, n)
        self._rk_close[L - k:] = hist.close[n - k:]
        self._rk_trad[L - k:] = ~(hist.filled[n - k:] | hist.excluded[n - k:])
        self._rk_rows = k
        self._last_close[:] = hist.close[-1]
        self._last_close_ms = int(hist.open_time[-1]) + self.bar_ms

    # ------------------------------------------------------------------ lifecycle
    def on_start(self) -> None:
        for i, iid in enumerate(self.ids):
            inst = self.cache.instrument(iid)
            if inst is None:
                self.log.error(f"instrument {iid} not in cache: cannot trade it")
            self._instr[i] = inst
            self.subscribe_bars(self.bar_types[i])

    def on_stop(self) -> None:
        if self._closing_bar is not None:
            self._finalise()

    # ------------------------------------------------------------------ bar assembly
    def on_bar(self, bar) -> None:
        arrival = time.perf_counter_ns()
        i = self._index.get(bar.bar_type.instrument_id)
        if i is None:
            return
        # Binance stamps klines at close - 1 ms, replay at the close: both map to the grid close
        close_ms = -(-int(bar.ts_event) // (NS_PER_MS * self.bar_ms)) * self.bar_ms
        if self._last_close_ms is not None and close_ms <= self._last_close_ms:
            self.log.warning(f"late bar {bar.bar_type} for {close_ms}: that bar close was already decided")
            return
        if self._cur_ms is not None and close_ms != self._cur_ms:
            self._complete(incomplete=True)  # a newer bar arrived: the old set will not complete
        if self._cur_ms is None:
            self._cur_ms = close_ms
            self._got[:] = False
            self._n_got = 0
            if self._timeout_ms:
                self.clock.set_time_alert_ns(f"bar-timeout-{close_ms}", (close_ms + self._timeout_ms) * NS_PER_MS,
                                             self._on_timeout)
        if not self._got[i]:
            self._got[i] = True
            self._n_got += 1
        self._open[i] = bar.open
        self._close[i] = to_float(bar.close)
        self._last_arrival = arrival
        if self._n_got == self.N:
            self._complete(incomplete=False)

    def _on_timeout(self, event) -> None:
        if self._cur_ms is not None and event.name == f"bar-timeout-{self._cur_ms}":
            self._last_arrival = time.perf_counter_ns()
            self._complete(incomplete=True)

    def _complete(self, incomplete: bool) -> None:
        close_ms = self._cur_ms
        self._cur_ms = None
        got = self._got.copy()
        if incomplete:
            missing = [self.symbols[i] for i in np.flatnonzero(~got)]
            self.log_data.incomplete_bars += 1
            self.log.warning(f"bar {close_ms}: no bar for {', '.join(missing[:10])}"
                             f"{' ...' if len(missing) > 10 else ''}: closes forward-filled, not tradable")
            if np.isnan(self._last_close[~got]).any():
                self.log.error(f"bar {close_ms}: an instrument never had a close: skipping this bar")
                return
            self._close[~got] = self._last_close[~got]
            for i in np.flatnonzero(~got):
                self._open[i] = float(self._last_close[i])
        if self._last_close_ms is not None and close_ms != self._last_close_ms + self.bar_ms:
            # the scanner and the regime need every grid bar: after a lost stretch they restart cold
            # (no entries until warm) rather than mix bars across the gap; open positions keep their
            # TP and their max-hold / posture exits
            self.log.error(f"bar close {close_ms} does not follow {self._last_close_ms}: gap in the bar feed, "
                           "scanner and regime restart cold")
            self._reset_market_state()
        tradable = got if self._tradable_fn is None else (got & self._tradable_fn(close_ms))
        self._on_bar_close(close_ms, tradable)

    # ------------------------------------------------------------------ the decision step
    def _on_bar_close(self, close_ms: int, tradable: np.ndarray) -> None:
        p = self.p
        t = close_ms // self.bar_ms
        open_ms = close_ms - self.bar_ms
        # the kernel's step 1 tail: a limit entry not filled within its bar is cancelled
        if self._pending is not None and self._pending.limit and self._pending.filled_qty == 0.0:
            self._cancel(self._pending.order)
            self._pending = None
        self._charge_funding(t, open_ms)
        if self._closing_bar is not None:
            self._finalise()

        # scan, regime, ranking buffers
        row = self._scanner.push(open_ms, self._close)
        if self.scan_files is not None: self.scan_files.write(row)  # noqa: E701 (queued, off the decision path)
        vd = float(row.vel_div[0]) / self.N
        loadings = row.loadings[0, self._w_idx]
        vol_ok = self._regime_step()
        self._rk_close[:-1] = self._rk_close[1:]
        self._rk_trad[:-1] = self._rk_trad[1:]
        self._rk_load[:-1] = self._rk_load[1:]
        self._rk_close[-1] = self._close
        self._rk_trad[-1] = tradable
        self._rk_load[-1] = loadings
        self._rk_rows = min(self._rk_rows + 1, self._rk_close.shape[0])
        self._last_close[:] = self._close
        self._last_close_ms = close_ms
        vd_prev, self._vd_prev = self._vd_prev, vd

        risk = self.risk_source.read(close_ms * NS_PER_MS)
        at_end = self._end_ms is not None and close_ms >= self._end_ms
        decision, asset, lev = K.D_NONE, -1, 0.0
        if self._trade is not None:
            tr = self._trade
            d = K.decide_exit(p, t, tr.entry_bar, tr.posture, tr.boost, risk.posture, risk.acb_boost)
            if d != K.D_NONE:
                decision, asset = d, tr.asset
                if not at_end and self._exit_order is None:
                    self._exit(K.DECISION_TO_REASON[d])
        elif self._pending is None and K.entry_allowed(p, vol_ok, risk.posture, risk.mc_status):
            # (a market entry still in flight at the next close happens live only: never double up)
            side = K.signal_side(p, vd_prev, vd)
            if side != 0:
                lev = K.signal_leverage(p, side, vd, risk.posture, risk.acb_boost, risk.rm)
                if lev >= p[K.P_MIN_ORDER_LEV]:
                    tt = self._rk_rows - 1
                    a = K.rank_asset(p, side, tt, self._rk_close[-self._rk_rows:], self._rk_trad[-self._rk_rows:],
                                     self._rk_load[-self._rk_rows:], self._rk_flow[-self._rk_rows:])
                    if a >= 0:
                        decision = K.D_ENTER_SHORT if side < 0 else K.D_ENTER_LONG
                        asset = a
                        if not at_end:
                            self._enter(a, side, lev, vd, risk, close_ms)
        if self._stopped_signalling != (risk.posture == K.HIBERNATE):
            self._stopped_signalling = risk.posture == K.HIBERNATE
            self.log.warning(f"{'HIBERNATE: no signals' if self._stopped_signalling else 'signalling resumed'}: "
                             f"{risk.describe()}")
        if at_end:
            self._flatten()
        if self._keep:
            lg = self.log_data
            lg.close_ms.append(close_ms)
            lg.vel_div.append(vd)
            lg.vol_ok.append(bool(vol_ok))
            if decision != K.D_NONE:
                lg.decisions.append((close_ms, int(decision), int(asset),
                                     float(lev) if decision in (K.D_ENTER_SHORT, K.D_ENTER_LONG) else 0.0))
            lg.bar_to_decision_ns.append(time.perf_counter_ns() - self._last_arrival)

    def _regime_step(self) -> bool:
        self._two[0] = self._last_close
        self._two[1] = self._close
        m = market_returns(self._two)[1] if not np.isnan(self._two[0]).any() else np.nan
        self._m_ring[:-1] = self._m_ring[1:]
        self._m_ring[-1] = m
        vol = rolling_std(self._m_ring, self.cfg.vol_window)[-1]
        L = self.cfg.vol_lookback
        if len(self._vol_hist) == L and self._n_nonfinite == 0:
            thr = _interp_pct(self._vol_sorted, L, float(self.cfg.vol_percentile))
        else:
            thr = np.nan
        self._push_vol(float(vol))
        return bool(np.isfinite(vol) and np.isfinite(thr) and vol > thr)

    def _push_vol(self, v: float) -> None:
        """Keep the last vol_lookback realised vols and the finite ones sorted (the batch percentile's
        window, as a multiset: same sorted values, so the same interpolated percentile bits)."""
        buf = self._vol_sorted
        self._vol_hist.append(v)
        if math.isfinite(v):
            n = self._n_sorted
            j = int(np.searchsorted(buf[:n], v))
            buf[j + 1:n + 1] = buf[j:n].copy()
            buf[j] = v
            self._n_sorted = n + 1
        else:
            self._n_nonfinite += 1
        if len(self._vol_hist) > self.cfg.vol_lookback:
            old = self._vol_hist.popleft()
            if math.isfinite(old):
                n = self._n_sorted
                k = int(np.searchsorted(buf[:n], old))
                buf[k:n - 1] = buf[k + 1:n].copy()
                self._n_sorted = n - 1
            else:
                self._n_nonfinite -= 1

    # ------------------------------------------------------------------ orders
    def _enter(self, a: int, side: int, lev: float, vd: float, risk, close_ms: int) -> None:
        inst = self._instr[a]
        if inst is None:
            return
        notional = self.capital * self.cfg.capital_fraction * lev  # isolated margin = fraction of capital
        px = float(self._close[a])
        qty = inst.make_qty(notional / px)
        if qty.as_double() <= 0.0:
            self.log.warning(f"{self.symbols[a]}: order size rounds to zero ({notional:.2f} USDT)")
            return
        o_side = OrderSide.SELL if side < 0 else OrderSide.BUY
        limit = risk.posture == STALKER
        if limit:
            lim = px * (1.0 - side * self.p[K.P_LIMIT_OFF])
            order = self.order_factory.limit(self.ids[a], o_side, qty, inst.make_price(lim),
                                             time_in_force=TimeInForce.GTC, tags=["ENTRY"])
        else:
            order = self.order_factory.market(self.ids[a], o_side, qty, tags=["ENTRY"])
        self._pending = _Pending(order, a, side, notional, lev, vd, risk.posture, risk.acb_boost, limit,
                                 self.capital)
        self._submit(order, "entry")

    def _exit(self, reason: int) -> None:
        tr = self._trade
        if self._tp_order is not None:
            self._cancel(self._tp_order)
            self._tp_order = None
        left = tr.qty - tr.closed_qty
        inst = self._instr[tr.asset]
        order = self.order_factory.market(self.ids[tr.asset], OrderSide.BUY if tr.side < 0 else OrderSide.SELL,
                                          inst.make_qty(left), reduce_only=True, tags=[_REASON_NAMES[reason].upper()])
        self._exit_order = order
        self._exit_reason = reason
        self._submit(order, "exit")

    def _flatten(self) -> None:
        """End of a replay (the backtest's close_at_end): cancel what rests, close at market."""
        if self._pending is not None and self._pending.filled_qty == 0.0:
            self._cancel(self._pending.order)
            self._pending = None
        if self._trade is not None and self._exit_order is None:
            self._exit(K.R_END)

    def _submit(self, order, role: str) -> None:
        self._roles[order.client_order_id] = role
        self.submit_order(order)
        if role != "tp" and self._keep:
            self.log_data.bar_to_order_ns.append(time.perf_counter_ns() - self._last_arrival)

    def _cancel(self, order) -> None:
        o = self.cache.order(order.client_order_id) or order
        if not o.is_closed:
            self.cancel_order(o)

    # ------------------------------------------------------------------ fills
    def on_order_filled(self, event) -> None:
        role = self._roles.get(event.client_order_id)
        if role is None:
            self.log.warning(f"fill for an order this strategy does not track: {event}")
            return
        self._apply_fill(event, role)
        if self.journal is not None:
            # the order's client id + the venue's trade id: reproduced by a deterministic re-run and by
            # an exchange re-delivering the fill (stable, so the journal can dedupe)
            self.journal.record("fill", f"{event.client_order_id}:{event.trade_id}", int(event.ts_event),
                                self.symbols[self._index[event.instrument_id]],
                                "BUY" if event.order_side == OrderSide.BUY else "SELL", role,
                                to_float(event.last_qty), to_float(event.last_px), event.commission.as_double(),
                                0.0, "TAKER" if event.liquidity_side == LiquiditySide.TAKER else "MAKER",
                                self.capital)

    def _apply_fill(self, event, role: str) -> None:
        qty = to_float(event.last_qty)
        px = to_float(event.last_px)
        fee = event.commission.as_double()
        self.capital -= fee
        if role == "entry":
            pe = self._pending
            if pe is None or pe.order.client_order_id != event.client_order_id:
                self.log.error(f"entry fill without a pending entry: {event}")
                return
            if pe.filled_qty == 0.0:
                pe.first_fill_ns = int(event.ts_event)
            pe.filled_qty += qty
            pe.filled_notional += qty * px
            pe.fees += fee
            pe.taker |= event.liquidity_side == LiquiditySide.TAKER
            order = self.cache.order(event.client_order_id)
            if order is not None and order.is_closed:
                self._open_trade(pe)
        else:
            tr = self._trade
            if tr is None:
                self.log.error(f"exit fill without an open trade: {event}")
                return
            gross = tr.side * qty * (px - tr.entry_px)
            self.capital += gross
            tr.realised += gross
            tr.fees += fee
            tr.closed_qty += qty
            tr.exit_notional += qty * px
            tr.exit_fill_ns = int(event.ts_event)
            if tr.closed_qty >= tr.qty * (1.0 - 1e-12):
                if role == "tp":
                    tr.exit_reason = K.R_TP
                    # a TP fills inside a bar: that bar's funding is due first (kernel order), and the
                    # bar's open is only known at its close
                    self._closing_bar = self._bar_of(event.ts_event)
                    self._tp_order = None
                else:
                    tr.exit_reason = self._exit_reason
                    self._finalise()

    def _open_trade(self, pe: _Pending) -> None:
        self._pending = None
        a, side = pe.asset, pe.side
        epx = pe.filled_notional / pe.filled_qty
        self._trade = _Trade(a, side, self._bar_of(pe.first_fill_ns), pe.first_fill_ns, pe.filled_qty, epx,
                             pe.target_notional, pe.leverage, pe.fees, pe.capital_before, pe.signal, pe.posture,
                             pe.boost, pe.limit, pe.fees, "TAKER" if pe.taker else "MAKER")
        inst = self._instr[a]
        tp = inst.make_price(epx * (1.0 + side * self.p[K.P_TP]))
        self._trade.tp_price = to_float(tp)
        order = self.order_factory.limit(self.ids[a], OrderSide.BUY if side < 0 else OrderSide.SELL,
                                         inst.make_qty(pe.filled_qty), tp, time_in_force=TimeInForce.GTC,
                                         reduce_only=True, tags=["TP"])
        self._tp_order = order
        self._submit(order, "tp")

    def _bar_of(self, ts_ns: int) -> int:
        """Index (close ms // bar_ms) of the bar a fill at ts_ns happened in: the bar closing at or
        after it (replay stamps a bar's intrabar prices at its close, the first trade after a close
        just after it)."""
        return -(-int(ts_ns) // (NS_PER_MS * self.bar_ms))

    def _charge_funding(self, t: int, open_ms: int) -> None:
        tr = self._trade
        if self.funding is None or tr is None or tr.entry_bar >= t:
            return
        if self._closing_bar is None and tr.exit_fill_ns:
            return  # closed by a market order at this bar's open: no funding for this bar
        if self._closing_bar is not None and self._closing_bar != t:
            return
        rate = self.funding.rate(tr.asset, open_ms)
        if rate != 0.0:
            op = self._open[tr.asset]
            f = tr.side * rate * tr.qty * (op if isinstance(op, float) else to_float(op))  # longs pay positive rates
            tr.funding += f
            self.capital -= f
            if self.journal is not None:
                self.journal.record("funding", f"funding:{self.symbols[tr.asset]}:{open_ms}", open_ms * NS_PER_MS,
                                    self.symbols[tr.asset], "BUY" if tr.side > 0 else "SELL", "funding", tr.qty,
                                    op if isinstance(op, float) else to_float(op), 0.0, f, "", self.capital)

    def _finalise(self) -> None:
        tr = self._trade
        self._trade = None
        self._closing_bar = None
        self._exit_order = None
        xpx = tr.exit_notional / tr.closed_qty
        xbar = self._bar_of(tr.exit_fill_ns)
        bar = self.bar_ms
        if tr.exit_reason == K.R_TP:
            exit_ms = xbar * bar  # intrabar: stamped at the bar's close, as the backtest does
        elif tr.exit_reason == K.R_END:
            exit_ms = self._last_close_ms  # the last close
        else:
            exit_ms = (xbar - 1) * bar  # market exit at the bar's open
        self.trades.append({
            "entry_time": (tr.entry_bar - 1) * bar,
            "exit_time": exit_ms,
            "asset": self.symbols[tr.asset],
            "side": tr.side,
            "notional": tr.qty * tr.entry_px,
            "leverage": tr.leverage,
            "entry_price": tr.entry_px,
            "exit_price": xpx,
            "fees": tr.fees,
            "funding": tr.funding,
            "pnl": tr.realised - tr.fees - tr.funding,
            "exit_reason": _REASON_NAMES[tr.exit_reason],
            "qty": tr.qty,
            "target_notional": tr.target_notional,
            "capital_before": tr.capital_before,
            "entry_signal": tr.signal,
            "entry_posture": tr.posture,
            "maker_entry": tr.maker_entry,  # entered with a limit order (STALKER), as the backtest's column
            "entry_fee": tr.entry_fee,
            "entry_liquidity": tr.entry_liquidity,
            "tp_price": tr.tp_price,
            "entry_fill_ns": tr.entry_fill_ns,
            "exit_fill_ns": tr.exit_fill_ns,
        })

    # ------------------------------------------------------------------ order lifecycle
    def on_order_canceled(self, event) -> None:
        self._order_gone(event, "canceled")

    def on_order_expired(self, event) -> None:
        self._order_gone(event, "expired")

    def on_order_rejected(self, event) -> None:
        self.log.warning(f"order rejected: {event.reason}")
        self._order_gone(event, "rejected")

    def on_order_denied(self, event) -> None:
        self.log.warning(f"order denied: {event.reason}")
        self._order_gone(event, "denied")

    def _order_gone(self, event, what: str) -> None:
        role = self._roles.get(event.client_order_id)
        cid = event.client_order_id
        if role == "entry" and self._pending is not None and self._pending.order.client_order_id == cid:
            if self._pending.filled_qty > 0.0:
                self._open_trade(self._pending)  # partially filled limit: keep what filled
            else:
                self._pending = None
        elif role == "exit" and self._exit_order is not None and self._exit_order.client_order_id == cid:
            self._exit_order = None  # the next bar close decides again
        elif role == "tp" and self._tp_order is not None and self._tp_order.client_order_id == cid:
            self._tp_order = None
            if what != "canceled":
                self.log.error(f"take-profit order {what}: position {self.symbols[self._trade.asset]} has no TP")

    # ------------------------------------------------------------------ results
    def trades_frame(self):
        import pandas as pd

        cols = ["entry_time", "exit_time", "asset", "side", "notional", "leverage", "entry_price", "exit_price",
                "fees", "funding", "pnl", "exit_reason"]
        return pd.DataFrame(self.trades, columns=cols + [c for c in (self.trades[0] if self.trades else {})
                                                         if c not in cols])

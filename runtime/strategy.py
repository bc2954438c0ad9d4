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
   the ``LiveScanner.push`` call in ``runtime.market.MarketState.step`` and nothing else.
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

Module layout (the seams): ``runtime.bars`` assembles the N bars of one close, ``runtime.market`` holds the
scanner / regime / ranking state (steps 1-2), ``runtime.accounting`` keeps capital, the pending entry, the
open trade, funding and the trade list from fill events. This module is the Nautilus glue: events in,
the decision (steps 3-4) and orders (step 5) out. Quantities are fixed at submission as notional /
signal-bar close, because Binance USDT-M orders take a base quantity (no quote-quantity orders).
"""

import time
from collections import deque
from dataclasses import dataclass, field

import msgspec
import numpy as np
from nautilus_trader.config import StrategyConfig
from nautilus_trader.model.enums import OrderSide, TimeInForce
from nautilus_trader.trading.strategy import Strategy

from dolphin.engine import kernel as K
from dolphin.engine.config import STALKER, ConfigError, EngineConfig, preset_and_overrides, preset_named, with_overrides
from dolphin.console.decisions import decision_log_for
from runtime.accounting import _REASON_NAMES, Accounts, FundingSchedule, _Pending, _Trade  # noqa: F401 (re-exported)
from runtime.bars import NS_PER_MS, BarSet, grid_close_ms
from runtime.instruments import bar_type, instrument_id, to_float
from runtime.market import MarketState
from runtime.risk import DefaultRiskSource, RiskSource

# exits that may wait one bar for a maker fill when the book is healthy (the seed's orderly exit); the rest
# (HIBERNATE, max hold, end of data) leave at market
_ORDERLY_EXITS = (K.R_POSTURE, K.R_ACB)

__all__ = ["DolphinStrategy", "DolphinStrategyConfig", "FundingSchedule", "RuntimeLog", "NS_PER_MS"]


class DolphinStrategyConfig(StrategyConfig, frozen=True):
    """The engine is ``preset`` (a ``dolphin.engine.config.PRESETS`` name: blue, green) plus ``overrides``, the
    ``EngineConfig`` fields that differ from it. Both are checked at construction by the engine's own config
    rules (``dolphin.engine.configcheck``, as for a config file): an unknown key is refused with the closest known
    key suggested, a wrong type or range names the key, and the values are stored typed (``"1e-9"`` -> 1e-09,
    ``36.0`` bars -> 36, a duration such as ``"12h"`` -> bars of ``bar_ms``). ``engine_config()`` is the
    resulting ``EngineConfig``; ``for_engine(cfg, ...)`` builds the config of an already loaded ``EngineConfig``
    (the runtime's path: ``load_config``, which also applies the LONG validation gate, then this).

    ``end_of_data_ms``: replay only, the last bar's close: there, like ``run_backtest(close_at_end=True)``, the
    position is closed at market instead of acting on the decision. ``bar_timeout_ms``: live only, how long after
    the first bar of a set arrived an incomplete set is processed anyway (missing closes forward-filled, those
    instruments not tradable for that bar); a newer bar's arrival also completes it."""

    symbols: tuple[str, ...]
    bar_ms: int = 300_000
    preset: str = "blue"
    overrides: dict[str, bool | int | float | str] = {}
    end_of_data_ms: int | None = None
    bar_timeout_ms: int | None = None
    keep_log: bool = True
    acb_adverse_exit: bool = False  # exit when the ACB boost fell by more than acb_drop since entry
    acb_drop: float = 0.2

    def __post_init__(self):
        cfg = self.engine_config()  # ConfigError naming the key
        # frozen: force_setattr is msgspec's way for __post_init__ to store the typed values
        msgspec.structs.force_setattr(self, "overrides", {k: getattr(cfg, k) for k in self.overrides})

    def engine_config(self) -> EngineConfig:
        if not isinstance(self.overrides, dict):
            raise ConfigError(f"DolphinStrategyConfig: overrides: must be a mapping of EngineConfig fields "
                              f"(got {self.overrides!r})")
        return with_overrides(preset_named(self.preset, "DolphinStrategyConfig"), self.overrides,
                              f"DolphinStrategyConfig overrides (preset {self.preset})", bar_ms=int(self.bar_ms))

    @classmethod
    def for_engine(cls, cfg: EngineConfig, **kw) -> "DolphinStrategyConfig":
        """The config running ``cfg``: the preset it differs least from plus the differing fields."""
        preset, overrides = preset_and_overrides(cfg)
        scfg = cls(preset=preset, overrides=overrides, **kw)
        if scfg.engine_config() != cfg:  # a field the checks coerce differently: refuse rather than run another config
            raise ConfigError(f"DolphinStrategyConfig: engine config {cfg.name} does not survive as preset {preset} "
                              f"+ overrides {overrides}")
        return scfg


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
    capital = property(lambda self: self.acct.capital)  # the strategy's ledger capital (read by risk sources)
    trades = property(lambda self: self.acct.trades)
    funding = property(lambda self: self.acct.funding)
    journal = property(lambda self: self.acct.journal)
    _scanner = property(lambda self: self.market.scanner)

    def __init__(self, config: DolphinStrategyConfig, *, risk_source: RiskSource | None = None,
                 history=None, funding: FundingSchedule | None = None, tradable=None,
                 capital: float | None = None, journal=None, adopt=None, gap_filler=None):
        """``history``: a ``dolphin.data.Panel`` of the bars just before the first live bar, same
        symbols in the same order (warms the scanner, the regime and the ranking lookback).
        ``tradable``: optional ``close_ms -> (N,) bool`` (replay passes the panel's
        ~(filled | excluded)); without it an instrument is tradable when its real bar arrived.
        ``capital``: starting capital of this session (the ledger's closing capital; default the
        config's ``initial_capital``).
        ``journal``: optional sink with ``record(kind, event_id, ts_ns, symbol, side, role, qty, price, fee,
        amount, liquidity, capital_after)`` (``runtime.ledger.LedgerSink``): called after every fill and
        funding charge has been applied, before the strategy acts on it further; with ``record_entry(order_id,
        symbol, ts_ns, context)`` also the decision behind each entry order, before it is sent.
        ``adopt``: a ``runtime.reconcile.Adopted`` position to continue after a restart (see that module).
        ``gap_filler``: optional ``(first_open_ms, last_open_ms) -> Panel`` of bars the feed skipped
        (``runtime.warmup.VenueGapFiller``): the market state steps through them instead of restarting cold."""
        super().__init__(config)
        self.cfg = config.engine_config()
        self.p = K.pack_params(self.cfg, config.acb_adverse_exit, config.acb_drop)
        self.symbols = list(config.symbols)
        self.N = len(self.symbols)
        self.bar_ms = int(config.bar_ms)
        self.ids = [instrument_id(s) for s in self.symbols]
        self.bar_types = [bar_type(s, self.bar_ms) for s in self.symbols]
        self._index = {iid: i for i, iid in enumerate(self.ids)}
        self.acct = Accounts(self.symbols, self.bar_ms, self.cfg.initial_capital if capital is None else capital,
                             asset_index=self._index, funding=funding, journal=journal,
                             log_error=lambda msg: self.log.error(msg))
        self.risk_source = risk_source or DefaultRiskSource()
        if hasattr(self.risk_source, "bind"):
            self.risk_source.bind(self)  # e.g. the survival stack's Cat5 reads this strategy's capital
        # each bar's decision and why no entry, for the console (only when the risk source publishes to a store)
        self.decision_log = decision_log_for(self)
        self._tradable_fn = tradable
        self.log_data = RuntimeLog()
        self._keep = bool(config.keep_log)
        self._end_ms = config.end_of_data_ms
        self._timeout_ms = config.bar_timeout_ms
        self._instr = [None] * self.N
        self._stopped_signalling = False
        self.bars = BarSet(self.N)
        self.market = MarketState(self.symbols, self.bar_ms, self.cfg, self.p)
        self._last_close_ms = None
        self._tp_order = self._exit_order = None
        self._maker_exit_at = None  # bar close at which a maker (orderly) exit was placed
        self._roles = {}  # client_order_id -> "entry" | "tp" | "exit" | "restore"
        self._adopt = adopt
        self._gap_filler = gap_filler
        self._restoring = None  # sandbox adoption: the position to re-create at the first bar close
        self.market.precompile()
        if history is not None:
            self._last_close_ms = self.market.warm_up(history)

    # ------------------------------------------------------------------ lifecycle and bars
    def on_start(self) -> None:
        for i, iid in enumerate(self.ids):
            inst = self.cache.instrument(iid)
            if inst is None:
                self.log.error(f"instrument {iid} not in cache: cannot trade it")
            self._instr[i] = inst
            self.subscribe_bars(self.bar_types[i])
        if self._adopt is not None:
            self._adopt_position(self._adopt)

    def on_stop(self) -> None:
        if self.acct.closing_bar is not None:
            self._finalise()

    def on_bar(self, bar) -> None:
        arrival = time.perf_counter_ns()
        i = self._index.get(bar.bar_type.instrument_id)
        if i is None:
            return
        close_ms = grid_close_ms(bar.ts_event, self.bar_ms)
        if self._last_close_ms is not None and close_ms <= self._last_close_ms:
            self.log.warning(f"late bar {bar.bar_type} for {close_ms}: that bar close was already decided")
            return
        bs = self.bars
        if bs.close_ms is not None and close_ms != bs.close_ms:
            self._complete(incomplete=True)  # a newer bar arrived: the old set will not complete
        if bs.close_ms is None:
            bs.start(close_ms)
            if self._timeout_ms:
                # armed from this set's first arrival, not from its close: a feed behind the clock (an
                # accelerated replay, a venue lagging after an outage) still assembles complete sets
                self.clock.set_time_alert_ns(f"bar-timeout-{close_ms}",
                                             self.clock.timestamp_ns() + self._timeout_ms * NS_PER_MS,
                                             self._on_timeout)
        if bs.add(i, bar.open, to_float(bar.close), arrival):
            self._complete(incomplete=False)

    def _on_timeout(self, event) -> None:
        if self.bars.close_ms is not None and event.name == f"bar-timeout-{self.bars.close_ms}":
            self.bars.last_arrival = time.perf_counter_ns()
            self._complete(incomplete=True)

    def _complete(self, incomplete: bool) -> None:
        close_ms, got = self.bars.take()
        if incomplete:
            missing = [self.symbols[i] for i in np.flatnonzero(~got)]
            self.log_data.incomplete_bars += 1
            self.log.warning(f"bar {close_ms}: no bar for {', '.join(missing[:10])}"
                             f"{' ...' if len(missing) > 10 else ''}: closes forward-filled, not tradable")
            if not self.bars.forward_fill(got, self.market.last_close):
                self.log.error(f"bar {close_ms}: an instrument never had a close: skipping this bar")
                return
        if (self._last_close_ms is not None and close_ms != self._last_close_ms + self.bar_ms
                and not self._backfill(close_ms)):
            # the scanner and the regime need every grid bar: after a lost stretch they restart cold
            # (no entries until warm) rather than mix bars across the gap; open positions keep their
            # TP and their max-hold / posture exits
            self.log.error(f"bar close {close_ms} does not follow {self._last_close_ms}: gap in the bar feed, "
                           "scanner and regime restart cold")
            self.market.reset()
        tradable = got if self._tradable_fn is None else (got & self._tradable_fn(close_ms))
        self._on_bar_close(close_ms, tradable)

    def _backfill(self, close_ms: int) -> bool:
        """Step the market state through the bars between the last decided close and ``close_ms`` (fetched by
        the gap filler); no decisions are made on them (they are past). False: no filler, or it failed."""
        if self._gap_filler is None:
            return False
        first, last = self._last_close_ms, close_ms - 2 * self.bar_ms  # the skipped bars' opens
        t0 = time.perf_counter()
        try:
            gap = self._gap_filler(first, last)
        except Exception as e:  # a failed backfill must not stop trading: the cold restart is the fallback
            self.log.error(f"backfill of bars {first} .. {last} (opens) failed: {e}")
            return False
        tradable = ~(gap.filled | gap.excluded)
        for r in range(gap.n_bars):
            self.market.step(int(gap.open_time[r]), gap.close[r], tradable[r], self.scan_files)
        self._last_close_ms = close_ms - self.bar_ms
        self.log.warning(f"gap in the bar feed: {gap.n_bars} bars (closes {first + self.bar_ms} .. "
                         f"{self._last_close_ms}) backfilled from the venue in {time.perf_counter() - t0:.2f} s; "
                         "scanner and regime continue")
        return True

    # ------------------------------------------------------------------ the decision step
    def _on_bar_close(self, close_ms: int, tradable: np.ndarray) -> None:
        p, ac = self.p, self.acct
        t = close_ms // self.bar_ms
        if self._restoring is not None and self._roles.get(getattr(self._restoring, "client_order_id", None)) is None:
            self._restore_position(self._restoring)
        open_ms = close_ms - self.bar_ms
        # the kernel's step 1 tail: a limit entry not filled within its bar is cancelled
        if ac.pending is not None and ac.pending.limit and ac.pending.filled_qty == 0.0:
            self._cancel(ac.pending.order)
            ac.pending = None
        if self._maker_exit_at is not None:  # an orderly exit not filled within its bar: the rest at market
            self._maker_exit_at = None
            o = self._exit_order and (self.cache.order(self._exit_order.client_order_id) or self._exit_order)
            if o is not None and not o.is_closed and ac.trade is not None:
                self._cancel(o)
                self._exit(ac.exit_reason, maker=False)
        ac.charge_funding(t, open_ms, self.bars.open)
        if ac.closing_bar is not None:
            self._finalise()
        vd_prev, vd, vol_ok = self.market.step(open_ms, self.bars.close, tradable, self.scan_files)
        self._last_close_ms = close_ms

        risk = self.risk_source.read(close_ms * NS_PER_MS)
        at_end = self._end_ms is not None and close_ms >= self._end_ms
        decision, asset, lev = K.D_NONE, -1, 0.0
        if ac.trade is not None:
            tr = ac.trade
            d = K.decide_exit(p, t, tr.entry_bar, tr.posture, tr.boost, risk.posture, risk.acb_boost)
            if d != K.D_NONE:
                decision, asset = d, tr.asset
                if not at_end and self._exit_order is None and self._restoring is None:
                    self._exit(K.DECISION_TO_REASON[d])
        elif ac.pending is None and K.entry_allowed(p, vol_ok, risk.posture, risk.mc_status):
            # (a market entry still in flight at the next close happens live only: never double up)
            side = K.signal_side(p, vd_prev, vd)
            if side != 0:
                lev = K.signal_leverage(p, side, vd, risk.posture, risk.acb_boost, risk.rm)
                if lev >= p[K.P_MIN_ORDER_LEV]:
                    a = self.market.rank(side)
                    if a >= 0:
                        decision = K.D_ENTER_SHORT if side < 0 else K.D_ENTER_LONG
                        asset = a
                        if not at_end:
                            self._enter(a, side, lev, vd, risk)
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
            lg.bar_to_decision_ns.append(time.perf_counter_ns() - self.bars.last_arrival)
        if self.decision_log is not None:
            self.decision_log.record(self, close_ms, decision, asset, lev, vd_prev, vd, vol_ok, risk, at_end)

    # ------------------------------------------------------------------ orders
    def _enter(self, a: int, side: int, lev: float, vd: float, risk) -> None:
        inst = self._instr[a]
        if inst is None:
            return
        ac = self.acct
        # isolated margin = fraction of capital, times GREEN's arbiter weight of the leg (1.0 for BLUE)
        notional = ac.capital * self.cfg.capital_fraction * self.market.leg_weight(side) * lev
        px = float(self.bars.close[a])
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
        ac.pending = _Pending(order, a, side, notional, lev, vd, risk.posture, risk.acb_boost, limit, ac.capital)
        if hasattr(self.acct.journal, "record_entry"):  # durable before the order exists anywhere else
            self.acct.journal.record_entry(
                str(order.client_order_id), self.symbols[a], self._last_close_ms * NS_PER_MS,
                {"side": int(side), "leverage": float(lev), "target_notional": float(notional), "signal": float(vd),
                 "posture": int(risk.posture), "boost": float(risk.acb_boost), "limit": bool(limit),
                 "capital_before": float(ac.capital), "decision_close_ms": int(self._last_close_ms)})
        self._submit(order, "entry")

    def _place_tp(self, tr) -> None:
        """The entry filled: a reduce-only LIMIT take-profit rests at entry +/- the TP distance."""
        inst = self._instr[tr.asset]
        tp = inst.make_price(tr.entry_px * (1.0 + tr.side * self.p[K.P_TP]))
        tr.tp_price = to_float(tp)
        order = self.order_factory.limit(self.ids[tr.asset], OrderSide.BUY if tr.side < 0 else OrderSide.SELL,
                                         inst.make_qty(tr.qty), tp, time_in_force=TimeInForce.GTC,
                                         reduce_only=True, tags=["TP"])
        self._tp_order = order
        self._submit(order, "tp")

    def _exit(self, reason: int, maker: bool | None = None) -> None:
        """Close the position. Orderly exits (a posture change, an adverse turn) rest a reduce-only LIMIT at the
        last close when the asset's book is healthy (the risk source's ``book_healthy``: fresh, deep enough to
        be filled) and fall back to market at the next bar close if it has not filled; every other exit, and
        any exit without a healthy book, is a reduce-only MARKET order (the seed's duress exit)."""
        tr = self.acct.trade
        if self._tp_order is not None:
            self._cancel(self._tp_order)
            self._tp_order = None
        left = tr.qty - tr.closed_qty
        inst = self._instr[tr.asset]
        side = OrderSide.BUY if tr.side < 0 else OrderSide.SELL
        if maker is None:
            healthy = getattr(self.risk_source, "book_healthy", None)
            maker = reason in _ORDERLY_EXITS and healthy is not None and healthy(self.symbols[tr.asset])
        if maker:
            px = inst.make_price(float(self.bars.close[tr.asset]))
            order = self.order_factory.limit(self.ids[tr.asset], side, inst.make_qty(left), px,
                                             time_in_force=TimeInForce.GTC, reduce_only=True,
                                             tags=[_REASON_NAMES[reason].upper(), "MAKER"])
            self._maker_exit_at = self._last_close_ms
            self.log.info(f"orderly exit ({_REASON_NAMES[reason]}): {self.symbols[tr.asset]} book healthy, "
                          f"reduce-only limit at {px}; market at the next bar close if not filled")
        else:
            order = self.order_factory.market(self.ids[tr.asset], side, inst.make_qty(left), reduce_only=True,
                                              tags=[_REASON_NAMES[reason].upper()])
            self._maker_exit_at = None
        self._exit_order = order
        self.acct.exit_reason = reason
        self._submit(order, "exit")

    def _flatten(self) -> None:
        """End of a replay (the backtest's close_at_end): cancel what rests, close at market."""
        ac = self.acct
        if ac.pending is not None and ac.pending.filled_qty == 0.0:
            self._cancel(ac.pending.order)
            ac.pending = None
        if ac.trade is not None and self._exit_order is None:
            self._exit(K.R_END)

    def _submit(self, order, role: str) -> None:
        self._roles[order.client_order_id] = role
        self.submit_order(order)
        if role != "tp" and self._keep:
            self.log_data.bar_to_order_ns.append(time.perf_counter_ns() - self.bars.last_arrival)

    def _cancel(self, order) -> None:
        o = self.cache.order(order.client_order_id) or order
        if not o.is_closed:
            self.cancel_order(o)

    # ------------------------------------------------------------------ restart adoption (runtime.reconcile)
    def _adopt_position(self, ad) -> None:
        if ad.symbol not in self.symbols or self._instr[self.symbols.index(ad.symbol)] is None:
            self.log.error(f"cannot adopt {ad.describe()}: {ad.symbol} is not traded by this node")
            return
        tr = self.acct.adopt(self.symbols.index(ad.symbol), ad)
        self.log.warning(f"restart: adopted {ad.describe()}")
        if ad.restore:
            self._restoring = tr  # the simulated exchange has no price before the first bar
            return
        from nautilus_trader.model.identifiers import ClientOrderId

        order = self.cache.order(ClientOrderId(ad.tp_order_id)) if ad.tp_order_id else None
        if order is not None and order.is_open and order.strategy_id == self.id:
            self._tp_order = order
            self._roles[order.client_order_id] = "tp"
            tr.tp_price = to_float(order.price)
        elif ad.tp_order_id:
            self.log.error(f"restart: the venue's take-profit {ad.tp_order_id} was not reconciled into this "
                           f"strategy ({order!r}): the position keeps its exits but no take-profit order")
        else:
            self._place_tp(tr)

    def _restore_position(self, tr) -> None:
        """Sandbox: re-create the adopted position in the simulated exchange (not journaled, not booked)."""
        inst = self._instr[tr.asset]
        order = self.order_factory.market(self.ids[tr.asset], OrderSide.SELL if tr.side < 0 else OrderSide.BUY,
                                          inst.make_qty(tr.qty), tags=["RESTORE"])
        self._restoring = order
        self._submit(order, "restore")

    def _finalise(self) -> None:
        self.acct.finalise(self._last_close_ms)
        self._exit_order = None

    # ------------------------------------------------------------------ order events
    def on_order_filled(self, event) -> None:
        role = self._roles.get(event.client_order_id)
        if role is None:
            self.log.warning(f"fill for an order this strategy does not track: {event}")
            return
        if role == "restore":  # the adopted position exists in the simulated exchange again: protect it
            order = self.cache.order(event.client_order_id)
            if order is not None and order.is_closed:
                self._restoring = None
                self._place_tp(self.acct.trade)
            return

        def order_closed() -> bool:
            order = self.cache.order(event.client_order_id)
            return order is not None and order.is_closed

        what = self.acct.apply_fill(event, role, order_closed)
        if what == "opened":
            self._place_tp(self.acct.trade)
        elif what == "tp":
            self._tp_order = None
        elif what == "closed":
            self._finalise()
        self.acct.journal_fill(event, role)

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
        ac = self.acct
        if role == "entry" and ac.pending is not None and ac.pending.order.client_order_id == cid:
            if ac.pending.filled_qty > 0.0:
                self._place_tp(ac.open_trade())  # partially filled limit: keep what filled
            else:
                ac.pending = None
        elif role == "exit" and self._exit_order is not None and self._exit_order.client_order_id == cid:
            self._exit_order = None  # the next bar close decides again
        elif role == "restore":
            self.log.error(f"restart: re-creating the adopted position in the sandbox was {what}; retrying at the "
                           "next bar close")
            self._restoring = self.acct.trade
        elif role == "tp" and self._tp_order is not None and self._tp_order.client_order_id == cid:
            self._tp_order = None
            if what != "canceled":
                self.log.error(f"take-profit order {what}: position {self.symbols[ac.trade.asset]} has no TP")

    def trades_frame(self):
        return self.acct.trades_frame()

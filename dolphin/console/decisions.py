"""The runtime's last decisions and why no entry was made, published to ``DOLPHIN_STATE_<STRATEGY>/decisions``.

``DolphinStrategy`` calls ``DecisionLog.record`` once per bar close, after its decision. The reason is derived
with the same njit functions the decision used (``entry_allowed``, ``signal_side``, ``signal_leverage``), in the
order the strategy applies them, so the console shows "no signal", "vol gate", "posture TURTLE", "MC RED", ...
The store write happens on a background thread ("dolphin-decision-publisher", newest record wins): the bar-close
decision only appends to a deque and hands over a dict, and a slow or unreachable store never delays it.

Only built when the strategy's risk source publishes to a feature store (``StoreRiskSource`` with
``publish=True``): replays with default or scheduled risk write nothing.
"""

import logging
import math
import queue
import threading
import time
from collections import deque

from dolphin.engine import kernel as K
from dolphin.engine.config import MC_NAMES, POSTURE_NAMES
from dolphin.store import Record, StoreUnavailableError, iso_utc, state_map

log = logging.getLogger("dolphin.console.decisions")

DECISIONS_KEY = "decisions"  # key in DOLPHIN_STATE_<STRATEGY>
KEEP = 30  # decisions kept in the record (the page shows them newest first)


def _f(x):
    x = float(x)
    return x if math.isfinite(x) else None


def explain(p, *, decision: int, lev: float, vd_prev: float, vd: float, vol_ok: bool, risk, in_trade: bool,
            pending: bool, at_end: bool) -> tuple:
    """(action, reason) for one bar close, following ``DolphinStrategy._on_bar_close``'s branches."""
    if decision in (K.D_ENTER_SHORT, K.D_ENTER_LONG):
        return K.DECISION_NAMES[decision], f"signal vel_div {vd:+.4g}, leverage {lev:.2f}x" + (
            " (end of data: not sent)" if at_end else "")
    if decision != K.D_NONE:
        return K.DECISION_NAMES[decision], K.EXIT_REASONS[K.DECISION_TO_REASON[decision]]
    if in_trade:
        return "hold", "in a position: no new entry (exits: TP resting, max hold, posture, HIBERNATE)"
    if pending:
        return "wait", "an entry order is still in flight"
    if risk.posture >= K.TURTLE:
        return "no_entry", f"posture {POSTURE_NAMES[risk.posture]} (Rm {risk.rm:.3f}): no new entries"
    if risk.mc_status == K.MC_RED:
        return "no_entry", f"MC forewarner {MC_NAMES[risk.mc_status]}"
    if p[K.P_VOL_GATE] > 0.0 and not vol_ok:
        return "no_entry", "vol gate: realised vol below its rolling 60th percentile"
    side = K.signal_side(p, vd_prev, vd)
    if side == 0:
        if not (math.isfinite(vd) and math.isfinite(vd_prev)):
            return "no_entry", "no signal: scanner warming up (vel_div not yet defined)"
        return "no_entry", f"no signal: vel_div {vd:+.4g} did not cross -{p[K.P_THR]:.4g}"
    lev = K.signal_leverage(p, side, vd, risk.posture, risk.acb_boost, risk.rm)
    if lev < p[K.P_MIN_ORDER_LEV]:
        return "no_entry", f"leverage {lev:.3f}x after Rm {risk.rm:.3f} is below the {p[K.P_MIN_ORDER_LEV]:g}x minimum"
    return "no_entry", "no tradable asset ranked for the signal"


class DecisionLog:
    def __init__(self, store, strategy: str, *, keep: int = KEEP):
        self.store, self.strategy, self.map = store, strategy, state_map(strategy)
        self.entries: deque = deque(maxlen=keep)
        self.failures = 0
        self._q: queue.Queue = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, name="dolphin-decision-publisher", daemon=True)
        self._t.start()

    def record(self, strat, close_ms: int, decision: int, asset: int, lev: float, vd_prev: float, vd: float,
               vol_ok: bool, risk, at_end: bool = False) -> None:
        ac = strat.acct
        action, reason = explain(strat.p, decision=int(decision), lev=float(lev), vd_prev=float(vd_prev),
                                 vd=float(vd), vol_ok=bool(vol_ok), risk=risk, in_trade=ac.trade is not None,
                                 pending=ac.pending is not None, at_end=at_end)
        self.entries.append({"close_ms": int(close_ms), "action": action, "reason": reason,
                             "asset": strat.symbols[asset] if asset >= 0 else None, "vel_div": _f(vd),
                             "vol_ok": bool(vol_ok), "posture": POSTURE_NAMES[risk.posture], "rm": _f(risk.rm),
                             "boost": _f(risk.acb_boost), "mc": MC_NAMES[risk.mc_status]})
        value = {"strategy": self.strategy, "bar_ms": strat.bar_ms, "decisions": list(self.entries),
                 "position": position_info(strat), "capital": _f(ac.capital), **survival_info(getattr(strat, "risk_source", None))}
        while True:  # newest wins: a record not yet written is replaced (it holds the same list, shorter)
            try:
                self._q.put_nowait(value)
                return
            except queue.Full:
                try:
                    self._q.get_nowait()
                except queue.Empty:
                    pass

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                value = self._q.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self.store.put(self.map, DECISIONS_KEY, Record(value, iso_utc()))
            except StoreUnavailableError as e:
                self.failures += 1
                if self.failures == 1 or self.failures % 100 == 0:
                    log.warning("%s/%s not published (%d so far): %s", self.map, DECISIONS_KEY, self.failures, e)
            except Exception:
                self.failures += 1
                log.exception("%s/%s publish failed", self.map, DECISIONS_KEY)

    def flush(self, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while not self._q.empty() and time.monotonic() < deadline:
            time.sleep(0.01)
        return self._q.empty()

    def close(self) -> None:
        self.flush(2.0)
        self._stop.set()
        self._t.join(2.0)


def position_info(strat) -> dict | None:
    """The open trade as the strategy books it, marked at the last bar close (entry, size, leverage, TP, the
    kernel's isolated-margin liquidation price, the max-hold exit time), or the entry order in flight."""
    ac, p = strat.acct, strat.p
    tr = ac.trade
    if tr is not None:
        side = int(tr.side)
        last = _f(strat.market.last_close[tr.asset]) if getattr(strat.market, "last_close", None) is not None else None
        lev, mmr = float(tr.leverage), float(p[K.P_MMR])
        liq = (tr.entry_px * (1.0 + 1.0 / lev) / (1.0 + mmr) if side < 0 else
               tr.entry_px * (1.0 - 1.0 / lev) / (1.0 - mmr)) if lev > 0 else None
        qty = float(tr.qty - tr.closed_qty)
        return {"symbol": strat.symbols[tr.asset], "side": "SHORT" if side < 0 else "LONG", "qty": qty,
                "entry_price": _f(tr.entry_px), "entry_ns": int(tr.entry_fill_ns), "leverage": _f(lev),
                "notional": _f(qty * tr.entry_px), "tp_price": _f(tr.tp_price), "liquidation_price": _f(liq),
                "max_hold_exit_ms": int((tr.entry_bar + int(p[K.P_MAX_HOLD])) * strat.bar_ms),
                "last_close": last, "unrealised": None if last is None else _f(side * (last - tr.entry_px) * qty),
                "fees": _f(tr.fees), "funding": _f(tr.funding)}
    pe = ac.pending
    if pe is not None:
        return {"symbol": strat.symbols[pe.asset], "side": "SHORT" if pe.side < 0 else "LONG", "pending": True,
                "limit": bool(pe.limit), "leverage": _f(pe.leverage), "notional": _f(pe.target_notional)}
    return None


def survival_info(rs) -> dict:
    """The survival stack's hysteresis counters and this process's last posture changes (with breakdown): the
    controller's state, which ``DOLPHIN_SAFETY`` does not carry."""
    ctrl = getattr(rs, "controller", None)
    if ctrl is None:
        return {}
    from dolphin.survival.stack import safety_record

    c = ctrl.cfg
    return {"hysteresis": {"pending_direction": ctrl.pending_direction, "pending_count": int(ctrl.pending_count),
                           "pending_target": None if ctrl.pending_target is None else POSTURE_NAMES[ctrl.pending_target],
                           "checks_down": int(c.checks_down), "checks_up": int(c.checks_up)},
            "posture_changes": [safety_record(d) for d in list(ctrl.changes)[-10:]]}


def decision_log_for(strat) -> "DecisionLog | None":
    """A ``DecisionLog`` on the store the strategy's risk source publishes to, else None."""
    rs = strat.risk_source
    store = getattr(rs, "store", None)
    if store is None or not getattr(rs, "publish", False):
        return None
    journal = strat.acct.journal
    return DecisionLog(store, str(getattr(journal, "strategy", None) or strat.cfg.name).upper())

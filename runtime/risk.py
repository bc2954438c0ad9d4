"""The ``RiskSource`` port: what the risk layers say, read by the strategy before every decision.

The strategy asks at every bar close (so before every entry or exit order it may send) for the
survival stack's posture and Rm, the ACB boost and the MC forewarner status. The feature-store-backed
adapter (``DOLPHIN_SAFETY`` / ``acb_state`` / ``mc_forewarner_latest``) arrives with its own issue; it
only has to implement ``read``. Until then ``DefaultRiskSource`` gives the engine's documented neutral
values, the same ones ``dolphin.engine.inputs.RiskInputs.defaults`` gives the backtest.
"""

import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol, runtime_checkable

import numpy as np

from dolphin.acb import read_acb
from dolphin.engine.config import APEX, GREEN, MC_NAMES, ORANGE, POSTURE_NAMES, RED
from dolphin.mc.forewarner import MCEnvelope
from dolphin.store import (EXF_LATEST, FEATURES, MC_FOREWARNER_LATEST, SYSTEM_HEALTH, Record, StoreUnavailableError,
                           asset_ob_key, iso_utc)
from dolphin.survival.dvol import DvolSpikeDetector
from dolphin.survival.stack import PostureController, SurvivalConfig, SurvivalInputs, compute_rm, publish_safety

log = logging.getLogger("dolphin.runtime.risk")


@dataclass(frozen=True)
class RiskSnapshot:
    posture: int  # dolphin.engine.config APEX..HIBERNATE
    rm: float  # survival-stack multiplier in [0, 1]
    acb_boost: float
    mc_status: int  # GREEN / ORANGE / RED
    source: str = ""

    def describe(self) -> str:
        return (f"{POSTURE_NAMES[self.posture]} Rm={self.rm:.3f} boost={self.acb_boost:.3f} "
                f"MC={MC_NAMES[self.mc_status]} ({self.source})")


@runtime_checkable
class RiskSource(Protocol):
    def read(self, ts_ns: int) -> RiskSnapshot:
        """The risk state in force at ``ts_ns`` (the bar close being decided on)."""
        ...


class DefaultRiskSource:
    """Neutral values: APEX, Rm 1, boost 1, MC GREEN (as ``RiskInputs.defaults``)."""

    _SNAP = RiskSnapshot(APEX, 1.0, 1.0, GREEN, "defaults")

    def read(self, ts_ns: int) -> RiskSnapshot:
        return self._SNAP


class ScheduledRiskSource:
    """Risk inputs recorded per bar (a ``RiskInputs`` row-aligned with bars closing at ``close_ms``).

    Replays what the risk layers said at each bar close, so the replay and ``run_backtest(risk=...)``
    see the same inputs. Times outside the schedule are an error, not a silent default."""

    def __init__(self, close_ms: np.ndarray, risk):
        risk.check(len(close_ms))
        self._idx = {int(t): i for i, t in enumerate(np.asarray(close_ms, dtype=np.int64))}
        self._risk = risk

    def read(self, ts_ns: int) -> RiskSnapshot:
        i = self._idx.get(int(ts_ns) // 1_000_000)
        if i is None:
            raise KeyError(f"no scheduled risk inputs for bar close {int(ts_ns) // 1_000_000} ms")
        r = self._risk
        return RiskSnapshot(int(r.posture[i]), float(r.rm[i]), float(r.acb_boost[i]), int(r.mc_status[i]),
                            r.source)


class StoreRiskSource:
    """The survival stack, applied by the runtime at every bar close from what the feature store holds.

    Each ``read`` is one check: the store is read (through the parsed-record near cache when given one) for
    ``acb_state`` (boost; absent -> 1.0), ``mc_forewarner_latest`` (status and age for Cat2; absent ->
    ORANGE), ``exf_latest`` (``dvol_btc`` feeds a DVOL spike detector for Cat4) and
    ``asset_<SYMBOL>_ob`` (book depth / fill quality for Cat3; absent -> stale, 0.5 as DESIGN says); Cat1 is
    the store's reachability (this process is the heartbeat, so its own age is 0); Cat5 is the drawdown of
    the strategy's ledger capital against its peak. ``PostureController`` applies the hysteresis (2 checks
    down, 5 up; Cat1 = 0 at once) and every decision is published to ``DOLPHIN_SAFETY`` together with a
    runtime heartbeat in ``DOLPHIN_SYSTEM_HEALTH``. An unreachable store is Cat1 = 0: HIBERNATE at once,
    boost 1 and MC RED for the engine (no entries), and nothing is published (it cannot be).

    ``clock``: "wall" (live / sandbox: ages against the real clock) or "bar" (replays: against the bar
    close being decided, so recorded feature timestamps age as they did)."""

    def __init__(self, store, *, symbols=(), cfg=None, clock: str = "wall", peak: float | None = None,
                 publish: bool = True):
        if clock not in ("wall", "bar"):
            raise ValueError(f"clock must be 'wall' or 'bar', got {clock!r}")
        self.store, self.symbols, self.clock, self.publish = store, tuple(symbols), clock, publish
        self.cfg = cfg or SurvivalConfig()
        self.controller = PostureController(self.cfg)
        self.dvol = DvolSpikeDetector()
        self._dvol_seen = None
        self._capital_fn = None
        self.peak = peak
        self.last = None  # the last PostureDecision
        self.publish_failures = 0
        # publishing (two store writes) runs off the decision path: a background thread, latest check wins
        self._pending = queue.Queue(maxsize=1)
        self._idle = threading.Event()
        self._idle.set()
        self._publisher = threading.Thread(target=self._publish_loop, name="dolphin-safety-publisher", daemon=True)
        if publish:
            self._publisher.start()

    def bind(self, strategy) -> None:
        """Called by ``DolphinStrategy``: Cat5 reads its (ledger) capital."""
        self._capital_fn = lambda: float(strategy.capital)

    def _drawdown(self) -> float:
        if self._capital_fn is None:
            return 0.0
        cap = self._capital_fn()
        self.peak = cap if self.peak is None else max(self.peak, cap)
        return min(1.0, max(0.0, 1.0 - cap / self.peak)) if self.peak > 0 else 1.0

    def _book(self, now_ms: int):
        depth, fill, age = [], [], []
        for s in self.symbols:
            rec = self.store.get(FEATURES, asset_ob_key(s))
            if rec is None:
                return None, None, None
            depth.append(float(rec.value.get("depth_quality", 0.0)))
            fill.append(float(rec.value.get("fill_prob", 0.0)))
            age.append(max(0.0, (now_ms - rec.timestamp_ms) / 1000.0))
        if not depth:
            return None, None, None
        return min(depth), min(fill), max(age)

    def read(self, ts_ns: int) -> RiskSnapshot:
        now_ms = int(ts_ns) // 1_000_000 if self.clock == "bar" else int(time.time() * 1000)
        ts = datetime.fromtimestamp(now_ms / 1000, tz=timezone.utc)
        dd = self._drawdown()
        boost, mc_code, mc_age = 1.0, None, None
        try:
            acb = read_acb(self.store)
            if acb is not None:
                boost = float(acb.boost)
            mc_rec = self.store.get(FEATURES, MC_FOREWARNER_LATEST)
            if mc_rec is not None:
                env = MCEnvelope.from_record(mc_rec)
                mc_code = env.code
                mc_age = max(0.0, (now_ms - mc_rec.timestamp_ms) / 3_600_000)
            exf = self.store.get(FEATURES, EXF_LATEST)
            if exf is not None and exf.value.get("dvol_btc") is not None:
                seen = (exf.timestamp, exf.value["dvol_btc"])
                if seen != self._dvol_seen:
                    self._dvol_seen = seen
                    self.dvol.update(min(now_ms, exf.timestamp_ms), float(exf.value["dvol_btc"]))
            depth, fill, ob_age = self._book(now_ms)
            reachable = True
        except StoreUnavailableError:
            reachable, depth, fill, ob_age = False, None, None, None
        inputs = SurvivalInputs(store_reachable=reachable, heartbeat_age_s=0.0, mc_status=mc_code,
                                mc_age_hours=mc_age, ob_depth_quality=depth, ob_fill_prob=fill, ob_age_s=ob_age,
                                minutes_since_dvol_spike=self.dvol.minutes_since_spike(now_ms) if reachable else None,
                                drawdown=dd)
        decision = self.controller.update(compute_rm(inputs, self.cfg), ts)
        self.last = decision
        if reachable and self.publish:
            self._enqueue((decision, now_ms))
        mc_for_engine = RED if not reachable else (ORANGE if mc_code is None else mc_code)
        return RiskSnapshot(decision.posture, float(decision.rm), boost, mc_for_engine,
                            "feature store" if reachable else "feature store UNREACHABLE")

    def _enqueue(self, item) -> None:
        while True:
            try:
                self._pending.put_nowait(item)
                # cleared after the put: a stray clear only delays idle by one 0.5 s poll, never the reverse
                self._idle.clear()
                return
            except queue.Full:
                try:
                    self._pending.get_nowait()  # a newer check replaces one not yet published
                except queue.Empty:
                    pass

    def _publish_loop(self) -> None:
        while True:
            try:
                decision, now_ms = self._pending.get(timeout=0.5)
            except queue.Empty:
                self._idle.set()
                continue
            try:
                publish_safety(self.store, decision)
                self.store.put(SYSTEM_HEALTH, "runtime_heartbeat", Record({"source": "runtime"}, iso_utc(now_ms)))
            except StoreUnavailableError as e:
                self.publish_failures += 1
                log.warning("DOLPHIN_SAFETY not published: %s", e)
            except Exception:  # never let the publisher die silently: the next check tries again
                self.publish_failures += 1
                log.exception("DOLPHIN_SAFETY publish failed")
            if self._pending.empty():
                self._idle.set()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every check so far is published (tests, shutdown)."""
        return self._idle.wait(timeout)

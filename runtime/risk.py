"""The ``RiskSource`` port: what the risk layers say, read by the strategy before every decision.

The strategy asks at every bar close (so before every entry or exit order it may send) for the
survival stack's posture and Rm, the ACB boost and the MC forewarner status. ``StoreRiskSource`` computes
them from the feature store (decision-latency budget, staleness limit and rehydration in its docstring);
``DefaultRiskSource`` gives the engine's documented neutral values, the same ones
``dolphin.engine.inputs.RiskInputs.defaults`` gives the backtest; ``ScheduledRiskSource`` replays recorded ones.
"""

import logging
import math
import queue
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol, runtime_checkable

import numpy as np

from dolphin.acb import AcbState
from dolphin.book.features import BOOK_HEALTHY, cat3_inputs
from dolphin.engine.config import APEX, GREEN, MC_NAMES, ORANGE, POSTURE_NAMES, RED
from dolphin.mc.forewarner import MCEnvelope
from dolphin.store import (ACB_STATE, EXF_LATEST, FEATURES, MC_FOREWARNER_LATEST, SYSTEM_HEALTH, Record,
                           StoreUnavailableError, asset_ob_key, iso_utc)
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


BUDGET_MS = 50.0  # the longest a wall-clock bar-close decision waits for the store
STALE_S = 10.0  # last good values older than this: the store counts as unreachable (Cat1 = 0)
REFRESH_S = 0.5  # wall clock: the refresher reads the inputs this often (and at every decision)
KEEP_S = 5.0  # rehydration: keys this process owns are checked (and re-created) this often


@dataclass(frozen=True)
class StoreInputs:
    """One round of store reads. Ages are not taken here but against the decision's clock."""

    reachable: bool
    acb: tuple | None = None  # (boost, timestamp ms)
    mc: tuple | None = None  # (status code, timestamp ms)
    exf: tuple | None = None  # (timestamp text, timestamp ms, dvol_btc or None)
    book: dict | None = None  # symbol -> (depth quality, fill prob, timestamp ms) of each asset_<SYMBOL>_ob read
    error: str = ""


def _unit(name: str, x, default: float) -> float:
    """A book field: absent -> ``default`` (as before), else a finite number in [0, 1]."""
    if x is None:
        return default
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not 0.0 <= x <= 1.0:  # NaN fails the range
        raise ValueError(f"{name} = {x!r} is not a number in [0, 1]")
    return float(x)


def _parse_acb(rec: Record) -> tuple:
    return float(AcbState.from_record(rec).boost), rec.timestamp_ms


def _parse_mc(rec: Record) -> tuple:
    return MCEnvelope.from_record(rec).code, rec.timestamp_ms


def _parse_exf(rec: Record) -> tuple:
    v = rec.value.get("dvol_btc")
    if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0):
        raise ValueError(f"dvol_btc = {v!r} is not a finite positive number")
    return rec.timestamp, rec.timestamp_ms, None if v is None else float(v)


def _parse_book(rec: Record) -> tuple:
    return (_unit("depth_quality", rec.value.get("depth_quality"), 0.0),
            _unit("fill_prob", rec.value.get("fill_prob"), 0.0), rec.timestamp_ms)


class StoreRiskSource:
    """The survival stack, applied by the runtime at every bar close from what the feature store holds.

    Each ``read`` is one check over the inputs read from the store (through the parsed-record near cache
    when given one): ``acb_state`` (boost; absent -> 1.0), ``mc_forewarner_latest`` (status and age for Cat2;
    absent -> ORANGE), ``exf_latest`` (``dvol_btc`` feeds a DVOL spike detector for Cat4) and
    ``asset_<SYMBOL>_ob`` for each of ``symbols`` (book depth / fill quality for Cat3; absent -> stale, 0.5 as
    DESIGN says; ``symbols=None``: the bound strategy's instruments); Cat1 is
    the store's reachability (this process is the heartbeat, so its own age is 0); Cat5 is the drawdown of
    the strategy's ledger capital against its highest value of the last ``cfg.cat5_peak_days`` days.
    ``PostureController`` applies the hysteresis (2 checks down, 5 up; Cat1 = 0 at once) and every decision is published to ``DOLPHIN_SAFETY`` together with a
    runtime heartbeat in ``DOLPHIN_SYSTEM_HEALTH``. An unreachable store is Cat1 = 0: HIBERNATE at once,
    boost 1 and MC RED for the engine (no entries), and nothing is published (it cannot be).

    Malformed inputs: each key is read and parsed on its own. A value that does not parse (the store reports
    bad JSON itself; wrong field types / ranges are reported here, once per distinct value, naming
    map/key) is treated as missing. So is a value stamped after the decision's time (beyond the clock-skew
    tolerance on the wall clock; at all on the bar clock, where it would be look-ahead). Only
    ``StoreUnavailableError`` means unreachable.

    ``clock``:

    - "wall" (live / sandbox): ages against the real clock, and the bar-close decision never waits on the
      store longer than ``budget_ms`` (default 50 ms). A background thread ("dolphin-risk-refresher") reads
      the inputs every ``refresh_s`` (0.5 s) and at once when a decision asks; ``read`` waits up to
      ``budget_ms`` for a round that ends after it asked (the one in flight, or a new one), else uses the
      last good round if it started less than ``stale_s`` (10 s) ago, else counts the store unreachable. 10 s is two Hazelcast invocation
      timeouts (5 s; a member's SIGKILL stalls one call for 1.1-5 s): one stalled call never trips Cat1 = 0
      (which costs 5 checks = 25 min of HIBERNATE), a store silent for two does. A round that ends in
      ``StoreUnavailableError`` is Cat1 = 0 at once (the backend said so; no waiting for the bound).
    - "bar" (replays): ages against the bar close being decided, so recorded feature timestamps age as
      they did; reads are synchronous on the decision thread (no refresher): deterministic, as before.

    Rehydration: a background thread ("dolphin-safety-publisher") publishes each check off the decision
    path and, every ``keep_s`` (5 s), re-creates what this process owns when the store lost it (a cluster
    restart, a deleted key): ``DOLPHIN_SAFETY/latest`` and the heartbeat from the last published check,
    and the state of every ``attach``-ed ``runtime.ledger.LedgerSink`` from its journal. ``close()`` stops
    both threads."""

    def __init__(self, store, *, symbols=(), cfg=None, clock: str = "wall", peak: float | None = None,
                 publish: bool = True, budget_ms: float = BUDGET_MS, stale_s: float = STALE_S,
                 refresh_s: float = REFRESH_S, keep_s: float = KEEP_S, override_ledger=None):
        if clock not in ("wall", "bar"):
            raise ValueError(f"clock must be 'wall' or 'bar', got {clock!r}")
        if not (budget_ms > 0 and stale_s > 0 and refresh_s > 0 and keep_s > 0):
            raise ValueError("budget_ms, stale_s, refresh_s and keep_s must be > 0")
        self._own_symbols = symbols is None  # None: the bound strategy's instruments (a replay knows them late)
        self.store, self.symbols, self.clock, self.publish = store, tuple(symbols or ()), clock, publish
        self.budget_s, self.stale_s, self.refresh_s, self.keep_s = budget_ms / 1000.0, stale_s, refresh_s, keep_s
        self.cfg = cfg or SurvivalConfig()
        self.controller = PostureController(self.cfg)
        self.dvol = DvolSpikeDetector()
        self._dvol_seen = None
        self._capital_fn = None
        self.peak = peak  # Cat5's reference equity at the last check (rolling window, see _drawdown)
        self._rolling = None
        self.last = None  # the last PostureDecision
        self._books = ({}, 0)  # (symbol -> fresh book, check time ms) of the last check: book_healthy()
        # the operator's manual override (dolphin.adapters.safety_override_sqlite), read from this ledger file at
        # each check
        self.override_ledger, self.override = override_ledger, None
        self.publish_failures = 0
        self.budget_misses = 0  # wall clock: decisions that did not get a fresh round within the budget
        self.malformed: dict = {}  # key -> error text, for inputs last read as malformed (still bad)
        self._bad_seen: dict = {}  # key -> the bad value last reported (report once per distinct value)
        self._future_seen: dict = {}
        self._slow = False
        self._stop = threading.Event()
        self._keepers: list = []
        self._published = None  # (decision, now_ms) last written to DOLPHIN_SAFETY
        # publishing (two store writes) runs off the decision path: a background thread, latest check wins
        self._pending = queue.Queue(maxsize=1)
        self._idle = threading.Event()
        self._idle.set()
        self._publisher = threading.Thread(target=self._publish_loop, name="dolphin-safety-publisher", daemon=True)
        if publish:
            self._publisher.start()
        # wall clock: the store is read on its own thread; read() only waits for it within the budget
        self._cond = threading.Condition()
        self._requested = float("-inf")  # monotonic time of the last decision's request
        self._latest = None  # (StoreInputs, monotonic start, monotonic end) of the last finished round
        self._good = None  # the same for the last round that reached the store
        self._refresher = None
        if clock == "wall":
            self._refresher = threading.Thread(target=self._refresh_loop, name="dolphin-risk-refresher", daemon=True)
            self._refresher.start()

    def bind(self, strategy) -> None:
        """Called by ``DolphinStrategy``: Cat5 reads its (ledger) capital; ``symbols=None`` takes its instruments."""
        self._capital_fn = lambda: float(strategy.capital)
        if self._own_symbols:
            self.symbols = tuple(strategy.symbols)

    def attach(self, keeper) -> None:
        """Keep ``keeper``'s hot copy in the store: ``keeper.republish_if_stale()`` runs every ``keep_s``
        (``runtime.ledger.LedgerSink``)."""
        self._keepers.append(keeper)
        if not self._publisher.is_alive() and not self._stop.is_set():
            self._publisher.start()

    def _drawdown(self, now_ms: int) -> float:
        """Cat5's drawdown: ledger capital vs its highest value of the last ``cfg.cat5_peak_days`` days
        (``peak`` given at construction counts as a sample at the first check)."""
        if self._capital_fn is None:
            return 0.0
        cap = self._capital_fn()
        if self._rolling is None:
            from dolphin.survival.peak import RollingPeak

            self._rolling = RollingPeak(self.cfg.cat5_peak_days)
            if self.peak is not None:
                self._rolling.push(now_ms, self.peak)
        if self._rolling._last_t is not None and now_ms < self._rolling._last_t:
            now_ms = self._rolling._last_t  # the wall clock stepped back: never feed a sample out of order
        dd = self._rolling.drawdown(now_ms, cap)
        self.peak = self._rolling.peak(now_ms)
        return dd

    # ------------------------------------------------------------------ store reads
    def _input(self, key: str, parse):
        """One input: ``None`` when absent or malformed. ``StoreUnavailableError`` propagates."""
        rec = self.store.get(FEATURES, key)  # bad JSON: the store reports it and returns None
        if rec is None:
            self._bad_seen.pop(key, None)
            self.malformed.pop(key, None)
            return None
        try:
            out = parse(rec)
        except (ValueError, KeyError, TypeError) as e:
            text = rec.to_json()
            if self._bad_seen.get(key) != text:
                self._bad_seen[key] = text
                log.warning("feature store: malformed record at %s/%s treated as missing: %s", FEATURES, key, e)
            self.malformed[key] = str(e)
            return None
        self._bad_seen.pop(key, None)
        self.malformed.pop(key, None)
        return out

    def _read_book(self) -> dict:
        out = {}
        for s in self.symbols:
            b = self._input(asset_ob_key(s), _parse_book)
            if b is not None:
                out[s] = b
        return out

    def book_healthy(self, symbol: str) -> bool:
        """At the last check: ``symbol``'s book was fresh (<= ``ob_max_age_s``) and both its depth quality and fill
        probability were at least ``BOOK_HEALTHY``: an orderly (maker) exit is likely to fill. The strategy asks
        this when it exits on a posture change or an adverse turn; no book, a stale one or a thin one -> False
        (market exit)."""
        books, at_ms = self._books
        b = books.get(symbol)
        return (b is not None and (at_ms - b[2]) / 1000.0 <= self.cfg.ob_max_age_s
                and min(b[0], b[1]) >= BOOK_HEALTHY)

    def fetch(self) -> StoreInputs:
        """Read every input from the store once (no ages, no state change besides malformed reports)."""
        try:
            return StoreInputs(True, acb=self._input(ACB_STATE, _parse_acb), mc=self._input(MC_FOREWARNER_LATEST,
                               _parse_mc), exf=self._input(EXF_LATEST, _parse_exf), book=self._read_book())
        except StoreUnavailableError as e:
            return StoreInputs(False, error=str(e))

    def _refresh_loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                inputs = self.fetch()
            except Exception as e:  # a bug or an unmapped backend error: count it unreachable, keep refreshing
                log.exception("feature store read failed")
                inputs = StoreInputs(False, error=f"{type(e).__name__}: {e}")
            with self._cond:
                self._latest = (inputs, started, time.monotonic())
                if inputs.reachable:
                    self._good = self._latest
                self._cond.notify_all()
                self._cond.wait_for(lambda: self._stop.is_set() or self._requested > started,
                                    timeout=max(0.0, started + self.refresh_s - time.monotonic()))

    def ready(self, timeout: float = 5.0) -> bool:
        """Wall clock: wait until the refresher has finished its first round (start-up, tests)."""
        with self._cond:
            return self.clock == "bar" or self._cond.wait_for(lambda: self._latest is not None, timeout)

    def _wall_inputs(self) -> tuple:
        """The inputs for a wall-clock decision, never waiting more than the budget."""
        asked = time.monotonic()
        with self._cond:
            self._requested = asked
            self._cond.notify_all()
            # fresh: a round that ended after the decision asked (the one in flight, else a new one)
            self._cond.wait_for(lambda: self._latest is not None and self._latest[2] >= asked, timeout=self.budget_s)
            latest, good = self._latest, self._good
        if latest is not None and latest[2] >= asked and asked - latest[1] <= self.stale_s:
            if self._slow:
                self._slow = False
                log.info("feature store answers within %.0f ms again", self.budget_s * 1000)
            return latest[0], "feature store"
        self.budget_misses += 1
        if latest is not None and not latest[0].reachable:
            return latest[0], "feature store"
        age = None if good is None else asked - good[1]
        if not self._slow:
            self._slow = True
            log.warning("feature store: no answer within %.0f ms at a decision; using the last good values "
                        "(%s old; limit %g s)", self.budget_s * 1000, "none" if age is None else f"{age:.1f} s",
                        self.stale_s)
        if age is not None and age <= self.stale_s:
            return good[0], f"feature store, last good values {age:.1f} s old"
        return StoreInputs(False, error=f"no store answer for more than {self.stale_s:g} s"), "feature store"

    # ------------------------------------------------------------------ the check
    def read(self, ts_ns: int) -> RiskSnapshot:
        if self.clock == "bar":
            inputs, note = self.fetch(), "feature store"
            now_ms = int(ts_ns) // 1_000_000
        else:
            inputs, note = self._wall_inputs()
            now_ms = int(time.time() * 1000)
        return self._decide(inputs, now_ms, note)

    def _known(self, key: str, ts_ms: int, now_ms: int) -> bool:
        """A value stamped after the decision is not used: look-ahead on the bar clock, a broken clock
        (beyond the skew tolerance) on the wall clock."""
        if ts_ms <= now_ms + (0 if self.clock == "bar" else int(self.cfg.clock_skew_s * 1000)):
            return True
        if self._future_seen.get(key) != ts_ms:
            self._future_seen[key] = ts_ms
            (log.info if self.clock == "bar" else log.warning)(
                "feature store: %s/%s is stamped %s, after the decision at %s: treated as missing%s", FEATURES, key,
                iso_utc(ts_ms), iso_utc(now_ms), " (not yet known at this bar)" if self.clock == "bar" else "")
        return False

    def _decide(self, inputs: StoreInputs, now_ms: int, note: str) -> RiskSnapshot:
        ts = datetime.fromtimestamp(now_ms / 1000, tz=timezone.utc)
        dd = self._drawdown(now_ms)
        reachable = inputs.reachable
        boost, mc_code, mc_age, depth, fill, ob_age, since_spike = 1.0, None, None, None, None, None, None
        if reachable:
            if inputs.acb is not None and self._known(ACB_STATE, inputs.acb[1], now_ms):
                boost = inputs.acb[0]
            if inputs.mc is not None and self._known(MC_FOREWARNER_LATEST, inputs.mc[1], now_ms):
                mc_code, mc_age = inputs.mc[0], max(0.0, (now_ms - inputs.mc[1]) / 3_600_000)
            exf = inputs.exf
            if exf is not None and exf[2] is not None and self._known(EXF_LATEST, exf[1], now_ms):
                seen = (exf[0], exf[2])
                t = min(now_ms, exf[1])
                # a value not after the last one fed (republished older, same instant) is no news
                if seen != self._dvol_seen and (self.dvol.last_ts is None or t > self.dvol.last_ts):
                    self.dvol.update(t, exf[2])
                self._dvol_seen = seen
            # Cat3: medians over the assets with a fresh book (dolphin.book.features.cat3_inputs, the backtest's
            # rule); a book stamped after the decision is not used
            books = {s: b for s, b in (inputs.book or {}).items() if self._known(asset_ob_key(s), b[2], now_ms)}
            self._books = (books, now_ms)
            if self.symbols:
                got = [books.get(s) for s in self.symbols]
                depth, fill, ob_age = cat3_inputs(
                    [math.nan if b is None else b[0] for b in got], [math.nan if b is None else b[1] for b in got],
                    [math.inf if b is None else max(0.0, (now_ms - b[2]) / 1000.0) for b in got],
                    self.cfg.ob_max_age_s)
            # never ask before the last value fed (the wall clock may step back)
            since_spike = self.dvol.minutes_since_spike(max(now_ms, self.dvol.last_ts or now_ms))
        survival = SurvivalInputs(store_reachable=reachable, heartbeat_age_s=0.0, mc_status=mc_code,
                                  mc_age_hours=mc_age, ob_depth_quality=depth, ob_fill_prob=fill, ob_age_s=ob_age,
                                  minutes_since_dvol_spike=since_spike, drawdown=dd)
        decision = self._apply_override(self.controller.update(compute_rm(survival, self.cfg), ts), now_ms)
        self.last = decision
        if reachable and self.publish:
            self._enqueue((decision, now_ms))
        mc_for_engine = RED if not reachable else (ORANGE if mc_code is None else mc_code)
        return RiskSnapshot(decision.posture, float(decision.rm), boost, mc_for_engine,
                            note if reachable else f"feature store UNREACHABLE ({inputs.error})")

    def _apply_override(self, decision, now_ms: int):
        """The operator's override replaces the posture (Rm clipped into its band) unless Cat1 killed: the
        controller has already run, so its hysteresis state is intact when the override ends."""
        if self.override_ledger is None:
            return decision
        from dolphin.adapters.safety_override_sqlite import active_override

        try:
            o = active_override(self.override_ledger, now_ms * 1_000_000)
        except Exception as e:  # an unreadable ledger must not stop the decision: no override, said loudly (once)
            if getattr(self, "_override_error", None) != str(e):
                log.error("safety override unreadable in %s (ignored): %s", self.override_ledger, e)
            self._override_error = str(e)
            o = None
        if (o is None) != (self.override is None) or (o is not None and o.seq != self.override.seq):
            log.warning("safety override %s", o.describe(now_ms * 1_000_000) if o is not None else
                        f"ended (the survival stack decides again: {decision.posture_name})")
        self.override = o
        if o is None or decision.invariant_kill:
            return decision
        import dataclasses
        prev = self.last.posture if self.last is not None else decision.previous
        return dataclasses.replace(decision, posture=o.posture, rm=o.clip_rm(decision.rm), previous=prev,
                                   changed=o.posture != prev)

    # ------------------------------------------------------------------ publishing and rehydration
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
        kept = time.monotonic()
        while not self._stop.is_set():
            try:
                item = self._pending.get(timeout=min(0.5, self.keep_s))
            except queue.Empty:
                item = None
                self._idle.set()
            if item is not None:
                decision, now_ms = item
                try:
                    publish_safety(self.store, decision)
                    self.store.put(SYSTEM_HEALTH, "runtime_heartbeat", Record({"source": "runtime"}, iso_utc(now_ms)))
                    self._published = item
                except StoreUnavailableError as e:
                    self.publish_failures += 1
                    log.warning("DOLPHIN_SAFETY not published: %s", e)
                except Exception:  # never let the publisher die silently: the next check tries again
                    self.publish_failures += 1
                    log.exception("DOLPHIN_SAFETY publish failed")
                if self._pending.empty():
                    self._idle.set()
            if time.monotonic() - kept >= self.keep_s:
                self.keep()
                kept = time.monotonic()

    def keep(self) -> None:
        """Re-create the keys this process owns if the store lost them (runs every ``keep_s``)."""
        if self.publish and self._published is not None:
            decision, now_ms = self._published
            hb = Record({"source": "runtime"}, iso_utc(now_ms))
            wrote = []

            def absent_only(cur):
                if cur is None:
                    wrote.append(1)
                    return hb
                return None

            try:
                if publish_safety(self.store, decision):  # False when the published check is still there
                    log.warning("DOLPHIN_SAFETY/latest was missing: republished the last check")
                self.store.update(SYSTEM_HEALTH, "runtime_heartbeat", absent_only)
                if wrote:
                    log.warning("DOLPHIN_SYSTEM_HEALTH/runtime_heartbeat was missing: republished")
            except StoreUnavailableError as e:  # the next round tries again
                log.debug("rehydration skipped: %s", e)
            except Exception:
                log.exception("rehydration of DOLPHIN_SAFETY failed")
        for k in list(self._keepers):
            try:
                k.republish_if_stale()
            except StoreUnavailableError as e:
                log.debug("rehydration skipped: %s", e)
            except Exception:
                log.exception("rehydration of %r failed", k)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every check so far is published (tests, shutdown)."""
        return self._idle.wait(timeout)

    def close(self, timeout: float = 2.0) -> None:
        """Publish what is pending (within ``timeout``), stop the background threads. Idempotent; the store
        stays open (its owner closes it)."""
        if self._publisher.is_alive() and not self._stop.is_set():
            self.flush(timeout)
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for t in (self._refresher, self._publisher):
            if t is not None and t.is_alive() and t is not threading.current_thread():
                t.join(timeout)  # a thread stuck in a stalled store call is a daemon: not waited for longer

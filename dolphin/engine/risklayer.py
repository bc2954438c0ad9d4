"""The full risk layer in the backtest: ACB boost (and adverse-turn exit), MC forewarner, survival stack.

``run_risk_backtest`` runs the engine with whichever layers ``RiskLayers`` switches on and returns the
``BacktestResult`` plus the per-bar posture / Rm / boost / MC status it ran under.

How each input is made (all PAST ONLY: nothing a bar's decision uses is known later than that bar's close):

* ACB: ``dolphin.acb.boost_series`` per bar (daily state of D as of D 00:00, then the scans of D up to the
  bar). ExF comes from ``ExfHistory.daily_frame`` (values as of each day's 00:00); ``exf=None`` leaves the
  ExF term out (regime term only). Adverse-turn exit: the kernel's ``decide_exit`` (boost drop > 0.2).
* MC forewarner: the daily return series of the configuration and its perturbed neighbours
  (``perturbed_configs``) are built ONCE over the whole panel (one neutral backtest per variant) and the
  envelope of UTC day D uses the ``mc_lookback_days`` days strictly before D. That equals
  ``engine_daily_variants`` up to the starting capital of the window: the engine is causal (truncation
  tests) and sizes by a fraction of capital, so a day's return does not depend on later data; calling it per
  day would cost ~250 x 8 backtests for the same numbers. The numbers change once per day (the input is
  daily); the envelope is republished every ``mc_refresh_hours`` (DESIGN.md: the MC asset runs every 4 h),
  so its age at a check is the time since the last publication and the 6-h staleness rule of Cat2 /
  ``effective_status`` applies as written. ``mc_refresh_hours=24`` = computed once at 00:00 and left to
  age all day (Cat2 then decays from 06:00 UTC on). Days without any past day: no envelope (ORANGE).
* Survival stack, one check every ``check_every_bars`` (default: 10 minutes of bars, the watchdog cadence),
  at bar closes aligned to the UTC clock. Cat1 = 1 (a backtest has no infrastructure: store reachable,
  heartbeat fresh). Cat2 from the MC envelope in force (``mc=False``: not modelled, 1.0). Cat3 per
  ``cat3_mode``: "no_book_stale" = 0.5 (DESIGN.md's value for a stale/absent book; the honest default when
  no order-book history is given) or "not_modelled" = 1.0 (comparison only). With ``book`` (a
  ``dolphin.book.history.BookGrid``, ``dolphin backtest --book PATH``) and "no_book_stale", Cat3 comes from
  the book as of the check's close (``BookGrid.cat3_inputs``: min depth quality / fill prob over the tradable
  assets, oldest book's age; any of them without a book <= 30 s old -> stale, 0.5), and the book's
  imbalance / fill_prob feed the engine's flow port in every run (the strategy's and the MC variants'). Cat4 from
  ``DvolSpikeDetector`` on the recorded daily ``dvol_btc``, day D's value fed at D+1 00:00 (when it is
  published). Cat5 from the engine's OWN drawdown at the check: mark-to-market equity at the check's close
  vs the highest close of the last ``cfg.cat5_peak_days`` days (DESIGN.md; 0 = every earlier close and the
  starting capital, the old all-time rule).
* The drawdown feeds back into posture, so the kernel runs in chunks between checks carrying its state:
  chunk ``(c_prev, c]`` is simulated, the check at bar c's close sets posture and Rm, and they hold for
  scans ``c+1 .. c_next``. (Posture from a check at close c never reaches the decision at scan c itself:
  that decision is made at the same instant, so the conservative reading is "from the next scan".)
  ``run_chunked`` with no checks reproduces ``run_backtest`` exactly (tested).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Callable

import numpy as np
import pandas as pd

from dolphin.acb import DEFAULT as ACB_DEFAULT
from dolphin.acb import AcbConfig, boost_series
from dolphin.engine import kernel as K
from dolphin.engine.backtest import BacktestResult, _trades_frame, check_leg_weights, prepare_inputs, run_backtest
from dolphin.engine.config import APEX, GREEN, ORANGE, POSTURE_NAMES, RED, EngineConfig
from dolphin.engine.inputs import RiskInputs
from dolphin.engine.state import EngineState
from dolphin.exf.history import ExfHistory
from dolphin.mc.forewarner import MCConfig, forewarn
from dolphin.mc.variants import perturbed_configs
from dolphin.metrics import daily_table
from dolphin.metrics.types import day_label
from dolphin.paths import data_root
from dolphin.survival.dvol import DvolConfig, DvolSpikeDetector, load_dvol_csv
from dolphin.survival.peak import RollingPeak
from dolphin.survival.stack import (CATS, PostureController, RmBreakdown, SurvivalConfig, SurvivalInputs,
                                    compute_rm)
from dolphin.timeutil import DAY_MS

CAT3_MODES = {"no_book_stale": "Cat3 = 0.5 (no order-book history: book counted as stale, DESIGN.md)",
              "not_modelled": "Cat3 = 1.0 (microstructure not modelled; comparison only)"}
HOUR_MS = 3_600_000
CHECK_MS = 600_000  # the watchdog runs every 10 minutes


@dataclass(frozen=True)
class RiskLayers:
    acb: bool = False  # ACB boost multiplies leverage
    acb_adverse_exit: bool = False  # exit on a boost drop of more than acb_drop
    survival: bool = False  # survival stack -> posture and Rm
    mc: bool = False  # MC forewarner: RED blocks entries; feeds Cat2 when survival is on
    check_every_bars: int | None = None  # None: 10 minutes of bars (the watchdog cadence)
    cat3_mode: str = "no_book_stale"
    acb_drop: float = 0.2
    mc_refresh_hours: float = 4.0  # DESIGN.md: the MC envelope asset runs every 4 h
    mc_lookback_days: int = 60
    mc_variants: int = 8
    mc_seed: int = 0

    def __post_init__(self):
        if self.cat3_mode not in CAT3_MODES:
            raise ValueError(f"RiskLayers.cat3_mode must be one of {tuple(CAT3_MODES)}, got {self.cat3_mode!r}")
        if self.check_every_bars is not None and (isinstance(self.check_every_bars, bool)
                                                  or int(self.check_every_bars) != self.check_every_bars
                                                  or self.check_every_bars < 1):
            raise ValueError(f"RiskLayers.check_every_bars must be an integer >= 1, got {self.check_every_bars!r}")
        if self.acb_adverse_exit and not self.acb:
            raise ValueError("RiskLayers: acb_adverse_exit needs acb=True (the exit watches the ACB boost)")
        if not self.acb_drop > 0:
            raise ValueError(f"RiskLayers.acb_drop must be > 0, got {self.acb_drop}")
        if not 0 < self.mc_refresh_hours <= 24:
            raise ValueError(f"RiskLayers.mc_refresh_hours must be in (0, 24], got {self.mc_refresh_hours}")
        if self.mc_lookback_days < 1 or self.mc_variants < 1:
            raise ValueError("RiskLayers: mc_lookback_days and mc_variants must be >= 1")

    @classmethod
    def preset(cls, name: str, **kw) -> "RiskLayers":
        """'none', 'acb' (boost + adverse exit) or 'full' (everything)."""
        presets = {"none": cls(), "acb": cls(acb=True, acb_adverse_exit=True),
                   "full": cls(acb=True, acb_adverse_exit=True, survival=True, mc=True)}
        if name not in presets:
            raise ValueError(f"risk layer preset must be one of {tuple(presets)}, got {name!r}")
        return replace(presets[name], **kw)

    def describe(self, cat3: str | None = None) -> str:
        """``cat3``: what Cat3 is made of when not ``CAT3_MODES[cat3_mode]`` (an order-book history)."""
        parts = []
        if self.acb:
            parts.append("ACB boost" + (f" + adverse-turn exit (drop > {self.acb_drop:g})" if self.acb_adverse_exit
                                        else ""))
        if self.mc:
            parts.append(f"MC forewarner ({self.mc_variants} variants, {self.mc_lookback_days} d, "
                         f"republished every {self.mc_refresh_hours:g} h)")
        if self.survival:
            parts.append(f"survival stack ({cat3 or f'cat3_mode {self.cat3_mode}: {CAT3_MODES[self.cat3_mode]}'})")
        return "risk layer: " + (", ".join(parts) if parts else "none (APEX, MC GREEN, boost 1, Rm 1)")


@dataclass
class RiskBacktestResult:
    result: BacktestResult
    layers: RiskLayers
    posture: np.ndarray  # (T,) posture code in force at each scan
    rm: np.ndarray  # (T,)
    boost: np.ndarray  # (T,)
    mc_status: np.ndarray  # (T,) effective MC status code (GREEN/ORANGE/RED)
    cats: np.ndarray  # (T, 5) Cat1..Cat5 in force at each scan (1.0 where survival is off)
    check_bars: np.ndarray  # bar index of every survival check
    posture_changes: list  # dicts: time, bar, from, to, rm, Cat1..Cat5, reasons
    mc_days: pd.DataFrame  # per UTC day: envelope status, catastrophic prob, days of history
    notes: list = field(default_factory=list)
    description: str = ""  # layers.describe() as run (names the order-book source of Cat3 when one was given)
    carry: dict = field(default_factory=dict)  # risk state at the last bar (run_risk_backtest(carry=...))

    @property
    def first_bar(self) -> int:
        return self.result.first_bar

    def time_in_posture(self, lo: int | None = None, hi: int | None = None) -> dict:
        """{posture name: (fraction of bars, hours)} over simulated bars [lo, hi)."""
        lo = self.first_bar if lo is None else lo
        hi = len(self.posture) if hi is None else hi
        p = self.posture[lo:hi]
        n = max(len(p), 1)
        hours = self.result.bar_ms / HOUR_MS
        return {name: (float(np.count_nonzero(p == code)) / n, float(np.count_nonzero(p == code)) * hours)
                for code, name in enumerate(POSTURE_NAMES)}

    @property
    def acb_adverse_exits(self) -> int:
        return int((self.result.trades.exit_reason == K.EXIT_REASONS[K.R_ACB]).sum())


# ---------------------------------------------------------------- chunked kernel




# on_check(bar, equity_at_close, peak_equity) -> None; it may write the risk arrays for bars > bar
CheckFn = Callable[[int, float, float], None]


def run_chunked(panel, scans, cfg: EngineConfig, risk: RiskInputs, check_bars: np.ndarray,
                on_check: CheckFn | None = None, *, funding_dir=None, trade_from_ms: int | None = None,
                state: EngineState | None = None, close_at_end: bool = True, acb_adverse_exit: bool = False,
                acb_drop: float = 0.2, flow=None, leg_weights=None, peak_days: float | None = None,
                rolling: RollingPeak | None = None, peak_out: list | None = None) -> BacktestResult:
    """The engine in chunks ending at each bar of ``check_bars``, carrying the kernel state between them.
    ``peak``, as passed to ``on_check``, is the highest mark-to-market close of the last ``peak_days`` days
    (``dolphin.survival.peak.RollingPeak``; None = all-time, the starting capital included).

    After the chunk ending at bar c, ``on_check(c, equity[c], peak)`` runs and may change ``risk``'s arrays
    for bars after c (never at or before c: those are already simulated). Each chunk runs on a window of
    rows starting ``rank_lookback + 1`` bars before it (history for ranking and the vel_div crossing), so a
    call costs O(chunk) and not O(T). With ``on_check=None`` the result equals ``run_backtest``'s."""
    T = panel.n_bars
    risk.check(T)
    lw = check_leg_weights(leg_weights, T)
    pr = prepare_inputs(panel, scans, cfg, risk.source, funding_dir=funding_dir, trade_from_ms=trade_from_ms,
                  state=state, acb_adverse_exit=acb_adverse_exit, acb_drop=acb_drop, flow=flow)
    hist = cfg.rank_lookback + 1
    ends = np.asarray(check_bars, dtype=np.int64)
    ends = ends[(ends >= pr.first_bar) & (ends < T - 1)] + 1  # chunk [start, end): end = check bar + 1
    bounds = np.r_[ends, T].astype(np.int64)
    equity = np.full(T, float(pr.state[K.S_CAP]))
    pos_asset = np.full(T, -1, np.int64)
    decision = np.zeros(T, np.int64)
    dec_asset = np.full(T, -1, np.int64)
    dec_lev = np.zeros(T)
    trades: list[list[np.ndarray]] = [[] for _ in range(16)]
    vec = pr.state.copy()
    offset = 0  # row of the current window's first row in the full panel; vec is relative to it
    start = pr.first_bar
    ct = np.asarray(panel.close_time, dtype=np.int64)
    if rolling is None:  # a fresh run: the starting capital is the first sample
        rolling = RollingPeak(peak_days)
        rolling.push(int(ct[pr.first_bar]) - panel.bar_ms if pr.first_bar < T else 0, float(pr.state[K.S_CAP]))
    if peak_out is not None:  # the caller carries it to its next run (the daily chain)
        peak_out.append(rolling)
    ok = pr.regime.ok
    for end in bounds:
        end = int(end)
        if end <= start:
            continue
        o = max(0, start - hist)
        vec[K.S_EBAR] += offset - o  # re-base the carried entry bar on the new window
        offset = o
        last = end == T
        out = K.run_kernel(pr.p, panel.open[o:end], panel.high[o:end], panel.low[o:end], panel.close[o:end],
                           pr.tradable[o:end], pr.vd[o:end], pr.loadings[o:end], ok[o:end], risk.posture[o:end],
                           risk.mc_status[o:end], risk.acb_boost[o:end], risk.rm[o:end], pr.flow[o:end],
                           pr.funding[o:end], start - o, vec, close_at_end and last, lw[o:end])
        n = int(out[0])
        for j in range(16):
            a = out[1 + j][:n]
            if j in (0, 1):  # entry / exit bars: window rows -> panel rows
                a = a + o
            trades[j].append(a.copy())
        sl = slice(start - o, end - o)
        equity[start:end] = out[17][sl]
        pos_asset[start:end] = out[18][sl]
        decision[start:end] = out[19][sl]
        dec_asset[start:end] = out[20][sl]
        dec_lev[start:end] = out[21][sl]
        vec = out[22].copy()
        for j in range(start, end):
            rolling.push(int(ct[j]), float(equity[j]))
        if on_check is not None and not last:
            on_check(end - 1, float(equity[end - 1]), rolling.peak(int(ct[end - 1])))
        start = end
    vec[K.S_EBAR] += offset  # back to row-0 relative
    cat = [np.concatenate(a) if a else np.zeros(0) for a in trades]
    dtypes = (np.int64, np.int64, np.int64, np.int64, float, float, float, float, float, float, float,
              np.int64, float, float, np.int64, np.bool_)
    cat = [c.astype(dt) for c, dt in zip(cat, dtypes)]
    out_all = (len(cat[0]), *cat)
    tr = _trades_frame(out_all, panel.symbols, panel.open_time, panel.bar_ms)
    final = EngineState.from_vector(vec, panel.symbols, int(panel.open_time[0]), panel.bar_ms,
                                    int(panel.close_time[-1]))
    return BacktestResult(cfg, list(panel.symbols), panel.bar_ms, panel.open_time, panel.close_time, equity, tr,
                          decision, dec_asset, dec_lev, pos_asset, pr.vd, pr.regime, risk, final, pr.first_bar,
                          pr.notes, leg_weights)


def check_bars_for(panel, every_bars: int | None) -> np.ndarray:
    """Bars whose close is a survival check: every ``every_bars`` bars (default 10 minutes of bars), aligned
    to the UTC clock (close time a multiple of the check period)."""
    step = every_bars if every_bars is not None else max(1, CHECK_MS // int(panel.bar_ms))
    period = int(step) * int(panel.bar_ms)
    return np.flatnonzero(np.asarray(panel.close_time, dtype=np.int64) % period == 0)


# ---------------------------------------------------------------- MC forewarner per day


def mc_daily_envelopes(panel, scans, cfg: EngineConfig, first_bar: int, layers: RiskLayers,
                       mc_cfg: MCConfig, *, funding_dir=None, flow=None) -> dict:
    """{UTC day ms: MCEnvelope | None} for every day the simulated bars touch; the envelope of day D uses the
    variants' daily returns of the ``mc_lookback_days`` days strictly before D (None: no past day yet)."""
    cfgs, names = perturbed_configs(cfg, layers.mc_variants, layers.mc_seed)
    trade_from = int(panel.close_time[first_bar]) if first_bar > 0 else None
    rets, days = [], None
    for c in cfgs:
        res = run_backtest(panel, scans, c, funding_dir=funding_dir, trade_from_ms=trade_from, close_at_end=False,
                           flow=flow)
        tr = res.trades[res.trades.entry_bar >= first_bar]
        d = daily_table(tr, res.ts[first_bar:], res.equity[first_bar:], c.initial_capital)
        if days is None:
            days = d["day_ms"].to_numpy(np.int64)
        elif not np.array_equal(days, d["day_ms"].to_numpy(np.int64)):
            raise RuntimeError("MC variants produced different day grids")
        rets.append(d["return"].to_numpy(np.float64))
    R = np.vstack(rets)
    out = {}
    # an envelope is needed on every UTC day a scan (bar close) falls on
    bar_days = np.unique((np.asarray(panel.close_time[first_bar:], dtype=np.int64) // DAY_MS) * DAY_MS)
    for d in bar_days:
        past = np.flatnonzero(days < d)[-layers.mc_lookback_days:]
        past = past[np.isfinite(R[:, past]).all(axis=0)]
        out[int(d)] = None if past.size == 0 else forewarn(R[:, past], mc_cfg, as_of=int(d), variant_names=names)
    return out


# ---------------------------------------------------------------- the risk backtest


def _dvol_series(exf: ExfHistory | None) -> tuple[np.ndarray, np.ndarray] | None:
    if exf is not None and exf.series("dvol_btc") is not None:
        s = exf.series("dvol_btc")
        return np.asarray(s.obs_ms, dtype=np.int64), np.asarray(s.values, dtype=np.float64)
    f = data_root() / "exf" / "dvol_btc.csv"
    return load_dvol_csv(f) if f.exists() else None


def run_risk_backtest(panel, scans, cfg: EngineConfig, *, layers: RiskLayers, exf: ExfHistory | None,
                      funding_dir=None, trade_from_ms: int | None = None, acb_cfg: AcbConfig = ACB_DEFAULT,
                      mc_cfg: MCConfig | None = None, survival_cfg: SurvivalConfig = SurvivalConfig(),
                      dvol: tuple[np.ndarray, np.ndarray] | None = None,
                      dvol_cfg: DvolConfig = DvolConfig(), book=None, leg_weights=None,
                      state: EngineState | None = None, close_at_end: bool = True, carry: dict | None = None,
                      mc_envelopes: dict | None = None, boost: np.ndarray | None = None) -> RiskBacktestResult:
    """The engine under ``layers`` (see the module docstring). ``exf``: ExF history for the ACB's ExF term and
    DVOL (None: ACB regime term only; DVOL from ``<data>/exf/dvol_btc.csv`` if present). ``dvol``: (day-label
    ms, values) to use instead (tests). ``book``: a ``BookGrid`` on this panel's bars (None: no order-book
    history, behaviour as before). Closes any position at the last close unless ``close_at_end`` is False.

    Running day by day (the daily chain, ``dolphin.daily.run_risk_day``): ``state`` is the engine state the
    run starts from, ``carry`` the previous run's ``RiskBacktestResult.carry`` (posture controller, Cat5
    rolling peak, the posture / Rm / Cats in force, the last boost and equity). With a carry, the check at the
    close of the bar before ``trade_from_ms`` (the previous run's last bar, which that run could not check:
    its posture reaches the next scan) is made first. ``mc_envelopes`` ({UTC day ms: MCEnvelope | None})
    replaces the envelopes computed over the panel, ``boost`` (T,) the boost computed from the panel's scans
    (a day panel holds too few days for the ACB's regime window). A chain of such runs equals one run over
    the same days given the same envelopes and boost (tests/unit/dolphin/test_daily_risk.py)."""
    T = panel.n_bars
    flow = None
    if book is not None:
        from dolphin.book.history import BookFlowProvider

        flow = BookFlowProvider(book)
    use_book = book is not None and layers.cat3_mode == "no_book_stale"
    cat3_desc = book.describe_cat3() if use_book else CAT3_MODES[layers.cat3_mode]
    mc_cfg = mc_cfg or MCConfig()
    first_bar = 0 if trade_from_ms is None else int(np.searchsorted(panel.close_time, trade_from_ms))
    description = layers.describe(cat3_desc if use_book else None)
    notes = [description]
    if boost is not None:
        boost = np.ascontiguousarray(boost, dtype=np.float64)
        if boost.shape != (T,) or not np.isfinite(boost).all():
            raise ValueError(f"boost: shape {boost.shape} (expected ({T},)) or not finite")
        if not layers.acb:
            boost = np.ones(T)
        else:
            notes.append(f"ACB: boost given per bar (daily acb_state + the day's scans); boost min "
                         f"{boost[first_bar:].min():.3f}, max {boost[first_bar:].max():.3f}")
    elif not layers.acb:
        boost = np.ones(T)
    else:
        exf_daily = None
        if exf is not None:
            d0 = (int(panel.open_time[0]) // DAY_MS - acb_cfg.exf_ref_days - 1) * DAY_MS
            d1 = (int(panel.open_time[-1]) // DAY_MS) * DAY_MS
            exf_daily = exf.daily_frame(day_label(d0), day_label(d1))
        boost, _beta = boost_series(scans, exf_daily, acb_cfg)
        boost = np.ascontiguousarray(boost, dtype=np.float64)
        notes.append("ACB: boost_series per bar, " + ("ExF + w750 regime" if exf is not None
                                                       else "w750 regime only (no ExF history given)")
                     + f"; boost min {boost[first_bar:].min():.3f}, median {np.median(boost[first_bar:]):.3f}, "
                       f"max {boost[first_bar:].max():.3f}")
    posture = np.full(T, APEX, np.int64)
    mc_status = np.full(T, GREEN, np.int64)
    rm = np.ones(T)
    cats = np.ones((T, 5))
    env_by_day: dict = {}
    mc_rows = []
    if layers.mc:
        env_by_day = (dict(mc_envelopes) if mc_envelopes is not None else
                      mc_daily_envelopes(panel, scans, cfg, first_bar, layers, mc_cfg, funding_dir=funding_dir,
                                         flow=flow))
        refresh_ms = int(round(layers.mc_refresh_hours * HOUR_MS))
        for d, env in env_by_day.items():
            mc_rows.append({"day": day_label(d), "status": env.status if env else "none",
                            "catastrophic_prob": env.catastrophic_prob if env else float("nan"),
                            "history_days": env.n_days if env else 0})
        # effective status at each scan (bar close): the envelope of the close's UTC day, republished every
        # refresh_ms from 00:00; the same rules as forewarner.effective_status (missing -> ORANGE, older than
        # staleness_hours -> ORANGE unless RED), vectorised (tested against effective_status)
        ct = np.asarray(panel.close_time, dtype=np.int64)
        cday = (ct // DAY_MS) * DAY_MS
        age_h = ((ct - cday) % refresh_ms) / HOUR_MS
        code = np.array([env_by_day[int(d)].code if env_by_day.get(int(d)) is not None else -1 for d in cday[first_bar:]],
                        dtype=np.int64)
        st = np.where(code < 0, ORANGE, code)
        stale = (age_h[first_bar:] > mc_cfg.staleness_hours) & (st != RED)
        mc_status[first_bar:] = np.where(stale, ORANGE, st)
        notes.append(f"MC: daily envelopes from {layers.mc_variants} engine variants over the "
                     f"{layers.mc_lookback_days} days before each day; RED blocks entries")
    risk = RiskInputs(posture, mc_status, boost, rm, description)
    checks = np.zeros(0, np.int64)
    changes: list[dict] = []
    on_check = None
    rolling = None
    rolling_out: list = []
    carried_check = False
    if carry and layers.survival:
        rolling = RollingPeak.from_dict(carry["peak"], cfg.cat5_peak_days)
        if first_bar >= 1:  # in force until this run's first check (the previous run's last check)
            posture[first_bar:] = int(carry["posture"])
            rm[first_bar:] = float(carry["rm"])
            cats[first_bar:] = np.asarray(carry["cats"], dtype=np.float64)
    if layers.survival:
        checks = check_bars_for(panel, layers.check_every_bars)
        carried_check = bool(carry) and first_bar >= 1 and first_bar - 1 in set(checks.tolist())
        checks = checks[checks >= (first_bar - 1 if carried_check else first_bar)]
        ctrl = (PostureController.from_dict(carry["controller"], survival_cfg) if carry
                else PostureController(survival_cfg, APEX))
        det = DvolSpikeDetector(dvol_cfg)
        dv = dvol if dvol is not None else _dvol_series(exf)
        if dv is None:
            notes.append("Cat4: no DVOL history found: no spike ever (Cat4 = 1)")
            dv_pub, dv_val = np.zeros(0, np.int64), np.zeros(0)
        else:
            dv_pub, dv_val = np.asarray(dv[0], np.int64) + DAY_MS, np.asarray(dv[1], np.float64)
            notes.append(f"Cat4: DVOL spikes on daily dvol_btc, day D's value used from D+1 00:00 UTC "
                         f"({dv_val.size} days)")
        dv_i = [0]
        ct = np.asarray(panel.close_time, dtype=np.int64)
        refresh_ms = int(round(layers.mc_refresh_hours * HOUR_MS))
        next_check = np.r_[checks[1:], T - 1]
        k_of = {int(c): i for i, c in enumerate(checks)}
        tradable = ~(panel.filled | panel.excluded)

        def on_check(bar: int, eq: float, peak: float) -> None:
            now = int(ct[bar])
            while dv_i[0] < dv_pub.size and dv_pub[dv_i[0]] <= now:  # published by now
                det.update(int(dv_pub[dv_i[0]]), float(dv_val[dv_i[0]]))
                dv_i[0] += 1
            if layers.mc:
                d = (now // DAY_MS) * DAY_MS  # day D's envelope is published at D 00:00
                env = env_by_day.get(d)
                if env is None:
                    mc_st, mc_age = None, None
                else:
                    pub = d + ((now - d) // refresh_ms) * refresh_ms
                    mc_st, mc_age = env.code, (now - pub) / HOUR_MS
            else:
                mc_st, mc_age = GREEN, 0.0
            dd = min(1.0, max(0.0, 1.0 - eq / peak)) if peak > 0 else 1.0
            ob_dq, ob_fp, ob_age = book.cat3_inputs(bar, tradable[bar]) if use_book else (None, None, None)
            inp = SurvivalInputs(store_reachable=True, heartbeat_age_s=0.0, mc_status=mc_st, mc_age_hours=mc_age,
                                 ob_depth_quality=ob_dq, ob_fill_prob=ob_fp, ob_age_s=ob_age,
                                 minutes_since_dvol_spike=det.minutes_since_spike(now), drawdown=dd)
            b = compute_rm(inp, survival_cfg)
            if not layers.mc:
                b = _override(b, 1, 1.0, "MC layer off: not modelled")
            if layers.cat3_mode == "not_modelled":
                b = _override(b, 2, 1.0, "not modelled (comparison only)")
            dec = ctrl.update(b, datetime.fromtimestamp(now / 1000, timezone.utc))
            hi = int(next_check[k_of[bar]]) + 1 if bar in k_of else T
            posture[bar + 1:hi] = dec.posture
            rm[bar + 1:hi] = b.rm
            cats[bar + 1:hi] = (b.cat1, b.cat2, b.cat3, b.cat4, b.cat5)
            if dec.changed:
                changes.append({"time_ms": now, "bar": bar, "from": POSTURE_NAMES[dec.previous],
                                "to": POSTURE_NAMES[dec.posture], "rm": b.rm, "drawdown": dd,
                                **b.as_dict(), "reasons": dict(b.reasons)})

        notes.append(f"survival: {len(checks):,} checks every "
                     f"{(layers.check_every_bars or max(1, CHECK_MS // panel.bar_ms)) * panel.bar_ms // 60000} min; "
                     f"Cat1 = 1 (no infrastructure in a backtest); {cat3_desc}; "
                     f"Cat5 from the engine's own mark-to-market drawdown against the highest close of the "
                     f"last {cfg.cat5_peak_days:g} days" if cfg.cat5_peak_days else
                     "Cat5 from the engine's own mark-to-market drawdown against its all-time peak")
    if layers.survival:
        quiet = _DropPostureLogs()  # every change is returned in posture_changes; a backtest must not spam
        logging.getLogger("dolphin.survival").addFilter(quiet)
        try:
            if carried_check:
                on_check(first_bar - 1, float(carry["equity"]), rolling.peak(int(ct[first_bar - 1])))
            res = run_chunked(panel, scans, cfg, risk, checks, on_check, funding_dir=funding_dir,
                              trade_from_ms=trade_from_ms, acb_adverse_exit=layers.acb_adverse_exit,
                              acb_drop=layers.acb_drop, flow=flow, leg_weights=leg_weights,
                              peak_days=cfg.cat5_peak_days, state=state, close_at_end=close_at_end,
                              rolling=rolling, peak_out=rolling_out)
        finally:
            logging.getLogger("dolphin.survival").removeFilter(quiet)
    else:
        res = run_backtest(panel, scans, cfg, risk=risk, funding_dir=funding_dir, trade_from_ms=trade_from_ms,
                           acb_adverse_exit=layers.acb_adverse_exit, acb_drop=layers.acb_drop, flow=flow,
                           leg_weights=leg_weights, state=state, close_at_end=close_at_end)
    res.notes.extend(notes)
    out_carry = {"layers": layers.describe(), "boost": float(boost[-1]), "equity": float(res.equity[-1])}
    if layers.survival:
        out_carry.update(controller=ctrl.to_dict(), peak=rolling_out[0].to_dict(), posture=int(posture[-1]),
                         rm=float(rm[-1]), cats=[float(x) for x in cats[-1]])
    return RiskBacktestResult(res, layers, posture, rm, boost, mc_status, cats, checks, changes,
                              pd.DataFrame(mc_rows, columns=["day", "status", "catastrophic_prob", "history_days"]),
                              notes, description, out_carry)


def _override(b: RmBreakdown, idx: int, value: float, reason: str) -> RmBreakdown:
    vals = [b.cat1, b.cat2, b.cat3, b.cat4, b.cat5]
    vals[idx] = value
    rm = 0.0 if vals[0] == 0.0 else math.prod(vals)
    reasons = dict(b.reasons)
    reasons[CATS[idx]] = reason
    return RmBreakdown(min(1.0, max(0.0, rm)), *vals, reasons=reasons)


class _DropPostureLogs(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("posture ")

"""Where the MC forewarner's daily returns come from: the engine re-run over the recent past for the
current configuration and for parameter-perturbed neighbours of it.

``engine_daily_variants`` simulates the ``lookback_days`` UTC days before ``end_day`` (PAST ONLY: bars
with open time < ``end_day`` 00:00 UTC; their last one closes exactly at midnight) from a flat account
with ``cfg.initial_capital``. Rows of the panel before the window are history only (the engine's
``trade_from_ms``): exactly ``history_bars(cfg)`` of them are used, so the result does not depend on how
far back the caller's panel happens to reach, and nothing at or after ``end_day`` is read.

Variants: row 0 is ``cfg`` itself; rows 1..n-1 multiply four parameters by factors drawn by a Latin
hypercube over [1 - a, 1 + a] (each parameter's range is split into n-1 equal strata, each stratum used
once, in a seeded random order -- so even 7 variants cover every range evenly):

    entry_threshold  a = 10 %   (kept below extreme_threshold, which the config requires)
    max_hold_bars    a = 25 %   (rounded, >= 1 bar)
    take_profit_bps  a = 15 %
    capital_fraction a = 20 %   ("leverage ±20 %": notional = capital_fraction x capital x leverage, so this
                                 scales the exposure the same way; max_leverage itself already sits at the
                                 hard cap abs_max_leverage, which a perturbation must never raise; capped at 1)

Daily returns come from ``dolphin.metrics.daily_table`` on the engine's mark-to-market equity (a day's
end equity / the previous day's - 1; days without a position return 0).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from dolphin.engine.backtest import run_backtest
from dolphin.engine.config import EngineConfig
from dolphin.engine.inputs import RiskInputs
from dolphin.metrics import daily_table
from dolphin.metrics.types import day_label, day_to_ms
from dolphin.timeutil import DAY_MS, fmt_ms

# parameter -> relative half-range of its perturbation
PERTURBATIONS = {"entry_threshold": 0.10, "max_hold_bars": 0.25, "take_profit_bps": 0.15,
                 "capital_fraction": 0.20}
_SHORT = {"entry_threshold": "entry", "max_hold_bars": "hold", "take_profit_bps": "tp", "capital_fraction": "size"}


def history_bars(cfg: EngineConfig) -> int:
    """Bars before the window the engine needs as history: the vol regime's rolling window plus its
    percentile lookback (the regime is not OK before that), the ranking lookback and one bar for the
    vel_div crossing."""
    return cfg.vol_window + cfg.vol_lookback + cfg.rank_lookback + 1


def perturbed_configs(cfg: EngineConfig, n_variants: int, seed: int) -> tuple[list[EngineConfig], list[str]]:
    """``cfg`` plus ``n_variants - 1`` perturbed copies (see the module docstring), with readable names."""
    if n_variants < 1:
        raise ValueError(f"n_variants must be >= 1, got {n_variants}")
    k = n_variants - 1
    rng = np.random.default_rng(seed)
    # Latin hypercube: u[i, j] in stratum perm_j[i] of [0, 1)
    u = np.empty((k, len(PERTURBATIONS)))
    for j in range(len(PERTURBATIONS)):
        u[:, j] = (rng.permutation(k) + rng.random(k)) / max(k, 1)
    cfgs, names = [cfg], ["base"]
    for i in range(k):
        f = {p: 1.0 + a * (2.0 * u[i, j] - 1.0) for j, (p, a) in enumerate(PERTURBATIONS.items())}
        entry = min(cfg.entry_threshold * f["entry_threshold"], cfg.extreme_threshold * 0.999)
        c = replace(cfg,
                    entry_threshold=entry,
                    max_hold_bars=max(1, int(round(cfg.max_hold_bars * f["max_hold_bars"]))),
                    take_profit_bps=cfg.take_profit_bps * f["take_profit_bps"],
                    capital_fraction=min(1.0, cfg.capital_fraction * f["capital_fraction"]))
        cfgs.append(c)
        names.append(f"v{i + 1}: " + " ".join(f"{_SHORT[p]}x{f[p]:.3f}" for p in PERTURBATIONS))
    return cfgs, names


def _slice_risk(risk: RiskInputs | None, lo: int, hi: int, T: int) -> RiskInputs | None:
    if risk is None:
        return None
    risk.check(T)
    return RiskInputs(risk.posture[lo:hi], risk.mc_status[lo:hi], risk.acb_boost[lo:hi], risk.rm[lo:hi],
                      risk.source)


def engine_daily_variants(panel, scans, cfg: EngineConfig, *, end_day, lookback_days: int = 60,
                          n_variants: int = 8, seed: int = 0, risk: RiskInputs | None = None, flow=None,
                          funding_dir=None) -> tuple[np.ndarray, list[str]]:
    """(matrix (n_variants, lookback_days) of daily returns, variant names) for the days
    [end_day - lookback_days, end_day). ``end_day``: 'YYYY-MM-DD', a date or UTC-midnight ms.
    ``scans`` (and ``risk``, if given) are row-aligned with ``panel``. The panel must hold the whole
    window plus ``history_bars(cfg)`` bars before it; bars at or after ``end_day`` are ignored."""
    if lookback_days < 1:
        raise ValueError(f"lookback_days must be >= 1, got {lookback_days}")
    end_ms = day_to_ms(end_day)
    start_ms = end_ms - lookback_days * DAY_MS
    T = panel.n_bars
    if len(scans) != T or not np.array_equal(scans.timestamp, panel.close_time):
        raise ValueError("scans are not row-aligned with the panel (scan timestamp = bar close time)")
    ot = np.asarray(panel.open_time, dtype=np.int64)
    cut = int(np.searchsorted(ot, end_ms, side="left"))  # first bar opening at/after end_day: excluded
    first = int(np.searchsorted(ot, start_ms, side="left"))  # first bar of the window
    if cut == 0 or int(ot[cut - 1]) + panel.bar_ms != end_ms:
        last = fmt_ms(int(ot[cut - 1]) + panel.bar_ms) if cut else "before it starts"
        raise ValueError(f"panel does not reach end_day {day_label(end_ms)}: its last bar before that closes "
                         f"at {last}; the lookback window would be incomplete")
    need = history_bars(cfg)
    if first >= T or int(ot[first]) != start_ms or first < need:
        raise ValueError(f"panel starts at {fmt_ms(int(ot[0]))} UTC: the {lookback_days}-day window from "
                         f"{day_label(start_ms)} needs {need} bars of history before it (from "
                         f"{fmt_ms(start_ms - need * panel.bar_ms)} UTC)")
    lo = first - need
    p = panel.slice_bars(lo, cut)
    p.warmup_bars = 0  # the history rows are handled by trade_from_ms, not the loader's warm-up marker
    s = scans[lo:cut]
    rk = _slice_risk(risk, lo, cut, T)
    trade_from = int(p.close_time[need])
    cfgs, names = perturbed_configs(cfg, n_variants, seed)
    out = np.empty((len(cfgs), lookback_days))
    for i, c in enumerate(cfgs):
        res = run_backtest(p, s, c, risk=rk, flow=flow, funding_dir=funding_dir, trade_from_ms=trade_from,
                           close_at_end=False)
        tr = res.trades[res.trades.entry_bar >= need]
        daily = daily_table(tr, res.ts[need:], res.equity[need:], c.initial_capital)
        if len(daily) != lookback_days or int(daily["day_ms"].iloc[0]) != start_ms:
            raise RuntimeError(f"variant {names[i]}: daily table has {len(daily)} days from "
                               f"{daily['date'].iloc[0] if len(daily) else '-'}, expected {lookback_days} "
                               f"from {day_label(start_ms)}")
        out[i] = daily["return"].to_numpy(dtype=np.float64)
    return out, names

"""Cat5 from the highest equity of the last cat5_peak_days days (DESIGN.md "Survival stack"): the rolling
peak, the runtime's risk source and the engine's risk layer on real data."""

import numpy as np
import pytest

from dolphin.survival.peak import DAY_MS, RollingPeak
from dolphin.survival.stack import SurvivalConfig


def test_rolling_peak_forgets_after_the_window_and_all_time_does_not():
    r, a = RollingPeak(30), RollingPeak(None)
    for day, eq in [(0, 100.0), (1, 80.0), (10, 85.0)]:
        for x in (r, a):
            x.push(day * DAY_MS, eq)
    assert r.peak(10 * DAY_MS) == a.peak(10 * DAY_MS) == 100.0
    # 31 days after the peak, a flat book: the old peak is out of the window, the drawdown recovers
    assert r.drawdown(31 * DAY_MS, 85.0) == 0.0
    assert a.drawdown(31 * DAY_MS, 85.0) == pytest.approx(0.15)
    # the newest sample stays even when older than the window (no mark for a while)
    q = RollingPeak(1)
    q.push(0, 50.0)
    assert q.peak(100 * DAY_MS) == 50.0
    with pytest.raises(ValueError, match="older"):
        q.push(-1, 1.0)
    with pytest.raises(ValueError):
        RollingPeak(-1)


def test_runtime_cat5_uses_the_rolling_peak(tmp_path):
    from datetime import datetime, timezone

    from dolphin.adapters.sqlite_store import EmbeddedStore
    from runtime.risk import StoreRiskSource

    store = EmbeddedStore(tmp_path / "f.sqlite")

    class Book:
        capital = 100_000.0
        symbols = ()

    t0 = int(datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp() * 1000)
    src = StoreRiskSource(store, symbols=(), clock="bar", publish=False, cfg=SurvivalConfig(cat5_peak_days=30))
    try:
        b = Book()
        src.bind(b)
        src.read(t0 * 1_000_000)
        b.capital = 80_000.0
        src.read((t0 + DAY_MS) * 1_000_000)
        assert src.last.breakdown.cat5 < 0.5  # 20 % drawdown
        src.read((t0 + 31 * DAY_MS) * 1_000_000)  # flat for a month: the 100k peak left the window
        assert src.peak == 80_000.0 and src.last.breakdown.cat5 == pytest.approx(SurvivalConfig().mc_base[0] * 0.9168,
                                                                                   abs=1e-3)
    finally:
        src.close()
        store.close()


def test_engine_checks_see_the_rolling_peak_of_the_marks_on_real_data(tmp_path):
    from dolphin.data import load_panel
    from dolphin.engine.config import BLUE
    from dolphin.engine.inputs import RiskInputs
    from dolphin.engine.pipeline import resolve_kline_set, scans_cached
    from dolphin.engine.risklayer import run_chunked

    path = resolve_kline_set("usdtm-5m-2023")
    panel = load_panel(path)
    scans, _ = scans_cached(path, panel, cache_dir=tmp_path)
    cfg = BLUE.with_(capital_fraction=1.0)
    T = panel.n_bars
    checks = np.arange(0, T, 12)
    seen = {1.0: [], 0: []}
    for days in seen:
        run_chunked(panel, scans, cfg, RiskInputs.defaults(T), checks,
                    lambda b, eq, pk, d=days: seen[d].append((b, eq, pk)), peak_days=days or None)
    res = run_chunked(panel, scans, cfg, RiskInputs.defaults(T), checks)
    eq, ct = res.equity, panel.close_time.astype(np.int64)
    assert len(seen[1.0]) > 100 and res.trades.shape[0] > 0
    for b, e, pk in seen[1.0]:
        lo = np.searchsorted(ct, ct[b] - DAY_MS, side="right")
        want = eq[lo:b + 1].max()
        if ct[res.first_bar] - panel.bar_ms > ct[b] - DAY_MS:  # the starting capital is still in the window
            want = max(want, cfg.initial_capital)
        assert pk == pytest.approx(want, rel=1e-12) and e == eq[b]
    for b, e, pk in seen[0]:  # all-time: every earlier close and the starting capital
        assert pk == pytest.approx(max(cfg.initial_capital, eq[res.first_bar:b + 1].max()), rel=1e-12)
    # the two rules differ somewhere on this month (a drawdown older than a day)
    assert any(a[2] < c[2] for a, c in zip(seen[1.0], seen[0]))

"""The risk layer in the backtest (dolphin.engine.risklayer) on REAL spot-5m-2024 bars.

Proves: chunked kernel == one run when nothing changes between chunks; no look-ahead for the full risk
layer (truncation); posture degrades on the engine's own drawdown (Cat5 ~ 0.354 at 15 %); the ACB
adverse-turn exit fires on a drop > 0.2 and not on exactly 0.2 (float rounding); time in posture sums to 1;
the vectorised MC status equals forewarner.effective_status."""

from dataclasses import replace
from datetime import datetime, timezone

import numpy as np
import pytest

from dolphin.acb import adverse_turn
from dolphin.data import load_panel
from dolphin.engine import kernel as K
from dolphin.engine.backtest import run_backtest
from dolphin.engine.config import APEX, BLUE, MC_NAMES, TURTLE
from dolphin.engine.inputs import RiskInputs
from dolphin.engine.risklayer import RiskLayers, check_bars_for, run_chunked, run_risk_backtest
from dolphin.exf.history import ExfHistory
from dolphin.mc.forewarner import effective_status
from dolphin.scanner.core import scan
from dolphin.survival.stack import SurvivalConfig, cat5_drawdown
from dolphin.timeutil import DAY_MS, parse_time
from tests.support.engine import handmade_scans, real_panel

START, END = "2024-01-01", "2024-03-20"
FULL = RiskLayers.preset("full")


@pytest.fixture(scope="module")
def data():
    panel = load_panel("spot-5m-2024", start_ms=parse_time(START), end_ms=parse_time(END))
    scans = scan(panel, int(panel.open_time[0]), None)
    return panel, scans, ExfHistory.load()


@pytest.fixture(scope="module")
def full_run(data):
    panel, scans, exf = data
    rr = run_risk_backtest(panel, scans, BLUE, layers=FULL, exf=exf)
    assert (rr.result.decision != 0).sum() >= 10, "window too quiet to prove anything"
    return rr


def test_chunked_kernel_equals_one_run_when_layers_are_neutral(data):
    panel, scans, _ = data
    one = run_backtest(panel, scans, BLUE)
    risk = RiskInputs.defaults(panel.n_bars)
    for checks in (check_bars_for(panel, None), check_bars_for(panel, 7), np.array([5, 6, 4000, 4001])):
        ch = run_chunked(panel, scans, BLUE, risk, checks, on_check=None)
        assert len(one.trades) > 5
        assert ch.trades.equals(one.trades)
        assert np.array_equal(ch.equity, one.equity)
        assert np.array_equal(ch.decision, one.decision) and np.array_equal(ch.position_asset, one.position_asset)
        assert ch.final_state == one.final_state


def test_chunked_carries_an_open_position_and_state_across_chunks(data):
    """Trades spanning a chunk boundary keep their entry bar/price; leaving a position open matches too."""
    panel, scans, _ = data
    one = run_backtest(panel, scans, BLUE, close_at_end=False)
    tr = one.trades
    spans = tr[(tr.exit_bar - tr.entry_bar) > 3]
    cuts = np.array(sorted(int(e) + 1 for e in spans.entry_bar[:20]))
    ch = run_chunked(panel, scans, BLUE, RiskInputs.defaults(panel.n_bars), cuts, close_at_end=False)
    assert len(cuts) >= 5
    assert ch.trades.equals(tr)
    assert ch.final_state == one.final_state


def _upto(rr, t):
    res = rr.result
    d = res.decisions_frame()
    closed = res.trades[res.trades.exit_bar <= t - 1][["entry_bar", "exit_bar", "asset", "side", "notional",
                                                        "entry_price", "exit_price", "pnl", "exit_reason"]]
    return d[d.ts <= res.ts[t]].reset_index(drop=True), closed.reset_index(drop=True)


def test_full_risk_layer_truncation_does_not_change_the_past(data, full_run):
    panel, scans, exf = data
    rr = full_run
    dec = np.flatnonzero(rr.result.decision)
    rng = np.random.default_rng(5)
    cuts = sorted(set(int(x) for x in rng.choice(dec, 3, replace=False)) | {12_000, 19_000})
    assert len(rr.posture_changes) >= 2  # the layer is actually doing something in this window
    for t in cuts:
        tr = run_risk_backtest(panel.slice_bars(0, t + 1), scans[:t + 1], BLUE, layers=FULL, exf=exf)
        a, b = _upto(rr, t), _upto(tr, t)
        assert len(a[0]) > 0
        assert a[0].equals(b[0]), f"decisions differ after truncating at bar {t}"
        # (an empty trade list has object columns typed float: compare values, not dtypes, when empty)
        assert len(a[1]) == len(b[1]) and (len(a[1]) == 0 or a[1].equals(b[1])), f"closed trades differ at bar {t}"
        assert np.array_equal(rr.result.equity[:t], tr.result.equity[:t])
        for name in ("posture", "rm", "boost", "mc_status", "cats"):
            assert np.array_equal(getattr(rr, name)[:t + 1], getattr(tr, name)[:t + 1]), f"{name} differs at cut {t}"


def test_time_in_posture_sums_to_one(full_run):
    rr = full_run
    T = len(rr.posture)
    for lo, hi in ((None, None), (rr.first_bar, T // 2), (T // 2, T)):
        tip = rr.time_in_posture(lo, hi)
        assert sum(f for f, _ in tip.values()) == pytest.approx(1.0, abs=1e-12)
        n = (hi or T) - (lo if lo is not None else rr.first_bar)
        assert sum(h for _, h in tip.values()) == pytest.approx(n * rr.result.bar_ms / 3_600_000)
    # no-book-stale Cat3 = 0.5 and Cat5 <= 0.917 cap Rm at 0.458: never APEX after the first down-step
    assert rr.time_in_posture()["APEX"][0] < 0.001
    assert rr.cats[rr.first_bar + 10:, 2].max() == 0.5


def test_mc_status_per_bar_matches_effective_status(data, full_run):
    panel, scans, _ = data
    rr = full_run
    # rebuild the published envelope at a few scans and ask the forewarner module what it means
    from dolphin.mc.forewarner import MCConfig
    from dolphin.engine.risklayer import mc_daily_envelopes
    envs = mc_daily_envelopes(panel, scans, BLUE, 0, FULL, MCConfig())
    assert sum(e is None for e in envs.values()) == 1  # only the first day has no past day
    statuses = {e.status for e in envs.values() if e is not None}
    assert statuses  # at least one envelope computed
    refresh = int(FULL.mc_refresh_hours * 3_600_000)
    for i in np.linspace(0, panel.n_bars - 1, 60).astype(int):
        now = int(panel.close_time[i])
        d = now // DAY_MS * DAY_MS
        env = envs[d]
        pub = d + (now - d) // refresh * refresh
        e = None if env is None else replace(env, timestamp=datetime.fromtimestamp(pub / 1000, timezone.utc))
        assert MC_NAMES[rr.mc_status[i]] == effective_status(e, now)[0], f"bar {i}"


def test_mc_once_a_day_goes_stale_after_six_hours(data):
    """mc_refresh_hours=24: the 00:00 envelope ages all day; from 06:00 (exclusive) it counts as ORANGE and
    Cat2 decays (the staleness rule as written)."""
    panel, scans, exf = data
    p, s = panel.slice_bars(0, 288 * 30), scans[:288 * 30]
    rr = run_risk_backtest(p, s, BLUE, layers=replace(FULL, mc_refresh_hours=24.0), exf=exf)
    hour = (np.asarray(p.close_time) % DAY_MS) / 3_600_000
    late = (hour > 6.0) & (rr.mc_status != 2)
    assert late.any() and (rr.mc_status[late] == 1).all()
    # Cat2 in force after a check at 09:00 and later = 0.5 * exp(-(age - 6) / 3) < 0.5
    after9 = (hour > 9.2) & (np.arange(p.n_bars) > 288 * 2)
    assert (rr.cats[after9, 1] < 0.5 * np.exp(-1.0) + 1e-12).all()


def test_posture_degrades_on_engine_drawdown_synthetic_signals():
    """Synthetic signals (a SHORT crossing every 24 bars) on REAL BTC bars of the late-Feb-2024 rally: the
    engine loses, and the survival stack must see its own drawdown: Cat5 = 1/(1+e^(20(dd-0.12))), ~0.354 at
    15 %, and a target below STALKER for 2 checks steps the posture down to TURTLE; no entry while TURTLE."""
    panel = real_panel(("BTCUSDT", "ETHUSDT"), start=16_128, n=2_200)
    T = panel.n_bars
    vd = np.zeros(T)
    vd[np.arange(30, T, 24)] = -0.09  # crosses -entry_threshold at full strength
    scans = handmade_scans(panel, vd)
    cfg = replace(BLUE, vol_gate=False, capital_fraction=1.0, take_profit_bps=2_000.0, max_hold_bars=400)
    layers = RiskLayers(survival=True, cat3_mode="not_modelled", check_every_bars=2)
    rr = run_risk_backtest(panel, scans, cfg, layers=layers, exf=None, dvol=(np.zeros(0, np.int64), np.zeros(0)))
    eq = rr.result.equity
    peak = np.maximum.accumulate(np.r_[cfg.initial_capital, eq])[1:]
    dd = 1 - eq / peak
    assert dd.max() > 0.15, "scenario did not draw down enough"
    assert cat5_drawdown(0.15, SurvivalConfig())[0] == pytest.approx(0.3543, abs=1e-4)
    checks = rr.check_bars
    # Cat5 in force after each check is computed from the engine's drawdown at that check's close
    for c in checks[checks < T - 1]:
        assert rr.cats[c + 1, 4] == pytest.approx(cat5_drawdown(float(dd[c]), SurvivalConfig())[0], abs=1e-12)
    over = checks[(dd[checks] >= 0.15) & (checks < T - 3)]
    assert len(over) >= 2
    first = int(over[0])
    # Rm = Cat5 <= 0.354 < 0.40 from that check on: two checks later the posture is TURTLE or worse
    nxt = checks[checks > first][1]
    assert rr.posture[nxt + 1] >= TURTLE
    assert rr.posture[: first + 1].min() == APEX
    ch = [c for c in rr.posture_changes if c["to"] in ("TURTLE", "HIBERNATE")]
    assert ch and ch[0]["drawdown"] > 0.12
    entries = np.isin(rr.result.decision, (K.D_ENTER_SHORT, K.D_ENTER_LONG))
    assert not (entries & (rr.posture >= TURTLE)).any()


@pytest.mark.parametrize("entry_boost,boost,fires", [(0.9, 0.7, False), (1.2, 1.0, False), (1.4, 1.2, False),
                                                     (0.9, 0.69, True), (1.3, 1.0, True)])
def test_adverse_turn_exit_fires_only_beyond_the_drop(entry_boost, boost, fires):
    """Scripted boost: the position is entered at ``entry_boost`` then the boost steps to ``boost``; a drop of
    exactly 0.2 (up to float rounding: 0.9 - 0.7 = 0.20000000000000007) never exits."""
    assert adverse_turn(entry_boost, boost, True) is fires  # kernel and dolphin.acb agree
    panel = real_panel(("BTCUSDT", "ETHUSDT"), start=0, n=300)
    T = panel.n_bars
    vd = np.zeros(T)
    vd[50] = -0.09
    scans = handmade_scans(panel, vd)
    cfg = replace(BLUE, vol_gate=False, take_profit_bps=5_000.0, max_hold_bars=200)
    b = np.full(T, entry_boost)
    b[80:] = boost
    risk = RiskInputs(np.full(T, APEX, np.int64), np.zeros(T, np.int64), b, np.ones(T), "scripted")
    res = run_backtest(panel, scans, cfg, risk=risk, acb_adverse_exit=True)
    assert len(res.trades) == 1 and int(res.trades.entry_bar[0]) == 51
    if fires:
        assert res.trades.exit_reason[0] == "acb_adverse_turn" and int(res.trades.exit_bar[0]) == 81
        assert res.decision[80] == K.D_EXIT_ACB
    else:
        assert res.trades.exit_reason[0] == "max_hold"
        assert not (res.decision == K.D_EXIT_ACB).any()
    off = run_backtest(panel, scans, cfg, risk=risk)  # the switch off: never an ACB exit
    assert off.trades.exit_reason[0] == "max_hold"


def test_risk_layers_validate_their_inputs():
    with pytest.raises(ValueError, match="cat3_mode"):
        RiskLayers(cat3_mode="guess")
    with pytest.raises(ValueError, match="acb_adverse_exit needs acb"):
        RiskLayers(acb_adverse_exit=True)
    with pytest.raises(ValueError, match="check_every_bars"):
        RiskLayers(check_every_bars=0)
    with pytest.raises(ValueError, match="preset"):
        RiskLayers.preset("max")


def test_pipeline_and_report_risk_layer_section(tmp_path):
    """`dolphin backtest --risk-layer full` path: warm-up rows stay history (posture/MC only from the first
    traded bar), the HTML report gains a risk-layer section; without a risk layer it has none."""
    from dolphin.engine import pipeline
    from dolphin.engine.report_data import report_data, risk_layer_table
    from dolphin.report.html import render

    kw = dict(start_ms=parse_time("2024-07-01"), end_ms=parse_time("2024-07-20") + DAY_MS - 1,
              cache_dir=tmp_path / "cache", split=0.6)
    r = pipeline.run("spot-5m-2024", BLUE, risk_layer="full", **kw)
    rr = r.risk_run
    lo = r.panel.warmup_bars
    assert lo > 0 and rr.first_bar == lo and rr.check_bars.min() >= lo
    assert (r.result.trades.entry_bar >= lo).all()
    tip = rr.time_in_posture(*r.periods["Out-of-sample"]["bars"])
    assert sum(f for f, _ in tip.values()) == pytest.approx(1.0)
    html = render(report_data(r, "t"))
    assert 'id="risk-posture"' in html and 'id="risk-boost"' in html and "cat3_mode no_book_stale" in html
    assert "Cat3 = 0.5" in html and "posture changes" in risk_layer_table(r)
    plain = pipeline.run("spot-5m-2024", BLUE, **kw)
    assert plain.risk_run is None and 'id="risk-posture"' not in render(report_data(plain, "t"))
    with pytest.raises(ValueError, match="either risk"):
        pipeline.run("spot-5m-2024", BLUE, risk_layer="acb", risk=RiskInputs.defaults(1), **kw)

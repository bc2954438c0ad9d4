"""Survival stack (DESIGN.md "Survival stack"; the seeds' MIG3 tests adapted to dolphin.survival's API),
posture hysteresis, DOLPHIN_SAFETY publishing, and the DVOL spike detector on real dvol_btc.csv."""

import json
import logging
import math
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from dolphin.engine.config import APEX, GREEN, HIBERNATE, ORANGE, RED, STALKER, TURTLE
from dolphin.paths import data_root
from dolphin.store import SAFETY, Record, StoreUnavailableError
from dolphin.adapters.sqlite_store import EmbeddedStore
from dolphin.survival import (PostureController, RmBreakdown, SurvivalConfig, SurvivalInputError, SurvivalInputs,
                              cat2_mc, cat3_microstructure, cat4_dvol, cat5_drawdown, compute_rm, posture_for,
                              publish_safety, read_safety, safety_record)
from dolphin.survival.dvol import DvolConfig, DvolDataError, DvolSpikeDetector, detect_spikes, load_dvol_csv
from dolphin.timeutil import DAY_MS, day_str

CFG = SurvivalConfig()
T0 = datetime(2024, 3, 1, tzinfo=timezone.utc)


def inputs(**kw) -> SurvivalInputs:
    """Every category at its best; drawdown 3 % as in the seeds' all-green test."""
    base = dict(store_reachable=True, heartbeat_age_s=1.0, mc_status=GREEN, mc_age_hours=0.5,
                ob_depth_quality=1.0, ob_fill_prob=1.0, ob_age_s=1.0, minutes_since_dvol_spike=None, drawdown=0.03)
    base.update(kw)
    return SurvivalInputs(**base)


def bd(rm: float, cat1: float = 1.0) -> RmBreakdown:
    """A breakdown carrying a given Rm (Cat2 holds it), for driving the controller directly."""
    return RmBreakdown(rm if cat1 else 0.0, cat1, rm, 1.0, 1.0, 1.0, {"Cat2": "test"})


def run(ctrl: PostureController, rms, start: int = 0):
    return [ctrl.update(bd(r), T0 + timedelta(minutes=start + i)) for i, r in enumerate(rms)]


# ------------------------------------------------------------------ the seeds' MIG3 tests


def test_rm_all_green_is_apex():
    b = compute_rm(inputs())
    assert (b.cat1, b.cat2, b.cat3, b.cat4) == (1.0, 1.0, 1.0, 1.0)
    assert b.cat5 == pytest.approx(1 / (1 + math.exp(20 * (0.03 - 0.12))), rel=1e-12)
    assert b.rm == pytest.approx(b.cat5, rel=1e-12)
    assert posture_for(b.rm) == APEX


def test_rm_ceiling_is_cat5_at_zero_drawdown():
    # DESIGN.md's literal sigmoid caps Rm at Cat5(0) = 0.9168, so the seeds' "Rm >= 0.95" cannot hold;
    # and APEX needs drawdown <= 3.327 %.
    best = compute_rm(inputs(drawdown=0.0))
    assert best.rm == pytest.approx(1 / (1 + math.exp(-2.4)), rel=1e-12)
    assert 0.9168 < best.rm < 0.9169
    dd_apex = 0.12 + math.log(1 / 0.85 - 1) / 20  # Cat5(dd) = 0.85 at dd = 3.327 %
    assert 0.03326 < dd_apex < 0.03328
    assert posture_for(compute_rm(inputs(drawdown=dd_apex - 1e-9)).rm) == APEX
    assert posture_for(compute_rm(inputs(drawdown=dd_apex + 1e-9)).rm) == STALKER


def test_seed_all_green_inputs_land_in_stalker_under_design_formulas():
    # the seeds' "all green" (depth 0.9, fill 0.8, DD 3 %) with DESIGN.md's Cat3 clip formula: 0.86 x 0.858
    b = compute_rm(inputs(ob_depth_quality=0.9, ob_fill_prob=0.8, minutes_since_dvol_spike=999.0))
    assert b.cat3 == pytest.approx(0.86, abs=1e-12)
    assert b.rm == pytest.approx(0.86 * b.cat4 * b.cat5, rel=1e-12)
    assert posture_for(b.rm) == STALKER


def test_store_down_is_rm_zero_and_hibernate_at_once():
    b = compute_rm(inputs(store_reachable=False))
    assert b.rm == 0.0 and b.cat1 == 0.0 and b.reasons["Cat1"] == "store unreachable"
    ctrl = PostureController(CFG, initial=APEX)
    d = ctrl.update(b, T0)
    assert d.posture == HIBERNATE and d.changed and d.invariant_kill and d.previous == APEX
    assert (d.pending_direction, d.pending_count) == (None, 0)


@pytest.mark.parametrize("age,cat1", [(0.0, 1.0), (30.0, 1.0), (30.001, 0.0), (3600.0, 0.0), (None, 0.0)])
def test_cat1_heartbeat_boundary(age, cat1):
    b = compute_rm(inputs(heartbeat_age_s=age))
    assert b.cat1 == cat1
    if cat1 == 0.0:
        assert b.rm == 0.0 and "heartbeat" in b.reasons["Cat1"]


def test_cat5_drawdown_sigmoid():
    assert 0.4 <= cat5_drawdown(0.12, CFG)[0] <= 0.6
    assert cat5_drawdown(0.12, CFG)[0] == pytest.approx(0.5, abs=1e-15)
    assert cat5_drawdown(0.15, CFG)[0] == pytest.approx(0.35434, abs=1e-5)
    assert cat5_drawdown(1.0, CFG)[0] == pytest.approx(1 / (1 + math.exp(17.6)), rel=1e-12)


def test_cat4_dvol_impulse_decay_time_constant():
    assert cat4_dvol(0.0, CFG)[0] == pytest.approx(0.3, abs=1e-15)
    assert CFG.dvol_tau_min == 20.0  # 60-min recovery = 3 time constants
    v60 = cat4_dvol(60.0, CFG)[0]
    assert v60 >= 0.9 and v60 == pytest.approx(0.3 + 0.7 * (1 - math.exp(-3)), rel=1e-12)
    # the seeds' tau = 60 min would miss their own >= 0.9 at 60 min; tau <= 60/ln 7 is the bound
    assert cat4_dvol(60.0, replace(CFG, dvol_recovery_time_constants=1.0))[0] == pytest.approx(0.742, abs=1e-3)
    assert 60 / math.log(7) > CFG.dvol_tau_min
    assert cat4_dvol(None, CFG)[0] == 1.0


def test_hysteresis_prevents_oscillation():
    for initial in (APEX, STALKER):
        ctrl = PostureController(CFG, initial=initial)
        postures = [d.posture for d in run(ctrl, [0.84, 0.86, 0.84, 0.86, 0.84])]
        assert postures == [initial] * 5 and ctrl.changes == []


def test_posture_written_to_safety_and_read_back(tmp_path):
    store = EmbeddedStore(tmp_path / "features.sqlite")
    assert read_safety(store) is None
    b = compute_rm(inputs(mc_status=ORANGE))
    d = PostureController(CFG).update(b, T0)
    assert publish_safety(store, d)
    got = read_safety(store)
    assert got.posture == APEX and got.rm == pytest.approx(b.rm, rel=1e-15)
    assert got.breakdown == {"Cat1": 1.0, "Cat2": 0.5, "Cat3": 1.0, "Cat4": 1.0, "Cat5": b.cat5}
    rec = store.get(SAFETY, "latest")
    assert rec.timestamp == "2024-03-01T00:00:00.000Z"
    assert rec.value["previous"] == "APEX" and rec.value["changed"] is False
    assert rec.value["reasons"]["Cat2"].startswith("MC ORANGE")
    # an older decision never overwrites a newer one; a newer one does
    old = replace(d, ts=T0 - timedelta(seconds=1), rm=0.01)
    assert not publish_safety(store, old) and read_safety(store).rm == pytest.approx(b.rm)
    new = PostureController(CFG).update(compute_rm(inputs(store_reachable=False)), T0 + timedelta(seconds=1))
    assert publish_safety(store, new)
    assert read_safety(store) == (HIBERNATE, 0.0, {"Cat1": 0.0, "Cat2": 1.0, "Cat3": 1.0, "Cat4": 1.0,
                                                   "Cat5": b.cat5})
    store.close()


def test_publish_safety_store_gone_raises(tmp_path):
    store = EmbeddedStore(tmp_path / "features.sqlite")
    for f in tmp_path.glob("features.sqlite*"):
        f.unlink()
    d = PostureController(CFG).update(compute_rm(inputs()), T0)
    with pytest.raises(StoreUnavailableError):
        publish_safety(store, d)
    with pytest.raises(StoreUnavailableError):
        read_safety(store)


def test_read_safety_rejects_malformed_record(tmp_path):
    store = EmbeddedStore(tmp_path / "features.sqlite")
    store.put(SAFETY, "latest", Record({"posture": "YOLO", "Rm": 0.5, "breakdown": {}}, "2024-03-01T00:00:00Z"))
    with pytest.raises(ValueError, match="DOLPHIN_SAFETY/latest.*YOLO"):
        read_safety(store)
    store.put(SAFETY, "latest", Record({"posture": "APEX", "Rm": 1.5, "breakdown": {}}, "2024-03-01T00:00:00Z"))
    with pytest.raises(ValueError, match="Rm 1.5"):
        read_safety(store)
    store.put(SAFETY, "latest", Record({"posture": "APEX", "Rm": 0.5, "breakdown": {"Cat1": 1}},
                                       "2024-03-01T00:00:00Z"))
    with pytest.raises(ValueError, match="breakdown"):
        read_safety(store)
    store.close()


# ------------------------------------------------------------------ hysteresis


def test_step_down_after_exactly_two_checks():
    ctrl = PostureController(CFG, initial=APEX)
    d1 = ctrl.update(bd(0.5), T0)
    assert d1.posture == APEX and not d1.changed and (d1.pending_direction, d1.pending_count) == ("down", 1)
    d2 = ctrl.update(bd(0.5), T0 + timedelta(minutes=1))
    assert d2.posture == STALKER and d2.changed and d2.previous == APEX and d2.pending_count == 0


def test_step_up_after_exactly_five_checks():
    ctrl = PostureController(CFG, initial=TURTLE)
    ds = run(ctrl, [0.9] * 5)
    assert [d.posture for d in ds[:4]] == [TURTLE] * 4 and [d.pending_count for d in ds[:4]] == [1, 2, 3, 4]
    assert ds[4].posture == APEX and ds[4].changed


def test_interrupted_runs_reset_the_counter():
    ctrl = PostureController(CFG, initial=APEX)
    assert [d.posture for d in run(ctrl, [0.5, 0.9, 0.5, 0.9, 0.5])] == [APEX] * 5
    ctrl = PostureController(CFG, initial=STALKER)
    # 4 up, one agreeing check, 4 up: never 5 in a row
    assert {d.posture for d in run(ctrl, [0.9] * 4 + [0.5] + [0.9] * 4)} == {STALKER}
    assert ctrl.pending_count == 4
    d = ctrl.update(bd(0.9), T0 + timedelta(hours=1))
    assert d.posture == APEX
    # an opposite-direction check restarts the run in its own direction
    ctrl = PostureController(CFG, initial=STALKER)
    ds = run(ctrl, [0.9, 0.9, 0.9, 0.2])
    assert (ds[-1].posture, ds[-1].pending_direction, ds[-1].pending_count) == (STALKER, "down", 1)


def test_step_goes_straight_to_the_mildest_agreed_target():
    ctrl = PostureController(CFG, initial=APEX)
    assert run(ctrl, [0.05, 0.05])[-1].posture == HIBERNATE  # two checks, not six
    ctrl = PostureController(CFG, initial=APEX)
    assert run(ctrl, [0.2, 0.5])[-1].posture == STALKER  # both checks were at least STALKER-bad
    ctrl = PostureController(CFG, initial=HIBERNATE)
    assert run(ctrl, [0.9, 0.9, 0.5, 0.9, 0.9])[-1].posture == STALKER  # least improved of the run


def test_cat1_kill_bypasses_hysteresis_but_recovery_does_not():
    ctrl = PostureController(CFG, initial=APEX)
    d = ctrl.update(compute_rm(inputs(heartbeat_age_s=31.0)), T0)
    assert d.posture == HIBERNATE and d.invariant_kill
    ok = compute_rm(inputs(drawdown=0.0))
    ds = [ctrl.update(ok, T0 + timedelta(minutes=i + 1)) for i in range(5)]
    assert [x.posture for x in ds] == [HIBERNATE] * 4 + [APEX]
    # an Rm of 0.05 with Cat1 = 1 is NOT a kill: it needs 2 checks
    d = ctrl.update(bd(0.05), T0 + timedelta(minutes=10))
    assert d.posture == APEX and not d.invariant_kill


def test_controller_state_survives_restart():
    rms = [0.5, 0.5, 0.9, 0.9, 0.9, 0.2, 0.9, 0.9, 0.9, 0.9, 0.9, 0.05, 0.05]
    ref = PostureController(CFG)
    expected = [d.posture for d in run(ref, rms)]
    for cut in range(1, len(rms)):
        a = PostureController(CFG)
        first = [d.posture for d in run(a, rms[:cut])]
        state = json.loads(json.dumps(a.to_dict()))
        b = PostureController.from_dict(state, CFG)
        rest = [d.posture for d in run(b, rms[cut:], start=cut)]
        assert first + rest == expected, cut
    assert expected[1] == STALKER and expected[-1] == HIBERNATE  # the sequence exercises both directions


def test_controller_state_rejects_bad_or_mismatched_state():
    good = PostureController(CFG).to_dict()
    with pytest.raises(SurvivalInputError, match="posture 'NAP'"):
        PostureController.from_dict({**good, "posture": "NAP"}, CFG)
    with pytest.raises(SurvivalInputError, match="missing field 'pending_count'"):
        PostureController.from_dict({k: v for k, v in good.items() if k != "pending_count"}, CFG)
    with pytest.raises(SurvivalInputError, match="inconsistent"):
        PostureController.from_dict({**good, "pending_direction": "down", "pending_count": 0}, CFG)
    with pytest.raises(SurvivalInputError, match="checks_down/up"):
        PostureController.from_dict(good, replace(CFG, checks_up=3))


def test_controller_rejects_backwards_or_naive_time():
    ctrl = PostureController(CFG)
    ctrl.update(bd(0.9), T0)
    with pytest.raises(SurvivalInputError, match="before the previous check"):
        ctrl.update(bd(0.9), T0 - timedelta(seconds=1))
    with pytest.raises(SurvivalInputError, match="naive"):
        ctrl.update(bd(0.9), datetime(2024, 3, 2))


def test_posture_changes_are_logged_with_breakdown(caplog):
    ctrl = PostureController(CFG, initial=APEX)
    b = compute_rm(inputs(mc_status=RED, mc_age_hours=1.0))
    with caplog.at_level(logging.INFO, logger="dolphin.survival"):
        ctrl.update(b, T0)
        assert caplog.records == []  # first check of a run: no change, no log
        ctrl.update(b, T0 + timedelta(minutes=1))
    (rec,) = caplog.records
    msg = rec.getMessage()
    assert rec.name == "dolphin.survival" and rec.levelno == logging.WARNING
    assert "APEX -> HIBERNATE" in msg
    for k in ("Cat1=1.000", "Cat2=0.100", "Cat3=1.000", "Cat4=1.000", f"Cat5={b.cat5:.3f}", "MC RED"):
        assert k in msg, k
    assert rec.survival == safety_record(ctrl.changes[0]) and len(ctrl.changes) == 1


# ------------------------------------------------------------------ categories and boundaries


def test_mc_staleness_decays():
    assert cat2_mc(GREEN, 6.0, CFG)[0] == 1.0
    # past 6 h a status counts as (at most) ORANGE, then decays with a 3 h constant
    assert cat2_mc(GREEN, 6.0 + 1e-9, CFG)[0] == pytest.approx(0.5, rel=1e-8)
    assert cat2_mc(GREEN, 9.0, CFG)[0] == pytest.approx(0.5 * math.exp(-1), rel=1e-12)
    assert cat2_mc(ORANGE, 12.0, CFG)[0] == pytest.approx(0.5 * math.exp(-2), rel=1e-12)
    assert cat2_mc(RED, 12.0, CFG)[0] == pytest.approx(0.1 * math.exp(-2), rel=1e-12)
    assert "stale" in cat2_mc(GREEN, 9.0, CFG)[1]
    assert cat2_mc(None, None, CFG) == (0.5, "MC status missing: counted as ORANGE (no age to decay from)")
    assert cat2_mc(GREEN, None, CFG)[0] == 0.5 and cat2_mc(RED, None, CFG)[0] == 0.1
    a, b = compute_rm(inputs(mc_age_hours=7.0)), compute_rm(inputs(mc_age_hours=10.0))
    assert b.rm < a.rm < compute_rm(inputs(mc_age_hours=6.0)).rm


def test_mc_red_and_posture_boundaries_exact():
    assert cat2_mc(RED, 0.5, CFG)[0] == 0.1
    assert posture_for(0.1) == TURTLE and posture_for(np.nextafter(0.1, 0)) == HIBERNATE
    assert posture_for(0.4) == STALKER and posture_for(np.nextafter(0.4, 0)) == TURTLE
    assert posture_for(0.85) == APEX and posture_for(np.nextafter(0.85, 0)) == STALKER
    assert posture_for(0.0) == HIBERNATE and posture_for(1.0) == APEX
    # with DESIGN.md's Cat5 (< 1 even at zero drawdown) a fresh RED alone is Rm 0.0917: HIBERNATE, not TURTLE
    red = compute_rm(inputs(mc_status=RED, drawdown=0.0))
    assert red.rm == pytest.approx(0.1 * 0.91682730, rel=1e-7) and posture_for(red.rm) == HIBERNATE
    assert red.rm <= 0.1


def test_cat3_microstructure():
    assert cat3_microstructure(0.9, 0.8, 5.0, CFG)[0] == pytest.approx(0.86)
    assert cat3_microstructure(0.1, 0.9, 5.0, CFG)[0] == pytest.approx(0.37)
    assert cat3_microstructure(0.0, 0.9, 5.0, CFG)[0] == 0.3
    assert cat3_microstructure(1.0, 1.0, 30.0, CFG)[0] == 1.0  # 30 s is still fresh
    assert cat3_microstructure(1.0, 1.0, 30.001, CFG) == (0.5, "order book stale (30.0 s > 30 s)")
    assert cat3_microstructure(None, None, None, CFG)[0] == 0.5
    assert cat3_microstructure(0.9, None, 1.0, CFG)[0] == 0.5
    assert "absent" in compute_rm(inputs(ob_age_s=None)).reasons["Cat3"]


@pytest.mark.parametrize("field,value,match", [
    ("drawdown", -0.01, "drawdown must be a fraction in \\[0, 1\\]"),
    ("drawdown", 1.01, "drawdown must be a fraction"),
    ("drawdown", float("nan"), "drawdown must be finite"),
    ("drawdown", None, "drawdown is required"),
    ("heartbeat_age_s", float("nan"), "heartbeat_age_s must be finite"),
    ("mc_age_hours", float("inf"), "mc_age_hours must be finite"),
    ("mc_status", 3, "mc_status must be GREEN/ORANGE/RED"),
    ("mc_status", 1.0, "mc_status must be GREEN/ORANGE/RED"),
    ("mc_status", True, "mc_status"),
    ("ob_depth_quality", 1.5, "ob_depth_quality must be in \\[0, 1\\]"),
    ("ob_fill_prob", "0.5", "ob_fill_prob must be a number"),
    ("store_reachable", 1, "store_reachable must be a bool"),
])
def test_bad_inputs_rejected_clearly(field, value, match):
    with pytest.raises(SurvivalInputError, match=match):
        inputs(**{field: value})


def test_negative_ages_clock_skew():
    assert compute_rm(inputs(heartbeat_age_s=-1.5)).cat1 == 1.0  # within the 2 s skew tolerance
    with pytest.raises(SurvivalInputError, match="heartbeat_age_s = -5.0 is negative"):
        compute_rm(inputs(heartbeat_age_s=-5.0))
    with pytest.raises(SurvivalInputError, match="minutes_since_dvol_spike"):
        compute_rm(inputs(minutes_since_dvol_spike=-1.0))


# ------------------------------------------------------------------ DVOL spikes on real data


@pytest.fixture(scope="module")
def dvol():
    return load_dvol_csv(data_root() / "exf" / "dvol_btc.csv")


def _spikes_independent(t, v, window_days=30, k=2.0, min_obs=20):
    s = pd.Series(v, index=pd.to_datetime(t, unit="ms", utc=True))
    # pandas time window "30D" with closed="left" is [t - 30 d, t): the 30 days before, excluding t
    roll = s.rolling(f"{window_days}D", closed="left")
    m, sd, n = roll.mean(), roll.std(ddof=1), roll.count()
    hit = (n >= min_obs) & (s > m + k * sd)
    return [int(x) for x in t[hit.to_numpy()]]


def test_dvol_spikes_on_real_data(dvol):
    t, v = dvol
    found = detect_spikes(t, v)
    assert found == _spikes_independent(t, v)
    days = [day_str(x) for x in found]
    print(f"{len(days)} DVOL spike days of {len(t)}: {days}")
    assert "2023-03-13" in days  # SVB weekend: DVOL close 48 -> 70
    for ts in found:
        i = int(np.searchsorted(t, ts))
        prev = v[(t >= ts - 30 * DAY_MS) & (t < ts)]
        assert len(prev) >= 20 and v[i] > prev.mean() + 2 * prev.std(ddof=1)


def test_dvol_spikes_no_lookahead_truncation(dvol):
    t, v = dvol
    full = detect_spikes(t, v)
    for cut in (25, 130, 400, 401, 402, 777, len(t) - 1):
        assert detect_spikes(t[:cut], v[:cut]) == [s for s in full if s <= t[cut - 1]], cut
    a, b = DvolSpikeDetector(), DvolSpikeDetector()
    for x, y in zip(t, v):
        a.update(int(x), float(y))
    for x, y in zip(t[:400], v[:400]):
        b.update(int(x), float(y))
    # what the truncated run says at t[399] is what the full history says about that instant
    last_before = max(s for s in full if s <= t[399])
    assert b.minutes_since_spike(int(t[399])) == (t[399] - last_before) / 60_000
    with pytest.raises(DvolDataError, match="look-ahead"):
        a.minutes_since_spike(int(t[399]))


def test_dvol_synthetic_intraday_spike_feeds_cat4():
    # smooth hourly series (a weekly swing of +-2 around 50): never beyond mean + 2 sigma, then a jump
    det = DvolSpikeDetector()
    start = int(T0.timestamp() * 1000)
    hour = 3_600_000
    for i in range(31 * 24):
        assert not det.update(start + i * hour, 50.0 + 2.0 * math.sin(2 * math.pi * i / (24 * 7))), i
    assert det.minutes_since_spike(start + 31 * 24 * hour) is None
    t_spike = start + 31 * 24 * hour
    assert det.update(t_spike, 60.0)
    assert det.minutes_since_spike(t_spike) == 0.0
    assert cat4_dvol(det.minutes_since_spike(t_spike), CFG)[0] == pytest.approx(0.3)
    assert det.minutes_since_spike(t_spike + 60 * 60_000) == 60.0
    assert compute_rm(inputs(minutes_since_dvol_spike=det.minutes_since_spike(t_spike + 3_600_000))).cat4 >= 0.9


def test_dvol_bad_input(tmp_path):
    det = DvolSpikeDetector()
    det.update(1_700_000_000_000, 50.0)
    with pytest.raises(DvolDataError, match="not after the previous"):
        det.update(1_700_000_000_000, 51.0)
    with pytest.raises(DvolDataError, match="finite positive"):
        det.update(1_700_000_100_000, float("nan"))
    p = tmp_path / "dvol.csv"
    p.write_text("time,value\n2024-01-01T00:00:00Z,50\n2024-01-02T00:00:00Z,abc\n")
    with pytest.raises(DvolDataError, match=r"dvol.csv:3 \(2024-01-02T00:00:00Z\): value 'abc'"):
        load_dvol_csv(p)
    p.write_text("time,value\n2024-01-02T00:00:00Z,50\n2024-01-01T00:00:00Z,51\n")
    with pytest.raises(DvolDataError, match="dvol.csv:3.*not after"):
        load_dvol_csv(p)
    with pytest.raises(ValueError):
        DvolConfig(min_obs=1)

"""Property tests (hypothesis) for the survival stack: bounds, monotonicity, hysteresis."""

from dataclasses import replace
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings, strategies as st

from dolphin.engine.config import APEX, GREEN, HIBERNATE, ORANGE, RED
from dolphin.survival import (PostureController, RmBreakdown, SurvivalConfig, SurvivalInputs, cat4_dvol, compute_rm,
                              posture_for)

CFG = SurvivalConfig()
T0 = datetime(2024, 3, 1, tzinfo=timezone.utc)
SETTINGS = settings(max_examples=300, deadline=None, derandomize=True)

unit = st.floats(0.0, 1.0, allow_nan=False)
age_s = st.floats(0.0, 1e6, allow_nan=False)
age_h = st.floats(0.0, 1e4, allow_nan=False)


@st.composite
def survival_inputs(draw) -> SurvivalInputs:
    return SurvivalInputs(
        store_reachable=draw(st.booleans()),
        heartbeat_age_s=draw(st.none() | age_s),
        mc_status=draw(st.none() | st.sampled_from([GREEN, ORANGE, RED])),
        mc_age_hours=draw(st.none() | age_h),
        ob_depth_quality=draw(st.none() | unit),
        ob_fill_prob=draw(st.none() | unit),
        ob_age_s=draw(st.none() | age_s),
        minutes_since_dvol_spike=draw(st.none() | st.floats(0.0, 1e7, allow_nan=False)),
        drawdown=draw(unit),
    )


@SETTINGS
@given(survival_inputs())
def test_rm_in_unit_interval_and_is_the_product(x):
    b = compute_rm(x)
    assert 0.0 <= b.rm <= 1.0
    for c in (b.cat1, b.cat2, b.cat3, b.cat4, b.cat5):
        assert 0.0 <= c <= 1.0
    assert b.rm == b.cat1 * b.cat2 * b.cat3 * b.cat4 * b.cat5 or b.cat1 == 0.0 == b.rm


@SETTINGS
@given(survival_inputs(), unit, unit)
def test_rm_non_increasing_in_drawdown(x, d1, d2):
    lo, hi = sorted((d1, d2))
    assert compute_rm(replace(x, drawdown=hi)).rm <= compute_rm(replace(x, drawdown=lo)).rm


@SETTINGS
@given(survival_inputs(), age_h, age_h)
def test_rm_non_increasing_in_mc_staleness(x, a1, a2):
    lo, hi = sorted((a1, a2))
    assert compute_rm(replace(x, mc_age_hours=hi)).rm <= compute_rm(replace(x, mc_age_hours=lo)).rm


@SETTINGS
@given(survival_inputs(), age_s, age_s)
def test_rm_non_increasing_in_heartbeat_age(x, a1, a2):
    lo, hi = sorted((a1, a2))
    assert compute_rm(replace(x, heartbeat_age_s=hi)).rm <= compute_rm(replace(x, heartbeat_age_s=lo)).rm


@SETTINGS
@given(unit, unit)
def test_posture_for_monotone_in_rm(r1, r2):
    lo, hi = sorted((r1, r2))
    assert posture_for(hi) <= posture_for(lo)  # lower code = more risk allowed


@SETTINGS
@given(st.floats(0.0, 1e6, allow_nan=False), st.floats(0.0, 1e6, allow_nan=False))
def test_cat4_non_decreasing_in_time_since_spike(t1, t2):
    lo, hi = sorted((t1, t2))
    assert cat4_dvol(lo, CFG)[0] <= cat4_dvol(hi, CFG)[0]
    assert CFG.dvol_floor <= cat4_dvol(lo, CFG)[0] <= 1.0


@SETTINGS
@given(st.sampled_from(range(4)), st.lists(unit, max_size=8), survival_inputs())
def test_single_check_never_changes_posture_unless_cat1_zero(initial, history, x):
    """From any state a run of checks can leave behind, one check moves the posture only if it ends a
    run of the required length (so a fresh run never moves on its first check) or Cat1 = 0."""
    ctrl = PostureController(CFG, initial=initial)
    for i, r in enumerate(history):
        ctrl.update(RmBreakdown(r, 1.0, r, 1.0, 1.0, 1.0, {}), T0 + timedelta(minutes=i))
    before, direction, count = ctrl.posture, ctrl.pending_direction, ctrl.pending_count
    b = compute_rm(x)
    d = ctrl.update(b, T0 + timedelta(hours=1))
    if b.cat1 == 0.0:
        assert d.posture == HIBERNATE
    elif d.changed:
        needed = CFG.checks_down if d.posture > before else CFG.checks_up
        went = "down" if d.posture > before else "up"
        assert direction == went and count == needed - 1
    # a fresh controller never moves on one check with Cat1 > 0
    fresh = PostureController(CFG, initial=initial)
    f = fresh.update(b, T0)
    assert f.changed == (b.cat1 == 0.0 and initial != HIBERNATE)


@SETTINGS
@given(st.lists(unit, min_size=1, max_size=30))
def test_controller_posture_always_one_the_rm_sequence_justifies(rms):
    """Whatever the sequence, the controller's posture is APEX (start) or the mildest target of some run
    of >= 2 (down) / >= 5 (up) consecutive checks that all pointed the same way."""
    ctrl = PostureController(CFG, initial=APEX)
    for i, r in enumerate(rms):
        prev = ctrl.posture
        d = ctrl.update(RmBreakdown(r, 1.0, r, 1.0, 1.0, 1.0, {}), T0 + timedelta(minutes=i))
        if d.changed:
            n = CFG.checks_down if d.posture > prev else CFG.checks_up
            window = [posture_for(x) for x in rms[i - n + 1:i + 1]]
            assert len(window) == n
            if d.posture > prev:
                assert all(w > prev for w in window) and d.posture == min(window)
            else:
                assert all(w < prev for w in window) and d.posture == max(window)

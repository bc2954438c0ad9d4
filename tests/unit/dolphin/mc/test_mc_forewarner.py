"""MC forewarner: calibration against brute force (synthetic), exact edge cases, block bootstrap structure,
status / staleness rules, record round-trip, and the engine variants on REAL spot-5m-2024 data (no look-ahead)."""

import json
import math
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from dolphin.data import load_panel
from dolphin.engine.backtest import run_backtest
from dolphin.engine.config import BLUE, MC_NAMES
from dolphin.mc import (PERTURBATIONS, MCConfig, MCEnvelope, MCInputError, age_hours, effective_status,
                        engine_daily_variants, forewarn, history_bars, path_stats, perturbed_configs,
                        resample_paths)
from dolphin.scanner.core import scan
from dolphin.store import FEATURES, MC_FOREWARNER_LATEST, Record
from dolphin.adapters.sqlite_store import EmbeddedStore
from dolphin.timeutil import DAY_MS, parse_time

T0 = datetime(2024, 6, 1, 4, 0, tzinfo=timezone.utc)


def _noisy(n_var=3, n_days=60, seed=1):
    return np.random.default_rng(seed).normal(0.001, 0.02, (n_var, n_days))


# ---------------------------------------------------------------- calibration (synthetic)

MU, SIGMA, HORIZON, DD = 0.0005, 0.035, 30, 0.20
BRUTE_PATHS = 200_000
# The bootstrap resamples the empirical distribution of a 500k-day sample, not N(MU, SIGMA) itself. Its
# mean is off by ~SIGMA/sqrt(5e5) = 5e-5 per day (1.5e-3 over 30 days, < 1 % of the 30-day sd of 0.19)
# and its sd by ~0.1 %; measured sensitivities (dP/d(sigma) ~ 0.008 per 1 % of sigma) put the resulting
# shift of P well below 0.003. Allowance: 0.005.
BOOTSTRAP_ALLOWANCE = 0.005


def _brute_prob(mu, sigma, seed):
    """Independent reference: P(maxDD > DD) from BRUTE_PATHS paths of fresh N(mu, sigma) draws, maxDD by an
    explicit running peak that starts at 1 (written out here, not the module's path_stats)."""
    r = np.random.default_rng(seed).normal(mu, sigma, (BRUTE_PATHS, HORIZON))
    eq, peak, worst = np.ones(BRUTE_PATHS), np.ones(BRUTE_PATHS), np.zeros(BRUTE_PATHS)
    for d in range(HORIZON):
        eq = eq * (1.0 + r[:, d])
        peak = np.maximum(peak, eq)
        worst = np.maximum(worst, 1.0 - eq / peak)
    return float(np.mean(worst > DD))


@pytest.fixture(scope="module")
def brute():
    return {"p": _brute_prob(MU, SIGMA, seed=101), "p_hi_vol": _brute_prob(MU, SIGMA * 1.1, seed=102),
            "p_lo_vol": _brute_prob(MU, SIGMA * 0.9, seed=103)}


@pytest.fixture(scope="module")
def long_sample():
    return np.random.default_rng(7).normal(MU, SIGMA, 500_000)


@pytest.mark.parametrize("bootstrap", ["stationary", "fixed"])
@pytest.mark.parametrize("n_paths", [2000, 20000])
def test_synthetic_iid_normal_catastrophic_prob_matches_brute_force(brute, long_sample, bootstrap, n_paths):
    cfg = MCConfig(n_paths=n_paths, horizon_days=HORIZON, dd_threshold=DD, bootstrap=bootstrap, seed=11)
    env = forewarn(long_sample, cfg, as_of=T0)
    p_ref = brute["p"]
    assert 0.2 < p_ref < 0.5  # a regime where the binomial error is largest: the test is not trivially easy
    se_ref = math.sqrt(p_ref * (1 - p_ref) / BRUTE_PATHS)
    assert env.catastrophic_prob_se == pytest.approx(math.sqrt(env.catastrophic_prob * (1 - env.catastrophic_prob)
                                                               / n_paths))
    tol = 3 * math.sqrt(env.catastrophic_prob_se ** 2 + se_ref ** 2) + BOOTSTRAP_ALLOWANCE
    assert abs(env.catastrophic_prob - p_ref) <= tol, (env.catastrophic_prob, p_ref, tol)
    # the tolerance is tight enough to notice a 10 % error in volatility
    assert brute["p_hi_vol"] - env.catastrophic_prob > tol
    assert env.catastrophic_prob - brute["p_lo_vol"] > tol
    assert env.status == "RED" and env.n_days == 500_000 and env.n_variants == 1


def test_synthetic_constant_positive_returns_are_never_catastrophic():
    env = forewarn(np.full((2, 40), 0.001), MCConfig(), as_of=T0)
    assert env.catastrophic_prob == 0.0 and env.catastrophic_prob_se == 0.0
    assert env.dd_p50 == 0.0 and env.dd_p95 == 0.0
    for q in (env.terminal_p05, env.terminal_p50, env.terminal_p95):
        assert q == pytest.approx(1.001 ** 30 - 1, rel=1e-12)
    assert env.envelope_score == 1.0 and env.status == "GREEN"


def test_synthetic_series_losing_beyond_threshold_in_every_block_is_certain_catastrophe():
    # every day loses >= 0.8 %: any 30 days lose >= 1 - 0.992**30 = 21.4 % > 20 %
    r = np.random.default_rng(3).uniform(-0.03, -0.008, (3, 50))
    for boot in ("stationary", "fixed"):
        env = forewarn(r, MCConfig(bootstrap=boot), as_of=T0)
        assert env.catastrophic_prob == 1.0 and env.status == "RED" and env.envelope_score == 0.0
        assert env.dd_p50 > 0.2 and env.terminal_p95 < -0.2


def test_synthetic_drawdown_counts_the_start_as_a_peak_and_measures_from_the_running_peak():
    # n_days = horizon = fixed block: the only possible path is the series itself, so numbers are exact
    cfg = MCConfig(horizon_days=3, block_days=3, bootstrap="fixed", min_history_days=1)
    env = forewarn([-0.21, 0.5, 0.1], cfg, as_of=T0)  # ends +30 % but fell 21 % from the start on day 1
    assert env.catastrophic_prob == 1.0 and env.dd_p95 == pytest.approx(0.21)
    assert env.terminal_p50 == pytest.approx(0.79 * 1.5 * 1.1 - 1)
    env = forewarn([0.1, -0.1, -0.1], cfg, as_of=T0)  # 1.1 -> 0.891: 19 % from the day-1 peak, 10.9 % from start
    assert env.catastrophic_prob == 0.0 and env.dd_p50 == pytest.approx(1 - 0.891 / 1.1)


def test_synthetic_path_stats_match_a_loop_reference():
    paths = np.random.default_rng(4).normal(0.0, 0.05, (50, 30))
    dd, term = path_stats(paths)
    for i in range(50):
        eq, peak, worst = 1.0, 1.0, 0.0
        for x in paths[i]:
            eq *= 1 + x
            peak = max(peak, eq)
            worst = max(worst, 1 - eq / peak)
        assert dd[i] == pytest.approx(worst, abs=1e-12) and term[i] == pytest.approx(eq - 1, rel=1e-12)


def test_synthetic_envelope_score_follows_its_definition():
    env = forewarn(_noisy(seed=9), MCConfig(), as_of=T0)
    s_dd = min(max(1 - env.dd_p95 / 0.2, 0), 1)
    s_ret = min(max(1 + env.terminal_p05 / 0.2, 0), 1)
    assert 0 < env.envelope_score < 1 and env.envelope_score == pytest.approx(math.sqrt(s_dd * s_ret))
    worse = forewarn(_noisy(seed=9) * 2, MCConfig(), as_of=T0)  # same shape, double the risk
    assert worse.envelope_score < env.envelope_score and worse.catastrophic_prob >= env.catastrophic_prob


# ---------------------------------------------------------------- block bootstrap structure


def test_synthetic_fixed_bootstrap_draws_contiguous_blocks():
    step, n = 1e-4, 100
    series = step * np.arange(1, n + 1)  # strictly increasing: a value names its day
    cfg = MCConfig(bootstrap="fixed", block_days=5, horizon_days=30)
    day = np.rint(resample_paths(series, cfg) / step).astype(int) - 1
    blocks = day.reshape(cfg.n_paths, 6, 5)
    assert (np.diff(blocks, axis=2) == 1).all()  # inside a block: consecutive days
    assert (blocks[:, :, 0] <= n - 5).all()  # no block runs past the last day
    jumps = np.diff(blocks[:, :, 0], axis=1)
    assert (jumps != 5).mean() > 0.9  # block starts are independent, not one long copy of the series
    # every admissible start is used, roughly uniformly
    counts = np.bincount(blocks[:, :, 0].ravel(), minlength=n - 4)
    assert counts.min() > 0 and counts.max() < 3 * counts.mean()


def test_synthetic_stationary_bootstrap_draws_geometric_blocks_that_wrap():
    step, n = 1e-4, 100
    series = step * np.arange(1, n + 1)
    cfg = MCConfig(bootstrap="stationary", block_days=5, horizon_days=30, n_paths=4000)
    day = np.rint(resample_paths(series, cfg) / step).astype(int) - 1
    nxt = np.diff(day, axis=1) % n == 1  # continuing the block (day n-1 wraps to day 0)
    # a new block starts with probability 1/5 and its random start continues by chance with prob 1/n
    expect = 1 - 1 / 5 + (1 / 5) / n
    se = math.sqrt(expect * (1 - expect) / nxt.size)
    assert abs(nxt.mean() - expect) < 4 * se
    assert (np.diff(day, axis=1) == -(n - 1)).any()  # blocks wrap circularly
    # every day, the newest included, is drawn about equally often
    counts = np.bincount(day.ravel(), minlength=n)
    assert counts.min() > 0.8 * counts.mean() and counts.max() < 1.2 * counts.mean()


def test_synthetic_each_path_uses_one_variant_and_all_variants_are_used():
    r = np.vstack([np.full(40, 0.01), np.full(40, -0.01), np.full(40, 0.02)])
    paths = resample_paths(r, MCConfig(n_paths=3000))
    first = paths[:, :1]
    assert (paths == first).all()  # constant rows: one variant per path
    share = np.array([(first == v).mean() for v in (0.01, -0.01, 0.02)])
    assert share.sum() == 1.0 and (np.abs(share - 1 / 3) < 0.04).all()


# ---------------------------------------------------------------- determinism and input checks


def test_same_seed_same_envelope_other_seed_other_envelope():
    r = _noisy()
    a = forewarn(r, MCConfig(seed=5), as_of=T0)
    assert forewarn(r.copy(), MCConfig(seed=5), as_of=T0) == a
    b = forewarn(r, MCConfig(seed=6), as_of=T0)
    assert (b.terminal_p50, b.dd_p95) != (a.terminal_p50, a.dd_p95)


def test_config_refuses_fewer_than_1000_paths_and_other_nonsense():
    with pytest.raises(ValueError, match="n_paths"):
        MCConfig(n_paths=999)
    assert MCConfig(n_paths=1000).n_paths == 1000
    for bad in ({"bootstrap": "iid"}, {"dd_threshold": 0.0}, {"green_below": 0.3, "red_at": 0.2},
                {"horizon_days": 0}, {"block_days": 0}, {"staleness_hours": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            MCConfig(**bad)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_input_is_refused_naming_row_and_day(value):
    r = _noisy()
    r[2, 17] = value
    with pytest.raises(MCInputError, match=r"variant row 2, day index 17"):
        forewarn(r, MCConfig(), as_of=T0)
    s = np.full(30, 0.001)
    s[5] = value
    with pytest.raises(MCInputError, match=r"variant row 0, day index 5"):
        forewarn(s, MCConfig(), as_of=T0)


def test_impossible_or_empty_input_is_refused():
    r = _noisy()
    r[1, 3] = -1.5
    with pytest.raises(MCInputError, match=r"variant row 1, day index 3.*-100 %"):
        forewarn(r, MCConfig(), as_of=T0)
    with pytest.raises(MCInputError, match="empty"):
        forewarn(np.zeros((2, 0)), MCConfig(), as_of=T0)
    with pytest.raises(MCInputError, match="shape"):
        forewarn(np.zeros((2, 3, 4)), MCConfig(), as_of=T0)
    with pytest.raises(ValueError, match="timezone"):
        forewarn(_noisy(), MCConfig(), as_of=datetime(2024, 6, 1))
    with pytest.raises(ValueError, match="variant_names"):
        forewarn(_noisy(), MCConfig(), as_of=T0, variant_names=["a"])


def test_short_history_is_at_least_orange_and_says_so():
    env = forewarn(np.full(10, 0.001), MCConfig(min_history_days=20), as_of=T0)
    assert env.catastrophic_prob == 0.0 and env.status == "ORANGE"
    assert "only 10 day(s) of history (< 20)" in env.reason
    red = forewarn(np.full(10, -0.02), MCConfig(min_history_days=20), as_of=T0)
    assert red.status == "RED" and "only 10 day(s)" in red.reason
    assert forewarn(np.full(20, 0.001), MCConfig(min_history_days=20), as_of=T0).status == "GREEN"


def test_status_thresholds():
    # 1-day horizon: a path is catastrophic iff its one day loses > 20 %, so P is the share of such days
    def status_for(share):
        n_bad = int(round(share * 200))
        r = np.r_[np.full(n_bad, -0.25), np.full(200 - n_bad, 0.01)]
        env = forewarn(r, MCConfig(horizon_days=1, block_days=1, n_paths=200_000, seed=2), as_of=T0)
        return env.status, env.catastrophic_prob

    assert status_for(0.0)[0] == "GREEN"
    assert status_for(0.02) == ("GREEN", pytest.approx(0.02, abs=0.002))
    assert status_for(0.10) == ("ORANGE", pytest.approx(0.10, abs=0.003))
    assert status_for(0.35) == ("RED", pytest.approx(0.35, abs=0.004))
    cfg = MCConfig(green_below=0.05, red_at=0.20)
    from dolphin.mc.forewarner import _status
    assert [_status(p, cfg) for p in (0.0499, 0.05, 0.1999, 0.20)] == ["GREEN", "ORANGE", "ORANGE", "RED"]


# ---------------------------------------------------------------- staleness


def _env(status="GREEN", ts=T0):
    base = forewarn(np.full(40, 0.001), MCConfig(), as_of=ts)
    return replace(base, status=status)


@pytest.mark.parametrize("form", ["envelope", "dict", "record"])
def test_stale_green_counts_as_orange_after_six_hours(form):
    env = _env("GREEN")
    x = {"envelope": env, "dict": env.to_record(), "record": env.to_store_record()}[form]
    st, why = effective_status(x, T0 + timedelta(hours=5, minutes=59))
    assert st == "GREEN", why
    assert effective_status(x, T0 + timedelta(hours=6))[0] == "GREEN"  # "older than 6 h": 6 h exactly is fresh
    st, why = effective_status(x, T0 + timedelta(hours=6, seconds=1))
    assert st == "ORANGE" and "stale" in why
    assert effective_status(x, T0 + timedelta(days=3))[0] == "ORANGE"
    assert age_hours(x, T0 + timedelta(hours=7, minutes=30)) == pytest.approx(7.5)


def test_stale_red_stays_red_and_orange_stays_orange():
    assert effective_status(_env("RED"), T0 + timedelta(hours=48))[0] == "RED"
    assert effective_status(_env("RED").to_record(), T0 + timedelta(hours=6, seconds=1))[0] == "RED"
    assert effective_status(_env("ORANGE"), T0 + timedelta(hours=1))[0] == "ORANGE"
    assert effective_status(_env("ORANGE"), T0 + timedelta(hours=9))[0] == "ORANGE"


def test_missing_unreadable_or_future_envelope_counts_as_orange():
    assert effective_status(None, T0) == ("ORANGE", "no MC envelope")
    assert age_hours(None, T0) is None
    st, why = effective_status({"status": "GREEN"}, T0)
    assert st == "ORANGE" and "timestamp" in why
    st, why = effective_status({"status": "PURPLE", "timestamp": "2024-06-01T04:00:00.000Z"}, T0)
    assert st == "ORANGE" and "PURPLE" in why
    assert effective_status({"status": "RED", "timestamp": "garbage"}, T0)[0] == "RED"
    st, why = effective_status(_env("GREEN", T0 + timedelta(hours=1)), T0)
    assert st == "ORANGE" and "future" in why
    assert effective_status(_env("GREEN", T0 + timedelta(minutes=2)), T0)[0] == "GREEN"  # small clock skew
    with pytest.raises(ValueError, match="timezone"):
        effective_status(_env(), datetime(2024, 6, 1, 5))
    # epoch-ms "now" works too
    assert effective_status(_env(), int(T0.timestamp() * 1000) + 6 * 3_600_000 + 1000)[0] == "ORANGE"


# ---------------------------------------------------------------- record


def test_record_round_trip_through_json_and_the_embedded_store(tmp_path):
    as_of = datetime(2024, 6, 1, 4, 0, 0, 123456, tzinfo=timezone.utc)
    env = forewarn(_noisy(), MCConfig(), as_of=as_of, variant_names=["base", "v1", "v2"])
    assert env.timestamp == as_of.replace(microsecond=123000)  # millisecond precision, as stored
    d = env.to_record()
    assert d["timestamp"] == "2024-06-01T04:00:00.123Z"
    assert {"status", "catastrophic_prob", "envelope_score", "timestamp"} <= set(d)
    text = json.dumps(d, allow_nan=False)
    assert MCEnvelope.from_record(json.loads(text)) == env
    with EmbeddedStore(tmp_path / "features.sqlite") as store:
        store.put(FEATURES, MC_FOREWARNER_LATEST, env.to_store_record())
        got = store.get(FEATURES, MC_FOREWARNER_LATEST)
    assert isinstance(got, Record) and got.timestamp == d["timestamp"]
    assert MCEnvelope.from_record(got) == env
    later = as_of + timedelta(hours=1)
    assert effective_status(got, later) == effective_status(env, later)


def test_from_record_names_the_bad_field():
    d = _env().to_record()
    with pytest.raises(ValueError, match="catastrophic_prob"):
        MCEnvelope.from_record({k: v for k, v in d.items() if k != "catastrophic_prob"})
    with pytest.raises(ValueError, match="n_paths"):
        MCEnvelope.from_record({**d, "n_paths": "many"})
    with pytest.raises(ValueError, match="status"):
        MCEnvelope.from_record({**d, "status": "BLUE"})


# ---------------------------------------------------------------- variants


def test_perturbed_configs_are_deterministic_latin_hypercube_neighbours():
    cfgs, names = perturbed_configs(BLUE, 8, seed=3)
    assert cfgs[0] == BLUE and names[0] == "base" and len(cfgs) == len(set(names)) == 8
    again, _ = perturbed_configs(BLUE, 8, seed=3)
    assert again == cfgs and perturbed_configs(BLUE, 8, seed=4)[0] != cfgs
    for p, a in PERTURBATIONS.items():
        f = np.array([getattr(c, p) / getattr(BLUE, p) for c in cfgs[1:]])
        slack = 0.5 / BLUE.max_hold_bars if p == "max_hold_bars" else 1e-12  # integer rounding
        assert ((f >= 1 - a - slack) & (f <= 1 + a + slack)).all(), p
        if p != "max_hold_bars":  # one factor per stratum of [1 - a, 1 + a]
            strata = np.floor((f - (1 - a)) / (2 * a) * 7).astype(int)
            assert sorted(strata) == list(range(7)), p
    for c in cfgs:  # nothing else moves; the hard leverage cap never does
        assert c.abs_max_leverage == BLUE.abs_max_leverage and c.max_leverage == BLUE.max_leverage
        assert c.extreme_threshold == BLUE.extreme_threshold and c.vol_lookback == BLUE.vol_lookback


END = "2024-06-01"
END_MS = parse_time(END)
LOOKBACK = 60


@pytest.fixture(scope="module")
def real():
    """REAL spot-5m-2024 bars: 60 days before 2024-06-01 plus more history than needed, and 3 days after."""
    need = history_bars(BLUE)
    panel = load_panel("spot-5m-2024", start_ms=END_MS - LOOKBACK * DAY_MS, end_ms=END_MS + 3 * DAY_MS,
                       warmup_bars=need + 600)
    assert panel.warmup_bars == need + 600
    scans = scan(panel, int(panel.open_time[0]), None)
    t = time.perf_counter()
    m, names = engine_daily_variants(panel, scans, BLUE, end_day=END, lookback_days=LOOKBACK, seed=1)
    print(f"\nengine_daily_variants: 8 variants x {LOOKBACK} days in {(time.perf_counter() - t) * 1e3:.0f} ms")
    return panel, scans, m, names


def _cut(panel, scans, end_ms):
    k = int(np.searchsorted(panel.open_time, end_ms))
    return panel.slice_bars(0, k), scans[:k]


def test_real_variants_matrix_is_nontrivial_and_matches_the_engine_equity(real):
    panel, scans, m, names = real
    assert m.shape == (8, LOOKBACK) and np.isfinite(m).all() and len(names) == 8
    assert (m[0] != 0).sum() >= 10  # the engine traded on many of the days
    assert len({tuple(r) for r in m}) == 8  # every perturbation changed the outcome
    # base row, compounded = the engine's own equity over the window, run on the full (uncut) history panel
    p, s = _cut(panel, scans, END_MS)
    first = int(np.searchsorted(p.open_time, END_MS - LOOKBACK * DAY_MS))
    res = run_backtest(p, s, BLUE, trade_from_ms=int(p.close_time[first]), close_at_end=False)
    assert np.prod(1 + m[0]) == pytest.approx(res.equity[-1] / BLUE.initial_capital, rel=1e-9)


def test_real_variants_use_only_bars_before_end_day(real):
    panel, scans, m, _ = real
    # (1) truncation: bars at/after end_day deleted
    p, s = _cut(panel, scans, END_MS)
    assert p.n_bars < panel.n_bars
    m2, _ = engine_daily_variants(p, s, BLUE, end_day=END, lookback_days=LOOKBACK, seed=1)
    assert np.array_equal(m, m2)
    # (2) poisoned future: prices and scans after end_day scrambled
    k = p.n_bars
    rng = np.random.default_rng(0)
    q = replace(panel, **{c: getattr(panel, c).copy() for c in ("open", "high", "low", "close")})
    for c in ("open", "high", "low", "close"):
        getattr(q, c)[k:] *= rng.uniform(0.5, 1.5, getattr(q, c)[k:].shape)
    sc = replace(scans, velocity=scans.velocity.copy(), loadings=scans.loadings.copy())
    sc.velocity[k:] = rng.normal(0, 5, sc.velocity[k:].shape)
    sc.loadings[k:] = rng.permutation(sc.loadings[k:], axis=2)
    assert np.array_equal(engine_daily_variants(q, sc, BLUE, end_day=END, lookback_days=LOOKBACK, seed=1)[0], m)
    # (3) a panel reaching less far back (still enough history) changes nothing either
    p3, s3 = panel.slice_bars(500, panel.n_bars), scans[500:]
    assert np.array_equal(engine_daily_variants(p3, s3, BLUE, end_day=END, lookback_days=LOOKBACK, seed=1)[0], m)
    # ...and the function does see its window: one more day changes the matrix
    later, _ = engine_daily_variants(panel, scans, BLUE, end_day="2024-06-02", lookback_days=LOOKBACK, seed=1)
    assert not np.array_equal(later, m)


def test_real_variants_refuse_an_incomplete_window(real):
    panel, scans, _, _ = real
    p, s = _cut(panel, scans, END_MS - 3_600_000)  # data stops an hour before end_day
    with pytest.raises(ValueError, match="does not reach end_day 2024-06-01"):
        engine_daily_variants(p, s, BLUE, end_day=END, lookback_days=LOOKBACK)
    with pytest.raises(ValueError, match="bars of history"):
        engine_daily_variants(panel.slice_bars(700, panel.n_bars), scans[700:], BLUE, end_day=END,
                              lookback_days=LOOKBACK)
    with pytest.raises(ValueError, match="row-aligned"):
        engine_daily_variants(panel, scans[1:], BLUE, end_day=END)


def test_real_data_smoke_variants_to_envelope(real):
    _, _, m, names = real
    cfg = MCConfig(n_paths=2000, horizon_days=30)
    env = forewarn(m, cfg, as_of=datetime(2024, 6, 1, tzinfo=timezone.utc), variant_names=names)
    assert env.status in MC_NAMES and 0.0 <= env.catastrophic_prob <= 1.0 and 0.0 <= env.envelope_score <= 1.0
    assert env.n_variants == 8 and env.n_days == LOOKBACK and env.variants == tuple(names)
    assert env.terminal_p05 <= env.terminal_p50 <= env.terminal_p95 and env.dd_p50 <= env.dd_p95
    times = []
    for _ in range(5):
        t = time.perf_counter()
        forewarn(m, cfg, as_of=datetime(2024, 6, 1, tzinfo=timezone.utc))
        times.append(time.perf_counter() - t)
    print(f"\nforewarn 2000 paths x 30 days: best {min(times) * 1e3:.2f} ms, median {np.median(times) * 1e3:.2f} ms; "
          f"{env.status} P={env.catastrophic_prob:.4f} score={env.envelope_score:.3f} "
          f"term p05/p50/p95={env.terminal_p05:.3f}/{env.terminal_p50:.3f}/{env.terminal_p95:.3f} "
          f"dd p50/p95={env.dd_p50:.3f}/{env.dd_p95:.3f}")
    assert min(times) < 0.2  # tens of ms at most; a slowdown here means a loop over paths crept in

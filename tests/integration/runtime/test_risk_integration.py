"""The survival stack as the runtime applies it (runtime.risk.StoreRiskSource over a real embedded feature
store): outage -> HIBERNATE within one check -> recovery to APEX only after 5 healthy checks; MC status and
ledger drawdown degrade the posture by DESIGN's numbers; a replay whose store is unreachable trades nothing.
"""

import logging
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from dolphin.acb import AcbState
from dolphin.engine import kernel as K
from dolphin.engine.config import APEX, BLUE, GREEN, HIBERNATE, ORANGE, POSTURE_NAMES, RED, STALKER, TURTLE
from dolphin.mc.forewarner import MCEnvelope
from dolphin.store import FEATURES, MC_FOREWARNER_LATEST, SAFETY, Record, asset_ob_key, iso_utc
from dolphin.adapters.sqlite_store import EmbeddedStore
from dolphin.adapters.near_cache import NearCachedStore
from dolphin.survival.stack import read_safety
from runtime.risk import StoreRiskSource

T0 = datetime(2024, 3, 4, 12, 0, tzinfo=timezone.utc)
SYMS = ("BTCUSDT", "ETHUSDT")
STEP = timedelta(minutes=5)  # one check per 5-minute bar close


def _ns(t: datetime) -> int:
    return int(t.timestamp() * 1000) * 1_000_000


def _mc(status: str, t: datetime) -> Record:
    env = MCEnvelope(status=status, reason="test", catastrophic_prob={"GREEN": 0.01, "ORANGE": 0.1, "RED": 0.4}[status],
                     catastrophic_prob_se=0.005, envelope_score=0.8, terminal_p05=-0.05, terminal_p50=0.05,
                     terminal_p95=0.15, dd_p50=0.05, dd_p95=0.12, n_paths=2000, n_variants=8, n_days=60,
                     horizon_days=30, block_days=5, bootstrap="stationary", dd_threshold=0.2, seed=1, timestamp=t)
    return env.to_store_record()


def _healthy(store, t: datetime, mc="GREEN"):
    store.put(FEATURES, MC_FOREWARNER_LATEST, _mc(mc, t))
    for s in SYMS:  # a healthy book: Cat3 = 1
        store.put(FEATURES, asset_ob_key(s), Record({"depth_quality": 1.0, "fill_prob": 1.0}, iso_utc(t)))


def _book(store, t: datetime):
    for s in SYMS:  # a live book publisher refreshes these every few seconds; stale after 30 s
        store.put(FEATURES, asset_ob_key(s), Record({"depth_quality": 1.0, "fill_prob": 1.0}, iso_utc(t)))


def _check(src, store, t: datetime):
    _book(store, t)
    return src.read(_ns(t))


class _Capital:
    def __init__(self, capital):
        self.capital = capital


@pytest.fixture
def world(tmp_path):
    path = tmp_path / "store" / "features.sqlite"
    store = EmbeddedStore(path)
    _healthy(store, T0)
    src = StoreRiskSource(NearCachedStore(store, max_age_s=0.0), symbols=SYMS, clock="bar")
    acct = _Capital(25_000.0)
    src.bind(acct)
    return path, store, src, acct


def test_store_outage_hibernates_at_once_and_recovers_after_5_healthy_checks(world, caplog):
    path, store, src, _ = world
    t = T0
    snap = src.read(_ns(t))
    assert snap.posture == APEX and snap.rm == pytest.approx(1 / (1 + np.exp(20 * -0.12)))  # Cat5(0) = 0.917
    for p in path.parent.iterdir():  # the store goes away
        p.unlink()
    caplog.set_level(logging.WARNING, logger="dolphin.survival")
    t += STEP
    snap = src.read(_ns(t))
    assert snap.posture == HIBERNATE and snap.rm == 0.0 and snap.mc_status == RED  # within ONE check
    assert src.last.breakdown.cat1 == 0.0 and src.last.invariant_kill
    assert any("HIBERNATE" in r.getMessage() and "Cat1" in r.getMessage() for r in caplog.records)
    back = EmbeddedStore(path)  # the store is back (repopulated)
    _healthy(back, t)
    postures = []
    for _ in range(6):
        t += STEP
        postures.append(_check(src, back, t).posture)
    assert postures == [HIBERNATE] * 4 + [APEX, APEX]  # APEX after exactly 5 healthy checks
    assert src.flush()
    rec = read_safety(back)
    assert rec.posture == APEX and rec.breakdown["Cat1"] == 1.0
    assert back.get("DOLPHIN_SYSTEM_HEALTH", "runtime_heartbeat").timestamp == iso_utc(t)


def test_mc_status_degrades_the_posture_by_designs_numbers(world):
    _, store, src, _ = world
    t = T0
    assert src.read(_ns(t)).posture == APEX
    store.put(FEATURES, MC_FOREWARNER_LATEST, _mc("ORANGE", t))
    seen = [_check(src, store, t := t + STEP) for _ in range(2)]
    # ORANGE: Rm = 0.5 x Cat5(0) = 0.458 -> STALKER after 2 checks (hysteresis), leverage capped at 2x
    assert [s.posture for s in seen] == [APEX, STALKER] and seen[-1].mc_status == ORANGE
    p = K.pack_params(BLUE)
    assert K.signal_leverage(p, -1, -1.0, STALKER, 1.5, seen[-1].rm) <= 2.0
    store.put(FEATURES, MC_FOREWARNER_LATEST, _mc("RED", t))
    seen = [_check(src, store, t := t + STEP) for _ in range(2)]
    # RED: Rm = 0.1 x Cat5(0) = 0.0917 < 0.10 -> HIBERNATE (DESIGN: RED 0.1; no new entries either way)
    assert [s.posture for s in seen] == [STALKER, HIBERNATE] and seen[-1].mc_status == RED
    assert not K.entry_allowed(p, True, seen[-1].posture, seen[-1].mc_status)
    assert src.flush() and read_safety(store).posture == HIBERNATE


def test_ledger_drawdown_15pct_gives_cat5_035_and_degrades(world):
    _, store, src, acct = world
    t = T0
    assert src.read(_ns(t)).posture == APEX  # peak 25,000
    acct.capital = 25_000.0 * 0.85
    seen = [_check(src, store, t := t + STEP) for _ in range(2)]
    assert src.last.breakdown.cat5 == pytest.approx(1 / (1 + np.exp(20 * 0.03)), abs=1e-12)  # 0.354
    assert src.last.breakdown.cat5 == pytest.approx(0.35, abs=0.01)
    assert [s.posture for s in seen] == [APEX, TURTLE]  # Rm 0.354: no new entries
    assert src.flush()
    assert read_safety(store).breakdown["Cat5"] == pytest.approx(0.354, abs=1e-3)


def test_stale_mc_and_absent_book_are_not_treated_as_healthy(world):
    _, store, src, _ = world
    for s in SYMS:
        store.delete(FEATURES, asset_ob_key(s))
    t = T0
    snap = src.read(_ns(t))
    assert src.last.breakdown.cat3 == 0.5  # no book data = stale
    t += timedelta(hours=9)  # MC 9 h old: ORANGE base, decayed by exp(-3/3)
    for _ in range(2):
        snap = src.read(_ns(t))
        t += STEP
    assert src.last.breakdown.cat2 < 0.5 * np.exp(-0.99)
    assert snap.posture in (TURTLE, STALKER) and POSTURE_NAMES[snap.posture] != "APEX"


def test_replay_with_an_unreachable_store_enters_nothing(tmp_path):
    """Paper replay (Nautilus) reading risk from a store that cannot be opened: every check is Cat1 = 0,
    HIBERNATE; the same day with defaults trades (so the test can fail)."""
    from runtime.replay import run_replay
    from dolphin.scanner.writer import time_bounds

    class Gone:
        def get(self, m, k):
            from dolphin.store import StoreUnavailableError
            raise StoreUnavailableError("test: store down")

    start, end = time_bounds("2024-02-27", "2024-02-27")
    base = run_replay("spot-5m-2024", BLUE, start_ms=start, end_ms=end, funding_dir=None)
    assert len(base.trades) >= 1
    src = StoreRiskSource(Gone(), symbols=(), clock="bar")
    r = run_replay("spot-5m-2024", BLUE, start_ms=start, end_ms=end, funding_dir=None, risk=src)
    assert len(r.trades) == 0 and r.capital == BLUE.initial_capital
    assert src.last.posture == HIBERNATE and src.publish_failures == 0

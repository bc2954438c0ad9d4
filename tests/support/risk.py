"""Risk-input records as the daily assets publish them (ACB state, MC envelope), for store-backed risk tests."""

from datetime import datetime

from dolphin.acb import AcbState
from dolphin.mc.forewarner import MCEnvelope
from dolphin.store import Record


def _mc(status: str, t: datetime) -> Record:
    return MCEnvelope(status=status, reason="test", catastrophic_prob=0.01, catastrophic_prob_se=0.005,
                      envelope_score=0.8, terminal_p05=-0.05, terminal_p50=0.05, terminal_p95=0.15, dd_p50=0.05,
                      dd_p95=0.12, n_paths=2000, n_variants=8, n_days=60, horizon_days=30, block_days=5,
                      bootstrap="stationary", dd_threshold=0.2, seed=1, timestamp=t).to_store_record()


def _acb(t: datetime, boost: float = 1.2) -> Record:
    return AcbState(boost=boost, beta=0.5, exf_score=0.1, exf_coverage=1.0, regime_score=0.2, regime_days=30,
                    w750_value=None, w750_threshold=None, w750_spread=None, signals={}, missing=(), notes=(),
                    last_date=t.date().isoformat(), updated_at=int(t.timestamp() * 1000), source="daily").to_record()

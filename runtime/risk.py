"""The ``RiskSource`` port: what the risk layers say, read by the strategy before every decision.

The strategy asks at every bar close (so before every entry or exit order it may send) for the
survival stack's posture and Rm, the ACB boost and the MC forewarner status. The feature-store-backed
adapter (``DOLPHIN_SAFETY`` / ``acb_state`` / ``mc_forewarner_latest``) arrives with its own issue; it
only has to implement ``read``. Until then ``DefaultRiskSource`` gives the engine's documented neutral
values, the same ones ``dolphin.engine.inputs.RiskInputs.defaults`` gives the backtest.
"""

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from dolphin.engine.config import APEX, GREEN, MC_NAMES, POSTURE_NAMES


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

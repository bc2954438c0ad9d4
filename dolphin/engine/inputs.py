"""Ports for what the engine reads besides scans and prices: order-book/flow and risk-layer inputs.

The risk layer (survival stack posture and Rm, MC status, ACB boost) arrives with its own issue;
until then ``RiskInputs.defaults`` gives its documented neutral values (APEX, GREEN, boost 1, Rm 1).
"""

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from dolphin.engine.config import APEX, GREEN


@dataclass
class FlowFeatures:
    imbalance: np.ndarray  # (T, N) order-book imbalance in [-1, 1]; + = bid pressure
    fill_prob: np.ndarray  # (T, N) probability a passive order fills
    stale_safe: bool  # True when the values are neutral by construction (safe if stale)
    source: str


class FlowProvider(Protocol):
    def features(self, open_time: np.ndarray, symbols: list) -> FlowFeatures: ...


class NeutralFlowProvider:
    """No order-book data recorded for backtests: neutral values, marked stale-safe.

    Imbalance 0 adds nothing to the ranking; fill_prob 0.5 is reported, not used to fake fills
    (backtest limit orders fill only when the next bar trades through the price)."""

    def features(self, open_time, symbols) -> FlowFeatures:
        T, N = len(open_time), len(symbols)
        return FlowFeatures(np.zeros((T, N)), np.full((T, N), 0.5), True, "neutral (no order-book data)")


@dataclass
class RiskInputs:
    posture: np.ndarray  # (T,) int64 posture code (APEX..HIBERNATE)
    mc_status: np.ndarray  # (T,) int64 (GREEN/ORANGE/RED)
    acb_boost: np.ndarray  # (T,) float
    rm: np.ndarray  # (T,) float in [0, 1]
    source: str = "defaults"

    @classmethod
    def defaults(cls, T: int) -> "RiskInputs":
        return cls(np.full(T, APEX, np.int64), np.full(T, GREEN, np.int64), np.ones(T), np.ones(T),
                   "defaults: APEX, MC GREEN, ACB boost 1.0, Rm 1.0")

    def check(self, T: int) -> None:
        for name in ("posture", "mc_status", "acb_boost", "rm"):
            a = getattr(self, name)
            if a.shape != (T,):
                raise ValueError(f"risk input {name}: shape {a.shape}, expected ({T},)")
        if np.any((self.rm < 0) | (self.rm > 1)) or not np.all(np.isfinite(self.rm)):
            raise ValueError("risk input rm must be finite and in [0, 1]")

"""Survival stack (DESIGN.md "Survival stack"): Rm from five categories, posture with hysteresis,
DVOL spike detection for Cat4, and the ``DOLPHIN_SAFETY`` record."""

from dolphin.survival.dvol import DvolConfig, DvolDataError, DvolSpikeDetector, detect_spikes, load_dvol_csv
from dolphin.survival.stack import (CATS, SAFETY_KEY, PostureController, PostureDecision, RmBreakdown,
                                    SafetyReading, SurvivalConfig, SurvivalInputError, SurvivalInputs, cat1_invariants,
                                    cat2_mc, cat3_microstructure, cat4_dvol, cat5_drawdown, compute_rm, posture_for,
                                    publish_safety, read_safety, safety_record)

__all__ = ["CATS", "SAFETY_KEY", "PostureController", "PostureDecision", "RmBreakdown", "SafetyReading",
           "SurvivalConfig", "SurvivalInputError", "SurvivalInputs", "cat1_invariants", "cat2_mc",
           "cat3_microstructure", "cat4_dvol", "cat5_drawdown", "compute_rm", "posture_for", "publish_safety",
           "read_safety", "safety_record", "DvolConfig", "DvolDataError", "DvolSpikeDetector", "detect_spikes",
           "load_dvol_csv"]

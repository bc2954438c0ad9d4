"""MC forewarner: Monte Carlo envelope of the current configuration and the engine variants feeding it."""

from dolphin.mc.forewarner import (BOOTSTRAPS, DEFAULT_STALENESS_HOURS, MIN_PATHS, MCConfig, MCEnvelope,
                                   MCInputError, age_hours, bootstrap_indices, effective_status, forewarn,
                                   path_stats, resample_paths)
from dolphin.mc.variants import PERTURBATIONS, engine_daily_variants, history_bars, perturbed_configs

__all__ = ["MCConfig", "MCEnvelope", "MCInputError", "forewarn", "effective_status", "age_hours",
           "resample_paths", "bootstrap_indices", "path_stats", "BOOTSTRAPS", "MIN_PATHS",
           "DEFAULT_STALENESS_HOURS", "engine_daily_variants", "perturbed_configs", "history_bars",
           "PERTURBATIONS"]

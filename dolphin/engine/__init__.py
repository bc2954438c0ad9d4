"""The alpha engine (BLUE / GREEN), its configuration, calibration and backtest pipeline."""

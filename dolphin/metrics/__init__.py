"""Performance metrics, daily/monthly tables and the DESIGN.md regression floors (pure: numpy/pandas)."""

from dolphin.metrics.core import (Metrics, annualised_return, compute_metrics, daily_table, exposure,
                                  max_drawdown, monthly_from_daily, monthly_table, profit_factor, sharpe,
                                  sortino)
from dolphin.metrics.floors import (FLOORS, LONG_WINDOW_DAYS, MAX_DRAWDOWN_CEILING, MIN_TRADES,
                                    PROFIT_FACTOR_FLOOR, ROI_FLOOR, SHARPE_FLOOR, SHORT_WINDOW_DAYS,
                                    WIN_RATE_FLOOR, FloorReport, FloorResult, FloorSpec, evaluate_floors,
                                    evaluate_floors_at)
from dolphin.metrics.fmt import format_floors_table, format_metrics_table, text_table
from dolphin.metrics.types import TRADE_COLUMNS, EquityCurve, check_trades, empty_trades, utc_day

__all__ = [
    "Metrics", "compute_metrics", "daily_table", "monthly_table", "monthly_from_daily", "profit_factor",
    "sharpe", "sortino", "max_drawdown", "annualised_return", "exposure",
    "FLOORS", "SHORT_WINDOW_DAYS", "LONG_WINDOW_DAYS", "PROFIT_FACTOR_FLOOR", "WIN_RATE_FLOOR", "ROI_FLOOR",
    "MIN_TRADES", "MAX_DRAWDOWN_CEILING", "SHARPE_FLOOR", "FloorSpec", "FloorResult", "FloorReport",
    "evaluate_floors", "evaluate_floors_at", "format_metrics_table", "format_floors_table", "text_table",
    "TRADE_COLUMNS", "EquityCurve", "check_trades", "empty_trades", "utc_day",
]

"""Self-contained HTML backtest report (inline SVG, no external assets: opens offline)."""

from dolphin.report.html import write_report

__all__ = ["write_report"]

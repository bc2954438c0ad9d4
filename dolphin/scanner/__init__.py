"""Exact incremental eigenvalue scanner.

For every bar and window W in (50, 150, 300, 750): largest eigenvalue of the correlation matrix of
the last W log returns, its velocity, vel_div = v_50 - v_150, eigenvector instability and loadings.
O(N^2) per bar and window via running sums + warm-started power iteration with a rigorous
(Kato-Temple) acceptance test, exact LAPACK fallback, and UTC-day anchoring for bit-identical
day-by-day results. See ``core`` (semantics), ``kernels`` (math), ``schema`` (file columns).
"""

from dolphin.scanner.core import WARMUP_BARS, WINDOWS, LiveScanner, ScanResult, scan
from dolphin.scanner.schema import scan_schema
from dolphin.scanner.writer import (
    from_table,
    read_scan_arrow,
    read_scans,
    read_scans_table,
    to_table,
    write_day_parquet,
    write_scan_arrow,
)

__all__ = [
    "WINDOWS",
    "WARMUP_BARS",
    "ScanResult",
    "scan",
    "LiveScanner",
    "scan_schema",
    "to_table",
    "from_table",
    "write_day_parquet",
    "write_scan_arrow",
    "read_scan_arrow",
    "read_scans",
    "read_scans_table",
]

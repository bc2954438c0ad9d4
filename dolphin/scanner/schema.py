"""Arrow schema of eigenvalue scans (daily Parquet files and per-scan Arrow IPC files).

One row per scan, i.e. per bar. N = number of assets, windows W in (50, 150, 300, 750).

=========================  ===============================  ==================================================
column                     type                             meaning
=========================  ===============================  ==================================================
``timestamp``              int64                            ms since epoch UTC of the bar CLOSE (open + bar_ms):
                                                            when the scan is known; use it for no-look-ahead
``bar_open_time``          timestamp[ms, UTC]               bar open time (the grid key; days are by open time)
``n_assets``               int32                            N
``lambda_w{W}``            float64                          largest eigenvalue of the correlation matrix of the
                                                            last W log returns (sample correlation)
``lambda_norm_w{W}``       float64                          lambda_w{W} / N
``velocity_w{W}``          float64                          lambda(t) - lambda(t-1)
``instability_w{W}``       float64                          1 - |u(t) . u(t-1)| (0 = leading eigenvector did
                                                            not turn; clamped at 0 against rounding)
``valid_w{W}``             bool                             lambda_w{W} is defined: >= W returns (t >= W, t = bar
                                                            index of the data set, r_t = log(c_t / c_{t-1}))
``loadings_w{W}``          fixed_size_list<float64>[N]      unit leading eigenvector u(t), sign fixed so that
                                                            sum(u) >= 0 (market mode positive), symbol order
``vel_div``                float64                          velocity_w50 - velocity_w150
``close``                  fixed_size_list<float64>[N]      close prices of the bar, symbol order
``fallbacks``              int8                             bit k set: window k (0 = w50 ... 3 = w750) used the
                                                            exact LAPACK path on this bar instead of the
                                                            accepted warm-started power iteration
=========================  ===============================  ==================================================

Undefined values are NaN, never null: lambda / lambda_norm / loadings before the window is warm
(``valid_w{W}`` False), velocity and instability also on the first valid bar (t = W), vel_div until
both w50 and w150 velocities exist (t >= 151). Velocity / instability of a UTC day's first bar use
the day's seed eigenpair (exact LAPACK at the previous bar), which may differ from that bar's
``lambda`` row in the last bits (see ``dolphin.scanner.core``).

Schema metadata (bytes keys and values): ``symbols`` (JSON list, the column order of ``loadings_*``
and ``close``), ``bar_ms``, ``windows`` (JSON list), ``schema_version``.

Files: ``<out>/scans_YYYY-MM-DD.parquet`` holds the scans whose bar OPENS on that UTC day (288 at
5m); ``<scan_dir>/YYYY-MM-DD/scan_<timestamp>.arrow`` one scan (same schema, one row), named by
the scan timestamp (bar close) and filed under the bar-open day.
"""

import json

import pyarrow as pa

SCHEMA_VERSION = "1"


def scan_schema(symbols, bar_ms: int, windows) -> pa.Schema:
    n = len(symbols)
    fields = [
        pa.field("timestamp", pa.int64(), nullable=False),
        pa.field("bar_open_time", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("n_assets", pa.int32(), nullable=False),
    ]
    for w in windows:
        fields += [
            pa.field(f"lambda_w{w}", pa.float64(), nullable=False),
            pa.field(f"lambda_norm_w{w}", pa.float64(), nullable=False),
            pa.field(f"velocity_w{w}", pa.float64(), nullable=False),
            pa.field(f"instability_w{w}", pa.float64(), nullable=False),
            pa.field(f"valid_w{w}", pa.bool_(), nullable=False),
            pa.field(f"loadings_w{w}", pa.list_(pa.float64(), n), nullable=False),
        ]
    fields += [
        pa.field("vel_div", pa.float64(), nullable=False),
        pa.field("close", pa.list_(pa.float64(), n), nullable=False),
        pa.field("fallbacks", pa.int8(), nullable=False),
    ]
    meta = {
        b"symbols": json.dumps(list(symbols)).encode(),
        b"bar_ms": str(int(bar_ms)).encode(),
        b"windows": json.dumps([int(w) for w in windows]).encode(),
        b"schema_version": SCHEMA_VERSION.encode(),
    }
    return pa.schema(fields, metadata=meta)


def parse_metadata(schema: pa.Schema) -> tuple:
    """(symbols, bar_ms, windows) from a scan schema's metadata."""
    md = schema.metadata or {}
    try:
        return (
            json.loads(md[b"symbols"]),
            int(md[b"bar_ms"]),
            tuple(int(w) for w in json.loads(md[b"windows"])),
        )
    except KeyError as exc:
        raise ValueError(f"not a scan file: schema metadata lacks {exc}") from None

"""Asset checks: the user's regression gates (DESIGN.md floors) and the scan data checks.

- ``eigen_scans``: no NaN after warm-up, λ/N in [1/N, 1], one scan per bar of the day. Blocking: a day
  with bad scans does not reach the engine.
- ``daily_pnl_blue``: every DESIGN.md floor on the window (10 or 55 days) ending at the partition, from
  the capital ledger's daily table (dolphin.metrics.evaluate_floors_at). Severity ERROR when the floor
  fails (with the real value); a floor whose window the chain does not fill yet (N/A) yields no result,
  so Dagster shows it SKIPPED (neither passed nor failed). Not blocking: the ledger export and the hot copy go on regardless -- a failed floor is a
  verdict on the strategy, not a reason to lose the day's bookkeeping.
- Freshness: ``daily_pnl_blue``'s latest partition must exist by 01:00 UTC (the paper day runs at
  00:05): ``build_time_partition_freshness_checks``, evaluated every 10 minutes by its sensor
  (``dolphin_assets.sensors.freshness``; not part of the day runs: a backfill of old days would report it
  failing on every run). Dagster 1.13 marks this builder as superseded by ``FreshnessPolicy``, but a
  FreshnessPolicy only asks "was the asset materialised recently" (any partition, e.g. a re-run of an old
  day, counts); the requirement is "the latest partition exists", which is exactly what this check
  evaluates.

Partitioned checks (``AssetCheckSpec(partitions_def=...)``, preview in Dagster 1.13) record one result
per day, next to the day's materialisation.
"""

import math
import warnings

import numpy as np
from dagster import (AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetIn,
                     AssetKey, MetadataValue, PreviewWarning, SupersessionWarning,
                     build_time_partition_freshness_checks, multi_asset_check)

from dolphin.daily import floors_at
from dolphin.metrics import FLOORS
from dolphin.scanner.writer import from_table
from dolphin.timeutil import DAY_MS
from dolphin_assets.partitions import DAILY
from dolphin_assets.resources.ledger import Ledger
from dolphin_assets.resources.scan_dir import ScanDir
from dolphin_assets.settings import STRATEGY

LAMBDA_TOL = 1e-9  # relative slack on the λ/N bounds for rounding (λmax of a correlation matrix is in [1, N])
SCAN_CHECKS = ("no_nan_after_warmup", "lambda_norm_in_range", "scan_count_is_day_bars")


def floor_check_name(spec) -> str:
    return f"floor_{spec.key}_{spec.window_days}d"


def _specs(asset: str, names, blocking: bool, descriptions) -> list:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PreviewWarning)  # partitioned asset checks
        return [AssetCheckSpec(n, asset=asset, blocking=blocking, partitions_def=DAILY, description=d)
                for n, d in zip(names, descriptions)]


# ---------------------------------------------------------------- eigen_scans data checks (pure)


def scan_data_checks(df, loadings=None) -> dict:
    """name -> (passed, metadata) for one day's scan frame (``scans_frame`` columns + ``warm``);
    ``loadings`` (T, K, N) from the day's Parquet file are checked for NaN on warm rows too (missing or
    misaligned loadings fail the NaN check: the engine reads them)."""
    out = {}
    warm = df["warm"].to_numpy(bool)
    value_cols = [c for c in df.columns if c.startswith(("lambda_", "velocity_", "instability_")) or c == "vel_div"]
    finite = np.isfinite(df.loc[warm, value_cols].to_numpy(float)).all(axis=0)
    bad_cols = [c for c, ok in zip(value_cols, finite) if not ok]
    invalid = int((~df.loc[warm, [c for c in df.columns if c.startswith("valid_")]].to_numpy(bool)).sum())
    have_load = loadings is not None and len(loadings) == len(df)
    nan_load = int((~np.isfinite(loadings[warm])).any(axis=(1, 2)).sum()) if have_load else 0
    out["no_nan_after_warmup"] = (not bad_cols and nan_load == 0 and invalid == 0 and have_load, {
        "warm_scans": int(warm.sum()), "columns_with_nan": ", ".join(bad_cols) or "none",
        "scans_with_nan_loadings": nan_load if have_load else "n/a: day Parquet missing or not aligned",
        "invalid_window_flags": invalid})

    n = int(df["n_assets"].iloc[0]) if len(df) else 0
    worst = {}
    ok = bool(len(df))
    for c in [c for c in df.columns if c.startswith("lambda_norm_w")]:
        w = c.removeprefix("lambda_norm_w")
        v = df.loc[df[f"valid_w{w}"].to_numpy(bool), c].to_numpy(float)
        if v.size:
            inside = (v >= (1.0 / n) * (1 - LAMBDA_TOL)) & (v <= 1.0 + LAMBDA_TOL)
            ok &= bool(inside.all())
            worst[c] = f"[{v.min():.6g}, {v.max():.6g}]"
    out["lambda_norm_in_range"] = (ok, {"n_assets": n, "bounds": f"[1/{n}, 1]" if n else "n/a", **worst})

    bar_ms = int(df["timestamp"].iloc[0] - df["bar_open_time"].iloc[0].value // 1_000_000) if len(df) else 0
    want = DAY_MS // bar_ms if bar_ms > 0 else 0
    out["scan_count_is_day_bars"] = (len(df) == want and want > 0, {"scans": len(df), "bars_of_day": want})
    return out


@multi_asset_check(
    specs=_specs("eigen_scans", SCAN_CHECKS, True, (
        "Every scan with a full warm-up (WARMUP_BARS of history) has finite λ, λ/N, velocity, instability, "
        "vel_div and loadings, and every window valid.",
        "λ_W/N lies in [1/N, 1] on every valid scan (largest eigenvalue of an N x N correlation matrix).",
        "One scan per bar of the UTC day (288 at 5m).")),
    ins={"scans": AssetIn(key="eigen_scans")},
)
def eigen_scans_checks(context: AssetCheckExecutionContext, scans, scan_dir: ScanDir):
    day = context.partition_key
    path = scan_dir.dir() / f"scans_{day}.parquet"
    loadings = None
    if path.exists():
        import pyarrow.parquet as pq

        loadings = from_table(pq.read_table(path)).loadings
    for name, (passed, meta) in scan_data_checks(scans, loadings).items():
        yield AssetCheckResult(check_name=name, asset_key="eigen_scans", passed=bool(passed),
                               severity=AssetCheckSeverity.ERROR, metadata=meta)


# ---------------------------------------------------------------- daily_pnl_blue floors


def _value(v) -> MetadataValue:
    v = float(v)
    return MetadataValue.float(v) if math.isfinite(v) else MetadataValue.text("n/a" if math.isnan(v) else str(v))


def floor_check_results(report, asset_key: str = "daily_pnl_blue") -> list:
    """One AssetCheckResult per floor of a ``FloorReport`` restricted to the windows ending on the day."""
    out = []
    for f in report.floors:
        s = f.spec
        meta = {"status": f.status, "value": _value(f.latest_value), "rule": f"{s.label} {s.rule}",
                "threshold": s.threshold, "window": f"{f.latest_start} .. {f.latest_end}" if f.latest_end else
                f"needs {s.window_days} days, the chain has {f.n_days}", "window_days": s.window_days,
                "chain_days": f.n_days}
        out.append(AssetCheckResult(
            check_name=floor_check_name(s), asset_key=asset_key, passed=f.status == "PASS", metadata=meta,
            severity=AssetCheckSeverity.WARN if f.status == "N/A" else AssetCheckSeverity.ERROR,
            description=None if f.status != "N/A" else "N/A: fewer chain days than the window"))
    return out


def applicable_floor_results(report, log, asset_key: str = "daily_pnl_blue") -> list:
    """The results of the floors that have a complete window; an N/A floor (fewer chain days than its
    window) yields no result, so Dagster shows that check SKIPPED for the day (not failed, not passed);
    the log names it and why."""
    out = []
    for f, r in zip(report.floors, floor_check_results(report, asset_key)):
        if f.status == "N/A":
            log.info(f"{r.check_name}: skipped: the chain has {f.n_days} day(s), the window needs "
                     f"{f.spec.window_days}")
            continue
        out.append(r)
    return out


@multi_asset_check(
    specs=_specs("daily_pnl_blue", [floor_check_name(s) for s in FLOORS], False,
                 [f"DESIGN.md floor: {s.label} {s.rule} on the {s.window_days}-day window ending at the partition"
                  for s in FLOORS]),
    can_subset=True,  # an N/A floor yields nothing: Dagster shows it skipped
)
def daily_pnl_blue_floors(context: AssetCheckExecutionContext, ledger: Ledger):
    day = context.partition_key
    start = ledger.first_day()
    entries = [e for e in ledger.open().current(STRATEGY, upto=day) if e.day >= start]
    yield from applicable_floor_results(floors_at(entries, day), context.log)


with warnings.catch_warnings():
    warnings.simplefilter("ignore", SupersessionWarning)  # see the module docstring
    FRESHNESS_CHECKS = build_time_partition_freshness_checks(
        assets=[AssetKey("daily_pnl_blue")], deadline_cron="0 1 * * *", timezone="UTC",
        severity=AssetCheckSeverity.ERROR)


# ---------------------------------------------------------------- exf coverage

EXF_MIN_CHECK = "at_least_4_indicators"


def exf_coverage(df, minimum: int) -> tuple:
    """(passed, metadata) for one day's exf row: at least ``minimum`` indicators with a value."""
    from dolphin.exf.indicators import INDICATOR_NAMES

    if len(df) != 1:
        return False, {"rows": len(df), "problem": "expected one exf row for the day"}
    row = df.iloc[0]
    present = [n for n in INDICATOR_NAMES if n in df.columns and np.isfinite(float(row[n]))]
    missing = [n for n in INDICATOR_NAMES if n not in present]
    return len(present) >= minimum, {"non_null": len(present), "minimum": minimum,
                                     "present": ", ".join(present) or "none", "missing": ", ".join(missing) or "none"}


@multi_asset_check(
    specs=_specs("exf", [EXF_MIN_CHECK], False, [
        "At least 4 ExF indicators have a value (the ACB's ExF term and the survival stack's DVOL input need "
        "real data; fewer means the sources or the recorded files are broken)."]),
    ins={"exf_row": AssetIn(key="exf")},
)
def exf_checks(context: AssetCheckExecutionContext, exf_row):
    from dolphin_assets.assets.risk import MIN_EXF_INDICATORS

    passed, meta = exf_coverage(exf_row, MIN_EXF_INDICATORS)
    yield AssetCheckResult(check_name=EXF_MIN_CHECK, asset_key="exf", passed=bool(passed),
                           severity=AssetCheckSeverity.ERROR, metadata=meta)

"""Day partitions of the market layer: bars -> eigenvalue scans, vol regime."""

from dataclasses import dataclass

import numpy as np
import pandas as pd
from dagster import (AssetExecutionContext, AssetIn, MetadataValue, OpExecutionContext, Out, Output, asset, graph_asset,
                     op)

from dolphin.daily import check_day_panel, history_bars
from dolphin.timeutil import day_start_ms
from dolphin.engine.regime import vol_regime as compute_vol_regime
from dolphin.scanner import WARMUP_BARS, scan, write_day_parquet
from dolphin.store import FEATURES, SCAN_LATEST, VOL_REGIME, Record, iso_utc, publish_if_newer
from dolphin.timeutil import DAY_MS, fmt_ms
from dolphin_assets.partitions import DAILY
from dolphin.rehydrate import keep_published
from dolphin.store.records import num, scan_is_newer, scan_record
from dolphin_assets.publish import publish_or_gap
from dolphin_assets.resources.feature_store import FeatureStoreResource
from dolphin_assets.resources.market_data import MarketData
from dolphin_assets.resources.scan_dir import ScanDir
from dolphin_assets.settings import ENGINE_CONFIG

WAREHOUSE = "warehouse"
DAY_COLUMN = {"partition_expr": "day"}


def day_column(context, n: int) -> pd.Series:
    return pd.Series(np.full(n, pd.Timestamp(context.partition_key)), dtype="datetime64[ns]")


@asset(partitions_def=DAILY, group_name="market", kinds={"python"},
       description="Aligned candles of the UTC day plus the warm-up tail the scans and the engine need "
                   "(history_bars: 2068 bars at 5m), via dolphin.data.load_panel.")
def market_bars(context: AssetExecutionContext, market_data: MarketData):
    day = context.partition_key
    t0 = day_start_ms(day)
    panel = market_data.load_day(t0, t0 + DAY_MS - 1, history_bars(ENGINE_CONFIG))
    check_day_panel(panel, day)
    issues = [i.describe() for i in panel.issues]
    return Output(panel, metadata={
        "assets": panel.n_assets, "day_bars": panel.n_bars - panel.warmup_bars, "warmup_bars": panel.warmup_bars,
        "first_bar": fmt_ms(panel.open_time[0]), "last_bar": fmt_ms(panel.open_time[-1]),
        "data_issues": len(issues), "issues": MetadataValue.md("\n".join(f"- {s}" for s in issues[:20]) or "none"),
    })


def scans_frame(scans, warm: np.ndarray) -> pd.DataFrame:
    """The scans without the per-asset list columns (loadings, closes: in the Parquet files)."""
    n = scans.n_assets
    cols = {"timestamp": scans.timestamp.astype(np.int64),
            "bar_open_time": pd.to_datetime(scans.open_time, unit="ms"), "n_assets": np.full(len(scans), n)}
    for k, w in enumerate(scans.windows):
        cols[f"lambda_w{w}"] = scans.lam[:, k]
        cols[f"lambda_norm_w{w}"] = scans.lam[:, k] / n
        cols[f"velocity_w{w}"] = scans.velocity[:, k]
        cols[f"instability_w{w}"] = scans.instability[:, k]
        cols[f"valid_w{w}"] = scans.valid[:, k]
    cols.update(vel_div=scans.vel_div, fallbacks=scans.fallbacks.astype(np.int16), warm=warm)
    return pd.DataFrame(cols)


def _range(a) -> str:
    a = np.asarray(a, float)
    a = a[np.isfinite(a)]
    return f"[{a.min():.6g}, {a.max():.6g}]" if a.size else "n/a (not warm)"


@dataclass(frozen=True)
class ScanDay:
    """What ``scan_day`` hands to ``write_scans``: the warehouse rows, the scan_latest record, the metadata (a
    pickle of the default io manager, on the volume every worker mounts)."""

    frame: pd.DataFrame
    latest: Record
    meta: dict


@op(out=Out(io_manager_key="io_manager"),
    description="The day's scans (dolphin.scanner.scan) and scans_YYYY-MM-DD.parquet under the scan directory: "
                "no single-host file, so on the dask executor it runs on any worker (days fan out).")
def scan_day(context: OpExecutionContext, market_bars, scan_dir: ScanDir) -> ScanDay:
    panel = market_bars
    scans = scan(panel)  # the day's rows (the panel's warm-up rows are history)
    paths = write_day_parquet(scans, scan_dir.dir())
    # a row is "after warm-up" once the data holds WARMUP_BARS bars before it (the seed window is full)
    warm = panel.warmup_bars + np.arange(len(scans)) >= WARMUP_BARS
    df = scans_frame(scans, warm)
    df.insert(0, "day", day_column(context, len(df)))
    latest = scan_record(scans, -1, f"eigen_scans {context.partition_key}")
    meta = {"scans": len(scans), "warm_scans": int(warm.sum()), "parquet": str(paths[0]),
            "vel_div_range": _range(scans.vel_div),
            "fallbacks": MetadataValue.json({f"w{w}": c for w, c in scans.fallback_counts().items()})}
    for k, w in enumerate(scans.windows):
        meta[f"lambda_w{w}_range"] = _range(scans.lam[:, k])
    return ScanDay(df, latest, meta)


@op(out=Out(io_manager_key=WAREHOUSE, metadata=DAY_COLUMN),
    description="The day's scan rows into the DuckDB warehouse and scan_latest into the feature store: the "
                "single-host writes, pinned on the dask executor (dolphin_assets.distributed).")
def write_scans(context: OpExecutionContext, scan_day: ScanDay, feature_store: FeatureStoreResource) -> pd.DataFrame:
    published, gap = publish_or_gap(context, "scan_latest", lambda: publish_if_newer(
        feature_store.open(), FEATURES, SCAN_LATEST, scan_day.latest, newer=scan_is_newer))
    lam = {k: v for k, v in scan_day.meta.items() if k.startswith("lambda_")}
    context.add_output_metadata({**{k: v for k, v in scan_day.meta.items() if k not in lam},
                                 "published_scan_latest": published, "store_gap": gap, **lam})
    return scan_day.frame


@graph_asset(partitions_def=DAILY, group_name="market", metadata=DAY_COLUMN, kinds={"duckdb", "parquet"},
             ins={"market_bars": AssetIn()},
             description="Eigenvalue scans of the day (dolphin.scanner.scan): scans_YYYY-MM-DD.parquet under the "
                         "scan directory (full schema) and the scalar columns in DuckDB; publishes scan_latest. Two "
                         "steps: scan_day computes and writes the Parquet file (any worker), write_scans writes "
                         "DuckDB and the store (the single-host step).")
def eigen_scans(market_bars):
    return write_scans(scan_day(market_bars))


@asset(partitions_def=DAILY, group_name="market", io_manager_key=WAREHOUSE, metadata=DAY_COLUMN, kinds={"duckdb"},
       ins={"market_bars": AssetIn()},
       description="Vol regime gate of the day (dolphin.engine.regime.vol_regime with the BLUE settings): "
                   "realised vol of the market return vs its rolling past percentile; publishes vol_regime.")
def vol_regime(context: AssetExecutionContext, market_bars, feature_store: FeatureStoreResource) -> pd.DataFrame:
    panel, cfg = market_bars, ENGINE_CONFIG
    reg = compute_vol_regime(panel.close, cfg.vol_window, cfg.vol_lookback, cfg.vol_percentile)
    lo = panel.warmup_bars
    df = pd.DataFrame({"timestamp": panel.close_time[lo:].astype(np.int64),
                       "bar_open_time": pd.to_datetime(panel.open_time[lo:], unit="ms"),
                       "market_return": reg.market_return[lo:], "realised_vol": reg.realised_vol[lo:],
                       "threshold": reg.threshold[lo:], "regime_ok": reg.ok[lo:]})
    df.insert(0, "day", day_column(context, len(df)))
    latest = reg.latest()
    rec = Record({"current_vol": num(latest["current_vol"]), "vol_p60": num(latest["vol_p60"]),
                  "regime_ok": latest["regime_ok"], "percentile": cfg.vol_percentile, "date": context.partition_key},
                 iso_utc(int(panel.close_time[-1])))
    published, gap = publish_or_gap(context, "vol_regime",
                                    lambda: publish_if_newer(feature_store.open(), FEATURES, VOL_REGIME, rec))
    keep_published(context.log, FEATURES, VOL_REGIME, rec)
    context.add_output_metadata({"regime_ok_bars": int(reg.ok[lo:].sum()), "bars": len(df),
                                 "published_vol_regime": published, "store_gap": gap})
    return df

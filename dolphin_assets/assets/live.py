"""Sub-day: the newest scan Arrow file -> ``scan_latest`` in the feature store (run by the scan-file sensor)."""

from pathlib import Path

from dagster import AssetExecutionContext, Config, Failure, MaterializeResult, asset, define_asset_job

from dolphin.store.records import num
from dolphin_assets.resources.feature_store import FeatureStoreResource
from dolphin_assets.resources.scan_dir import ScanDir
from dolphin.scan_files import check_arrow, newest_complete, publish_scan_file


class ScanLatestConfig(Config):
    path: str = ""  # the Arrow file to publish (the sensor passes the newest new one); empty: newest complete file


@asset(group_name="live", kinds={"arrow"},
       description="The newest scan (per-scan Arrow file of the live scanner) published as scan_latest; "
                   "an older scan never overwrites a newer one.")
def scan_latest(context: AssetExecutionContext, config: ScanLatestConfig, scan_dir: ScanDir,
                feature_store: FeatureStoreResource) -> MaterializeResult:
    if config.path:
        path = Path(config.path)
    else:
        newest = newest_complete(scan_dir.dir())
        if newest is None:
            raise Failure(description=f"no complete scan Arrow file under {scan_dir.dir()}")
        path = newest.path
    why = check_arrow(path) if path.exists() else "file not found"
    if why:
        raise Failure(description=f"scan file {path}: {why}")
    # scan_latest (publish_if_newer in scan order) + the per-scan ACB step (compare-and-set; every scan since
    # the stored state): the same function the scan bridge (`dolphin bridge`) calls, so both store the same records
    out = publish_scan_file(feature_store.open(), scan_dir.dir(), path)
    row, rec, published, acb_steps, acb_note = out.row, out.record, out.published, out.acb_steps, out.acb_note
    return MaterializeResult(metadata={"file": str(path), "scan_time": rec.timestamp,
                                       "vel_div": num(row.vel_div[-1]) or 0.0, "published": published,
                                       "note": "published" if published else "the store already holds a newer scan",
                                       "acb_scans_applied": acb_steps, "acb_note": acb_note})


scan_latest_job = define_asset_job("scan_latest_job", selection=[scan_latest])

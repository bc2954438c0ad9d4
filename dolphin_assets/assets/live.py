"""Sub-day: the newest scan Arrow file -> ``scan_latest`` in the feature store (run by the scan-file sensor)."""

from pathlib import Path

from dagster import AssetExecutionContext, Config, Failure, MaterializeResult, asset, define_asset_job

from dolphin.scanner import read_scan_arrow
from dolphin.store import FEATURES, SCAN_LATEST, publish_if_newer
from dolphin_assets.publish import num, scan_is_newer, scan_record
from dolphin_assets.resources import FeatureStoreResource, ScanDir
from dolphin_assets.scan_files import apply_acb_scans, check_arrow, newest_complete


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
    row = read_scan_arrow(path)
    rec = scan_record(row, -1, str(path))
    store = feature_store.open()
    published = publish_if_newer(store, FEATURES, SCAN_LATEST, rec, newer=scan_is_newer)
    # per-scan ACB update (compare-and-set; steps through every scan since the stored state, see scan_files)
    acb_steps, acb_note = apply_acb_scans(store, scan_dir.dir(), int(row.timestamp[-1]))
    return MaterializeResult(metadata={"file": str(path), "scan_time": rec.timestamp,
                                       "vel_div": num(row.vel_div[-1]) or 0.0, "published": published,
                                       "note": "published" if published else "the store already holds a newer scan",
                                       "acb_scans_applied": acb_steps, "acb_note": acb_note})


scan_latest_job = define_asset_job("scan_latest_job", selection=[scan_latest])

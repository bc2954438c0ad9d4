"""The scan-file sensor: new scan Arrow files -> a run of ``scan_latest`` (rules: ``dolphin.scan_files``, shared with the scan bridge)."""

from dagster import DefaultSensorStatus, RunRequest, SensorEvaluationContext, SensorResult, SkipReason, sensor

from dolphin_assets.assets.live import scan_latest_job
from dolphin_assets.resources.scan_dir import ScanDir
from dolphin.scan_files import Cursor, poll

SETTLE_SECONDS = 30.0  # an unparsable file untouched this long is corrupt, younger it is still being written


@sensor(job=scan_latest_job, minimum_interval_seconds=15, default_status=DefaultSensorStatus.STOPPED,
        description="Watches <scan_dir>/YYYY-MM-DD/scan_*.arrow; one run per poll with new complete files "
                    "(publishing the newest), cursor by (mtime, name).")
def scan_files_sensor(context: SensorEvaluationContext, scan_dir: ScanDir):
    folder = scan_dir.dir()  # dolphin.scanner.writer.scan_dir: where the runtime and `dolphin scan --arrow-files` write
    p = poll(folder, Cursor.from_json(context.cursor), settle_s=SETTLE_SECONDS)
    for f, why in p.corrupt:
        context.log.warning(f"corrupt scan file skipped: {f.rel}: {why} (in {folder})")
    corrupt = ",".join(f.rel for f, _ in p.corrupt)[:1000]
    if p.newest is None:
        parts = [f"{len(p.partial)} partial file(s) waiting"] if p.partial else []
        if p.corrupt:
            parts.append(f"corrupt file(s) skipped: {corrupt}")
        why = f"no new complete scan file in {folder}" + (": " + "; ".join(parts) if parts else "")
        return SensorResult(skip_reason=SkipReason(why), cursor=p.cursor.to_json())
    f = p.newest
    tags = {"dolphin/scan_file": f.rel, "dolphin/scan_dir": str(folder), "dolphin/new_scan_files": str(len(p.ready))}
    if corrupt:
        tags["dolphin/corrupt_skipped"] = corrupt
    req = RunRequest(run_key=f"{f.rel}@{f.mtime_ns}", tags=tags,
                     run_config={"ops": {"scan_latest": {"config": {"path": str(f.path)}}}})
    return SensorResult(run_requests=[req], cursor=p.cursor.to_json())

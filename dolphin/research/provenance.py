"""Where a configuration's calibrated values came from, and so which part of a run is really in-sample.

"In-sample" is printed only where the calibration's recorded data fingerprint matches the data and the
window (DESIGN.md "Validation"). A configuration's calibration is identified by its calibrated fields
(thresholds, exits, risk budget: ``CALIBRATED_FIELDS``), hashed with ``records.config_hash``:

- the shipped presets carry their record here (``SHIPPED``): BLUE's values come from ``dolphin calibrate
  --data spot-5m-2024`` (first 150 of 250 UTC days, 2024-01-01 .. 2024-05-29), with the fingerprint of those
  files and that window as computed from ../shared/data (content hashes, so a copy elsewhere still matches);
- ``dolphin calibrate --out`` stores a calibration record ``calibration-<hash>.json`` under
  ``$DOLPHIN_HOME/validation`` (``save_calibration``).

Anything else (a hand-edited threshold, a preset on other data, a window that is not the calibration's) is
labelled out of sample, naming where the preset was calibrated.
"""

import json
import os
import tempfile
from datetime import date, timedelta
from pathlib import Path

from dolphin.research.records import config_hash, data_fingerprint, validation_dir

CALIBRATED_FIELDS = ("entry_threshold", "extreme_threshold", "max_hold_bars", "w_move", "capital_fraction")

# BLUE preset: EngineConfig defaults; fingerprint = data_fingerprint(klines/spot-5m-2024, "2024-01-01", "2024-05-29")
SHIPPED = {
    "BLUE": {"set": "spot-5m-2024", "first_day": "2024-01-01", "last_day": "2024-05-29",
             "fingerprint": "723c53d5fd5d8bb083c6fee5cd029aefc3c1365a416783a8830f8cd7c4359f35",
             "values": {"entry_threshold": 0.033478, "extreme_threshold": 0.083956, "max_hold_bars": 144,
                        "w_move": 1.0, "capital_fraction": 0.25}},
}


def calibrated_values(cfg) -> dict:
    return {k: getattr(cfg, k) for k in CALIBRATED_FIELDS}


def calibration_key(cfg) -> str:
    return config_hash(calibrated_values(cfg))


def save_calibration(cfg, data_path, set_name: str, first_day: str, last_day: str, home=None) -> Path:
    """Record where ``cfg``'s calibrated values were chosen (``dolphin calibrate --out``)."""
    d = validation_dir(home)
    d.mkdir(parents=True, exist_ok=True)
    doc = {"set": set_name, "first_day": first_day, "last_day": last_day, "values": calibrated_values(cfg),
           "fingerprint": data_fingerprint(data_path, first_day, last_day), "data_path": str(data_path)}
    target = d / f"calibration-{calibration_key(cfg)}.json"
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
    os.chmod(tmp, 0o644)
    os.replace(tmp, target)
    return target


def calibration_of(cfg, home=None) -> dict | None:
    vals = calibrated_values(cfg)
    for name, rec in SHIPPED.items():
        if rec["values"] == vals:
            return {**rec, "source": f"preset {name}"}
    try:
        d = validation_dir(home)
    except Exception:
        return None
    p = d / f"calibration-{calibration_key(cfg)}.json"
    if p.is_file():
        try:
            rec = json.loads(p.read_text())
            if rec.get("values") == vals:
                return {**rec, "source": str(p)}
        except (ValueError, OSError):
            return None
    return None


def period_labels(cfg, data_path, is_first_day: str, is_last_day: str, home=None) -> dict:
    """Display labels of the two split periods: {"in": ..., "out": ..., "note": ..., "in_sample": bool}.

    In-sample only when the calibration's window starts on ``is_first_day``, ends on or before
    ``is_last_day`` (the split may have moved on a few days to a flat book: those days are named) and its
    recorded fingerprint equals this data's over that window."""
    cal = calibration_of(cfg, home)
    if cal is None:
        why = "no calibration record for these thresholds"
        return {"in": "First part (out of sample)", "out": "Last part (out of sample)", "in_sample": False,
                "note": f"both periods are out of sample: {why} (dolphin calibrate --out records one)"}
    where = f"{cal['set']} {cal['first_day']}..{cal['last_day']}"
    match = False
    if cal["first_day"] == is_first_day and cal["last_day"] <= is_last_day:
        try:
            match = data_fingerprint(data_path, cal["first_day"], cal["last_day"]) == cal["fingerprint"]
        except Exception:
            match = False
    if not match:
        return {"in": f"First part (out of sample: calibrated on {cal['set']})",
                "out": f"Last part (out of sample: calibrated on {cal['set']})", "in_sample": False,
                "note": f"both periods are out of sample: the thresholds were calibrated on {where} "
                        f"({cal['source']}), not on this data and window"}
    extra = (date.fromisoformat(is_last_day) - date.fromisoformat(cal["last_day"])).days
    tail = (f"; its last {extra} day(s) after {cal['last_day']} are out of sample (split moved to a flat book)"
            if extra > 0 else "")
    return {"in": "In-sample", "out": "Out-of-sample", "in_sample": True,
            "note": f"in-sample = {where}, where the thresholds were calibrated ({cal['source']}; data "
                    f"fingerprint matches){tail}"}


def day_before(day_ms: int) -> str:
    return (date(1970, 1, 1) + timedelta(days=int(day_ms // 86_400_000) - 1)).isoformat()

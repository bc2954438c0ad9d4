"""Truthful in/out-of-sample labels (dolphin.research.provenance, report_data.period_labels): "in-sample"
only where the calibration's recorded data fingerprint matches the data and the window."""

from dolphin.engine.config import BLUE
from dolphin.paths import resolve_kline_set
from dolphin.research.provenance import calibration_of, period_labels, save_calibration
from dolphin.research.records import data_fingerprint

SPOT, USDTM = resolve_kline_set("spot-5m-2024"), resolve_kline_set("usdtm-5m-2023")


def test_shipped_blue_is_in_sample_only_on_its_calibration_window(tmp_path):
    lab = period_labels(BLUE, SPOT, "2024-01-01", "2024-05-29", home=tmp_path)
    assert lab["in_sample"] and lab["in"] == "In-sample" and "fingerprint matches" in lab["note"]
    moved = period_labels(BLUE, SPOT, "2024-01-01", "2024-05-31", home=tmp_path)  # split moved to a flat book
    assert moved["in_sample"] and "last 2 day(s)" in moved["note"]
    other = period_labels(BLUE, USDTM, "2023-07-04", "2023-07-21", home=tmp_path)
    assert not other["in_sample"] and "calibrated on spot-5m-2024" in other["in"] and "spot-5m-2024" in other["out"]
    later = period_labels(BLUE, SPOT, "2024-02-01", "2024-06-30", home=tmp_path)  # same data, other window
    assert not later["in_sample"]


def test_edited_thresholds_have_no_record_until_calibrate_stores_one(tmp_path):
    cfg = BLUE.with_(entry_threshold=0.03)
    assert calibration_of(cfg, tmp_path) is None
    lab = period_labels(cfg, USDTM, "2023-07-04", "2023-07-21", home=tmp_path)
    assert not lab["in_sample"] and "no calibration record" in lab["note"]
    p = save_calibration(cfg, USDTM, "usdtm-5m-2023", "2023-07-04", "2023-07-21", home=tmp_path)
    assert p.is_file() and calibration_of(cfg, tmp_path)["fingerprint"] == data_fingerprint(
        USDTM, "2023-07-04", "2023-07-21")
    assert period_labels(cfg, USDTM, "2023-07-04", "2023-07-21", home=tmp_path)["in_sample"]
    # the same values on other data are out of sample
    assert not period_labels(cfg, SPOT, "2023-07-04", "2023-07-21", home=tmp_path)["in_sample"]

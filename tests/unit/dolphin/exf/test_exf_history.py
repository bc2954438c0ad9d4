"""ExF history on the REAL recorded files: point-in-time values, publication lags, no look-ahead, bad files."""

import csv
import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from dolphin.exf import REGISTRY, ExfDataError, ExfHistory, family_names
from dolphin.paths import data_root
from dolphin.adapters.sqlite_store import EmbeddedStore
from dolphin.store.port import EXF_LATEST, FEATURES

UTC = timezone.utc
EXF = data_root() / "exf"


def _dt(*a) -> datetime:
    return datetime(*a, tzinfo=UTC)


def _csv(name: str) -> dict[datetime, float]:
    """The recorded file, read independently of the code under test (FRED '.' rows skipped)."""
    with (EXF / f"{name}.csv").open() as fh:
        return {datetime.fromisoformat(r["time"]): float(r["value"]) for r in csv.DictReader(fh)
                if r["value"] not in (".", "")}


@pytest.fixture(scope="module")
def hist() -> ExfHistory:
    return ExfHistory.load()


@pytest.mark.parametrize("name", ["fear_greed", "dvol_btc", "btc_dominance", "usdt_dominance", "spx", "gold", "dxy"])
def test_daily_close_visible_next_day_only(hist, name):
    rows = _csv(name)
    day = _dt(2024, 3, 5)  # a Tuesday: every daily series has both Mar 4 and Mar 5 rows
    assert day in rows and day - timedelta(days=1) in rows
    assert hist.as_of(day + timedelta(days=1)).values[name] == rows[day]
    # during day D the value stamped D is not yet known: the previous day's is
    assert hist.as_of(day + timedelta(hours=23, minutes=59)).values[name] == rows[day - timedelta(days=1)]


def test_funding_visible_at_its_funding_time(hist):
    rows = _csv("funding_btc_8h")
    t = _dt(2024, 3, 5, 8)
    prev = _dt(2024, 3, 5, 0)
    assert t in rows and prev in rows and rows[t] != rows[prev]
    snap = hist.as_of(t)
    assert snap.values["funding_btc_8h"] == rows[t]
    assert snap.observed["funding_btc_8h"] == "2024-03-05T08:00:00.000Z"
    assert hist.as_of(int(t.timestamp() * 1000) - 1).values["funding_btc_8h"] == rows[prev]


def test_fred_daily_not_visible_on_its_day_visible_after_next_business_day(hist):
    rows = _csv("fred_DGS10")
    mon, fri = _dt(2024, 3, 4), _dt(2024, 3, 1)
    assert rows[mon] != rows[fri]
    thu = _dt(2024, 2, 29)
    assert rows[thu] != rows[fri]
    # Friday's value waits for Monday's posting: unknown over the weekend and all of Monday
    for t in (_dt(2024, 3, 2, 12), mon, _dt(2024, 3, 4, 23, 59)):
        assert hist.as_of(t).values["fred_DGS10"] == rows[thu], t
    # Monday's yield is posted on Tuesday (US afternoon): unknown all of Monday and Tuesday
    for t in (mon + timedelta(hours=23), _dt(2024, 3, 5), _dt(2024, 3, 5, 23, 59)):
        assert hist.as_of(t).values["fred_DGS10"] != rows[mon], t
    assert hist.as_of(_dt(2024, 3, 5)).values["fred_DGS10"] == rows[fri]
    assert hist.as_of(_dt(2024, 3, 6)).values["fred_DGS10"] == rows[mon]


def test_fred_holiday_delays_publication(hist):
    # Friday 2024-01-12; Monday 2024-01-15 is Martin Luther King Day -> posted Tuesday, known Wednesday
    rows = _csv("fred_DGS10")
    fri, thu = _dt(2024, 1, 12), _dt(2024, 1, 11)
    assert rows[fri] != rows[thu]
    assert hist.as_of(_dt(2024, 1, 16, 23, 59)).values["fred_DGS10"] == rows[thu]
    assert hist.as_of(_dt(2024, 1, 17)).values["fred_DGS10"] == rows[fri]


def test_fred_monthly_lags(hist):
    ff = _csv("fred_FEDFUNDS")
    assert hist.as_of(_dt(2024, 3, 6, 23)).observed["fred_FEDFUNDS"].startswith("2024-01-01")
    assert hist.as_of(_dt(2024, 3, 7)).values["fred_FEDFUNDS"] == ff[_dt(2024, 2, 1)]
    pce = _csv("fred_PCETRIM12M159SFRBDAL")
    assert hist.as_of(_dt(2024, 3, 4, 23)).observed["fred_PCETRIM12M159SFRBDAL"].startswith("2023-12-01")
    assert hist.as_of(_dt(2024, 3, 5)).values["fred_PCETRIM12M159SFRBDAL"] == pce[_dt(2024, 1, 1)]


def test_unrate_shutdown_delayed_release_not_visible_early(hist):
    un = _csv("fred_UNRATE")
    assert _dt(2025, 9, 1) in un and _dt(2025, 10, 1) not in un  # October 2025 was never published
    before = hist.as_of(_dt(2025, 11, 20, 23))
    assert before.observed["fred_UNRATE"].startswith("2025-08-01")
    # August is the latest known, and by then too old to use (the shutdown left no fresh figure)
    assert before.values["fred_UNRATE"] is None
    assert before.reasons["fred_UNRATE"].startswith("stale: last value 2025-08-01")
    assert hist.as_of(_dt(2025, 11, 21)).values["fred_UNRATE"] == un[_dt(2025, 9, 1)]


def test_stale_value_becomes_none_with_reason(hist):
    last = max(_csv("fear_greed"))  # the recorded history ends here
    ok = hist.as_of(last + timedelta(days=2))
    assert ok.values["fear_greed"] == _csv("fear_greed")[last]
    snap = hist.as_of(last + timedelta(days=10))
    assert snap.values["fear_greed"] is None
    assert snap.reasons["fear_greed"].startswith(f"stale: last value {last:%Y-%m-%d}")


def test_before_any_data_everything_none_with_reasons(hist):
    snap = hist.as_of(_dt(1900, 1, 1))
    assert snap.non_null_count == 0
    assert set(snap.values) == set(REGISTRY) and set(snap.reasons) == set(REGISTRY)
    assert snap.reasons["fred_DGS10"].startswith("before first record (first value 1962-01-02")
    assert snap.reasons["m2"].startswith("no recorded history")


def test_missing_files_degrade_to_none(tmp_path):
    shutil.copy(EXF / "fear_greed.csv", tmp_path / "fear_greed.csv")
    h = ExfHistory.load(tmp_path)
    snap = h.as_of(_dt(2024, 3, 6))
    assert snap.values["fear_greed"] == _csv("fear_greed")[_dt(2024, 3, 5)]
    assert snap.non_null_count == 1
    assert "exf/dvol_btc.csv not found" in snap.reasons["dvol_btc"]
    for name in family_names("unavailable"):
        assert snap.values[name] is None and "not available" in snap.reasons[name]


def _truncate_copy(dst: Path, cut: datetime) -> None:
    dst.mkdir()
    for f in EXF.glob("*.csv"):
        lines = f.read_text().splitlines()
        keep = [lines[0]] + [ln for ln in lines[1:] if datetime.fromisoformat(ln.split(",")[0]) <= cut]
        (dst / f.name).write_text("\n".join(keep) + "\n")


@pytest.mark.parametrize("cut", [_dt(2023, 6, 14, 13, 37), _dt(2024, 1, 16, 9), _dt(2025, 11, 12, 12)])
def test_truncation_no_lookahead(hist, tmp_path, cut):
    _truncate_copy(tmp_path / "exf", cut)
    short = ExfHistory.load(tmp_path)
    full, cutv = hist.as_of(cut), short.as_of(cut)
    assert full.values == cutv.values and full.observed == cutv.observed
    assert full.non_null_count >= 15  # the comparison covers real values, not a page of Nones
    day0 = cut.replace(hour=0, minute=0, second=0, microsecond=0)
    f1 = hist.daily_frame(day0 - timedelta(days=60), day0)
    f2 = short.daily_frame(day0 - timedelta(days=60), day0)
    assert f1.equals(f2)


def test_daily_frame_matches_as_of_at_midnight(hist):
    df = hist.daily_frame("2024-01-10", "2024-03-10")
    assert len(df) == 61 and str(df.index.tz) == "UTC" and list(df.columns) == list(REGISTRY)
    for day in df.index[::7]:
        snap = hist.as_of(day.to_pydatetime())
        for name, v in snap.values.items():
            got = df.at[day, name]
            assert (np.isnan(got) if v is None else got == v), (day, name)
    with pytest.raises(ValueError, match="before start"):
        hist.daily_frame("2024-02-01", "2024-01-01")


@pytest.mark.parametrize("body,match", [
    ("time,value\n2024-01-01T00:00:00Z,1\n2024-13-01T00:00:00Z,2\n", r"exf/fear_greed.csv line 3: unparseable time"),
    ("time,value\n2024-01-01T00:00:00Z,1\n2024-01-02T00:00:00Z,abc\n", r"exf/fear_greed.csv line 3 .*non-numeric"),
    ("time,value\n2024-01-01T00:00:00Z,1\n2024-01-02T00:00:00Z,2\n2024-01-01T00:00:00Z,3\n",
     r"exf/fear_greed.csv line 4: duplicate time 2024-01-01T00:00:00Z .*line 2"),
    ("time,value\n2024-01-01T00:00:00,1\n", r"exf/fear_greed.csv line 2: .*no UTC offset"),
    ("date,val\n2024-01-01T00:00:00Z,1\n", r"exf/fear_greed.csv line 1: header"),
    ("time,value\n2024-01-01T00:00:00Z,nan\n", r"exf/fear_greed.csv line 2 .*non-finite"),
    ("", r"exf/fear_greed.csv: empty file"),
])
def test_malformed_file_error_names_file_and_line(tmp_path, body, match):
    (tmp_path / "fear_greed.csv").write_text(body)
    with pytest.raises(ExfDataError, match=match):
        ExfHistory.load(tmp_path)


def test_fred_missing_marker_and_identical_duplicates_accepted(tmp_path):
    (tmp_path / "fred_DGS10.csv").write_text("time,value\n2024-03-01T00:00:00Z,4.18\n2024-03-04T00:00:00Z,.\n"
                                             "2024-03-04T00:00:00Z,.\n2024-03-01T00:00:00Z,4.18\n")
    h = ExfHistory.load(tmp_path)
    assert len(h.series("fred_DGS10").obs_ms) == 1
    snap = h.as_of(_dt(2024, 3, 7))  # the '.' day is no observation: Friday's value carries forward
    assert snap.values["fred_DGS10"] == 4.18 and snap.observed["fred_DGS10"] == "2024-03-01T00:00:00.000Z"


def test_naive_timestamp_refused(hist):
    with pytest.raises(ValueError, match="timezone-naive"):
        hist.as_of(datetime(2024, 1, 1))
    with pytest.raises(TypeError):
        hist.as_of("2024-01-01")


def test_record_round_trips_through_the_feature_store(hist, tmp_path):
    snap = hist.as_of(_dt(2024, 3, 6, 0, 5))
    rec = snap.to_record()
    assert rec["timestamp"] == "2024-03-06T00:05:00.000Z" and rec["date"] == "2024-03-06"
    assert rec["non_null_count"] == snap.non_null_count and rec["m2"] is None and "m2" in rec["reasons"]
    json.dumps(rec, allow_nan=False)
    store = EmbeddedStore(tmp_path / "features.sqlite")
    try:
        store.put(FEATURES, EXF_LATEST, snap.to_store_record())
        got = store.get(FEATURES, EXF_LATEST)
    finally:
        store.close()
    assert got.timestamp == rec["timestamp"]
    assert got.value["fred_DGS10"] == snap.values["fred_DGS10"] and got.value["reasons"] == snap.reasons

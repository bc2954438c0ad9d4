"""EsoF: calendar, quarterly expiry and lunar factors against known dates."""

import json
from datetime import datetime, timedelta, timezone

import pytest

from dolphin.esof import esof_at, esof_record, next_quarterly_expiry, quarterly_expiry
from dolphin.store.port import Record

UTC = timezone.utc


def _dt(*a) -> datetime:
    return datetime(*a, tzinfo=UTC)


@pytest.mark.parametrize("when", [_dt(2024, 1, 11, 11, 57), _dt(2024, 2, 9, 22, 59), _dt(2025, 3, 29, 10, 58)])
def test_known_new_moons_within_a_day(when):
    e = esof_at(when)
    dist = min(e["lunar_phase"], 1 - e["lunar_phase"]) * 29.530588853
    assert dist < 1.0, (when, e["lunar_phase"])
    assert e["lunar_phase_name"] == "new moon"
    assert e["lunar_illumination"] < 0.02


@pytest.mark.parametrize("when", [_dt(2024, 1, 25, 17, 54), _dt(2024, 9, 18, 2, 34), _dt(2025, 3, 14, 6, 55)])
def test_known_full_moons_within_a_day(when):
    e = esof_at(when)
    assert abs(e["lunar_phase"] - 0.5) * 29.530588853 < 1.0, (when, e["lunar_phase"])
    assert e["lunar_phase_name"] == "full moon"
    assert e["lunar_illumination"] > 0.98


def test_lunar_days_to_next_new_moon_points_at_the_real_one():
    # from 2024-01-20, the next new moon was 2024-02-09 22:59 UTC
    e = esof_at(_dt(2024, 1, 20))
    predicted = _dt(2024, 1, 20) + timedelta(days=e["days_to_new_moon"])
    assert abs((predicted - _dt(2024, 2, 9, 22, 59)).total_seconds()) < 86400


@pytest.mark.parametrize("month,day", [(3, 29), (6, 28), (9, 27), (12, 27)])
def test_quarterly_expiry_2024_last_friday_0800(month, day):
    e = quarterly_expiry(2024, month)
    assert e == _dt(2024, month, day, 8)
    assert e.weekday() == 4


def test_next_expiry_and_days_to_it():
    assert next_quarterly_expiry(_dt(2024, 1, 1)) == _dt(2024, 3, 29, 8)
    assert next_quarterly_expiry(_dt(2024, 3, 29, 8)) == _dt(2024, 3, 29, 8)  # at the instant: still this one
    assert next_quarterly_expiry(_dt(2024, 3, 29, 8, 0, 1)) == _dt(2024, 6, 28, 8)
    assert next_quarterly_expiry(_dt(2024, 12, 28)) == _dt(2025, 3, 28, 8)  # year roll
    e = esof_at(_dt(2024, 9, 26, 8))
    assert e["days_to_quarterly_expiry"] == pytest.approx(1.0)
    assert e["next_quarterly_expiry"] == "2024-09-27T08:00:00.000Z"
    assert not e["is_quarterly_expiry_day"]
    after = esof_at(_dt(2024, 9, 27, 12))  # expiry day, after the expiry instant
    assert after["is_quarterly_expiry_day"] and after["next_quarterly_expiry"].startswith("2024-12-27")
    with pytest.raises(ValueError, match="not a quarterly expiry month"):
        quarterly_expiry(2024, 4)


def test_month_end_flags_and_leap_year():
    assert esof_at(_dt(2024, 2, 29, 23, 59))["is_month_end"]  # leap day is February's last day
    e = esof_at(_dt(2024, 2, 28))
    assert not e["is_month_end"] and e["days_to_month_end"] == 1 and e["is_leap_year"]
    e = esof_at(_dt(2023, 2, 28))
    assert e["is_month_end"] and e["days_to_month_end"] == 0 and not e["is_leap_year"]
    assert esof_at(_dt(2100, 2, 28))["is_month_end"]  # century rule: 2100 is not a leap year
    e = esof_at(_dt(2024, 4, 1))
    assert e["days_to_month_end"] == 29 and e["days_in_month"] == 30
    assert esof_at(_dt(2024, 12, 31, 5))["is_month_end"]


def test_calendar_fields_and_timezone_conversion():
    # 2024-03-10 01:30 in UTC-5 is 06:30 UTC, a Sunday
    e = esof_at(datetime(2024, 3, 10, 1, 30, tzinfo=timezone(timedelta(hours=-5))))
    assert (e["hour_of_day"], e["weekday"], e["weekday_name"], e["is_weekend"]) == (6, 6, "Sunday", True)
    assert e["timestamp"] == "2024-03-10T06:30:00.000Z" and e["day_of_month"] == 10
    assert not esof_at(_dt(2024, 3, 11))["is_weekend"]
    ms = int(_dt(2024, 3, 10, 6, 30).timestamp() * 1000)
    assert esof_at(ms) == e  # epoch ms and datetime agree


def test_naive_and_wrong_input_refused():
    with pytest.raises(ValueError, match="timezone-naive"):
        esof_at(datetime(2024, 1, 1))
    with pytest.raises(TypeError, match="epoch milliseconds"):
        esof_at("2024-01-01")
    with pytest.raises(TypeError):
        esof_at(True)


def test_record_is_json_and_storable():
    rec = esof_record(_dt(2024, 6, 28, 9))
    text = json.dumps(rec, allow_nan=False)
    r = Record.from_json(text)
    assert r.timestamp == "2024-06-28T09:00:00.000Z"
    assert r.value["is_quarterly_expiry_day"] is True and r.value["hour_of_day"] == 9

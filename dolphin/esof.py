"""Esoteric factors (EsoF): calendar / time-of-day / lunar values at an instant. Advisory only (lowest
criticality): nothing here gates trading. All computed from the timestamp alone -- no data, no look-ahead.

Quarterly expiry: Deribit / CME style, last Friday of March, June, September, December at 08:00 UTC.
Lunar phase: mean synodic month (29.530588853 d) from the new moon of 2000-01-06 18:14 UTC; the true moon
deviates from the mean by up to ~0.6 d, so phase times are good to about a day.
"""

from __future__ import annotations

import calendar
import json
import math
import numbers
from datetime import datetime, timedelta, timezone

SYNODIC_MONTH_DAYS = 29.530588853
NEW_MOON_EPOCH = datetime(2000, 1, 6, 18, 14, tzinfo=timezone.utc)
EXPIRY_MONTHS = (3, 6, 9, 12)
EXPIRY_HOUR_UTC = 8
PHASE_NAMES = ("new moon", "waxing crescent", "first quarter", "waxing gibbous", "full moon", "waning gibbous",
               "last quarter", "waning crescent")
WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _utc(ts) -> datetime:
    """Tz-aware datetime or integer epoch ms -> UTC datetime; naive datetimes are refused (ambiguous zone)."""
    if isinstance(ts, datetime):
        if ts.tzinfo is None or ts.tzinfo.utcoffset(ts) is None:
            raise ValueError(f"EsoF: timestamp {ts!r} is timezone-naive; pass a tz-aware datetime (UTC) or epoch ms")
        return ts.astimezone(timezone.utc)
    if isinstance(ts, bool) or not isinstance(ts, numbers.Integral):
        raise TypeError(f"EsoF: timestamp {ts!r}: expected a tz-aware datetime or integer epoch milliseconds")
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=int(ts))


def quarterly_expiry(year: int, month: int) -> datetime:
    """Last Friday of ``month`` at 08:00 UTC (``month`` must be an expiry month)."""
    if month not in EXPIRY_MONTHS:
        raise ValueError(f"month {month} is not a quarterly expiry month {EXPIRY_MONTHS}")
    last = calendar.monthrange(year, month)[1]
    d = datetime(year, month, last, EXPIRY_HOUR_UTC, tzinfo=timezone.utc)
    return d - timedelta(days=(d.weekday() - 4) % 7)  # Friday = 4


def next_quarterly_expiry(ts) -> datetime:
    """First quarterly expiry at or after ``ts``."""
    t = _utc(ts)
    y, m = t.year, t.month
    while True:
        if m in EXPIRY_MONTHS:
            e = quarterly_expiry(y, m)
            if e >= t:
                return e
        m += 1
        if m > 12:
            y, m = y + 1, 1


def lunar_phase(ts) -> dict:
    """Phase fraction (0 new, 0.5 full), the nearest of 8 phase names, illuminated fraction, and days to the
    next new / full moon (mean-month estimates)."""
    t = _utc(ts)
    days = (t - NEW_MOON_EPOCH).total_seconds() / 86400.0
    frac = (days / SYNODIC_MONTH_DAYS) % 1.0
    return {
        "lunar_phase": frac,
        "lunar_phase_name": PHASE_NAMES[int(math.floor(frac * 8 + 0.5)) % 8],
        "lunar_illumination": (1.0 - math.cos(2.0 * math.pi * frac)) / 2.0,
        "days_to_new_moon": ((1.0 - frac) % 1.0) * SYNODIC_MONTH_DAYS,
        "days_to_full_moon": ((0.5 - frac) % 1.0) * SYNODIC_MONTH_DAYS,
    }


def esof_at(ts) -> dict:
    """Calendar, expiry and lunar factors at ``ts`` (tz-aware datetime or epoch ms). JSON types only."""
    t = _utc(ts)
    last_dom = calendar.monthrange(t.year, t.month)[1]
    expiry = next_quarterly_expiry(t)
    out = {
        "timestamp": t.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "date": t.strftime("%Y-%m-%d"),
        "hour_of_day": t.hour,
        "minute_of_day": t.hour * 60 + t.minute,
        "weekday": t.weekday(),  # Monday 0 .. Sunday 6
        "weekday_name": WEEKDAY_NAMES[t.weekday()],
        "is_weekend": t.weekday() >= 5,
        "day_of_month": t.day,
        "days_in_month": last_dom,
        "is_month_end": t.day == last_dom,
        "days_to_month_end": last_dom - t.day,
        "month": t.month,
        "is_leap_year": calendar.isleap(t.year),
        "next_quarterly_expiry": expiry.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "days_to_quarterly_expiry": (expiry - t).total_seconds() / 86400.0,
        "is_quarterly_expiry_day": t.month in EXPIRY_MONTHS and quarterly_expiry(t.year, t.month).date() == t.date(),
    }
    out.update(lunar_phase(t))
    return out


def esof_record(ts) -> dict:
    """``esof_at`` checked to be JSON-serialisable, for ``DOLPHIN_FEATURES/esof_latest``
    (``Record.from_json(json.dumps(esof_record(t)))`` gives the store record)."""
    rec = esof_at(ts)
    json.dumps(rec, allow_nan=False)
    return rec

"""UTC millisecond time helpers."""

from datetime import datetime, timezone

import numpy as np

DAY_MS = 86_400_000


def fmt_ms(ms) -> str:
    return datetime.fromtimestamp(int(ms) / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def parse_time(s: str) -> int:
    """'2024-03-01', '2024-03-01T12:00', '2024-03-01 12:00:00' (UTC) or unix ms -> ms."""
    s = s.strip()
    if s.isdigit():
        return int(s)
    dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


def day_start_ms(day: str) -> int:
    """00:00 UTC of ``day`` ('YYYY-MM-DD' or a longer time string of that day) in ms; not a UTC day -> ValueError."""
    ms = parse_time(str(day)[:10])
    if ms % DAY_MS:
        raise ValueError(f"{day!r} is not a UTC day")
    return ms


def day_floor(ms):
    return (np.asarray(ms, dtype=np.int64) // DAY_MS) * DAY_MS


def day_str(ms) -> str:
    return datetime.fromtimestamp(int(ms) / 1000, tz=timezone.utc).strftime("%Y-%m-%d")


_BAR_UNITS = (("w", 7 * DAY_MS), ("d", DAY_MS), ("h", 3_600_000), ("m", 60_000), ("s", 1000))


def bar_label(ms) -> str:
    """300000 -> '5m', 3600000 -> '1h'; odd sizes as '<n>ms'."""
    ms = int(ms)
    for unit, size in _BAR_UNITS:
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def parse_bar(s) -> int:
    """'5m', '1h', '1d', '1w', '30s' or plain milliseconds -> ms."""
    s = str(s).strip()
    if s.isdigit():
        return int(s)
    for unit, size in _BAR_UNITS:
        if s.endswith(unit) and s[:-1].isdigit() and int(s[:-1]) > 0:
            return int(s[:-1]) * size
    raise ValueError(f"bar interval {s!r}: expected e.g. 5m, 1h, 1d, 1w or milliseconds")

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


def day_floor(ms):
    return (np.asarray(ms, dtype=np.int64) // DAY_MS) * DAY_MS


def day_str(ms) -> str:
    return datetime.fromtimestamp(int(ms) / 1000, tz=timezone.utc).strftime("%Y-%m-%d")

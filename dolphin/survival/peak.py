"""Cat5's reference equity (DESIGN.md "Survival stack"): the highest equity of the last ``cat5_peak_days``
days, not the all-time peak. With the all-time peak a flat book in TURTLE (no new entries) can never earn
back its drawdown, so Cat5 never rises and the posture never leaves TURTLE (measured on real data, issue 14).

``RollingPeak`` is a monotonic deque over (time, equity) samples: ``push`` is amortised O(1), ``peak(now)``
is the maximum of the samples stamped in (now - days, now]. ``days`` None or 0: the all-time peak (the old
rule, kept for comparisons).
"""

from collections import deque

DAY_MS = 86_400_000
DEFAULT_PEAK_DAYS = 30.0


class RollingPeak:
    def __init__(self, days: float | None = DEFAULT_PEAK_DAYS):
        if days is not None and days < 0:
            raise ValueError(f"cat5 peak window must be >= 0 days (0 / None = all-time), got {days}")
        self.window_ms = int(days * DAY_MS) if days else None
        self._q: deque = deque()  # (t_ms, equity), equities strictly decreasing from left to right
        self._last_t = None

    def push(self, t_ms: int, equity: float) -> None:
        t = int(t_ms)
        if self._last_t is not None and t < self._last_t:
            raise ValueError(f"equity sample at {t} ms is older than the last one ({self._last_t} ms)")
        self._last_t = t
        q = self._q
        while q and q[-1][1] <= equity:
            q.pop()
        q.append((t, float(equity)))

    def peak(self, now_ms: int) -> float | None:
        """Highest equity stamped within the window ending at ``now_ms`` (None before any sample)."""
        q = self._q
        if self.window_ms is not None:
            lo = int(now_ms) - self.window_ms
            # the newest sample always stays: a window with no new mark keeps the last known equity
            while len(q) > 1 and q[0][0] <= lo:
                q.popleft()
        return q[0][1] if q else None

    def drawdown(self, now_ms: int, equity: float) -> float:
        """1 - equity / peak, in [0, 1]; the current equity counts as a sample."""
        self.push(now_ms, equity)
        pk = self.peak(now_ms)
        return min(1.0, max(0.0, 1.0 - equity / pk)) if pk and pk > 0 else 1.0

    def to_dict(self) -> dict:
        """The carried state (the daily chain stores it with the day's closing state): the window and the
        monotonic samples, so a restored peak answers exactly as this one would."""
        return {"window_ms": self.window_ms, "last_t": self._last_t, "samples": [[t, e] for t, e in self._q]}

    @classmethod
    def from_dict(cls, d: dict, days: float | None) -> "RollingPeak":
        out = cls(days)
        if d.get("window_ms") != out.window_ms:
            raise ValueError(f"cat5 peak state was saved with a {d.get('window_ms')} ms window, the config now has "
                             f"{out.window_ms} ms (cat5_peak_days changed: re-run the chain from its start)")
        out._q = deque((int(t), float(e)) for t, e in d["samples"])
        out._last_t = None if d.get("last_t") is None else int(d["last_t"])
        return out

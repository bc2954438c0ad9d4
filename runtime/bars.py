"""Bar-set assembly for ``DolphinStrategy``: the N instruments' bars of one bar close, gathered in any
arrival order, completed when all N arrived (or, by the strategy's timer, incomplete: missing closes
forward-filled, those instruments not tradable for that bar). No decisions and no Nautilus calls here.
"""

import numpy as np

NS_PER_MS = 1_000_000


def grid_close_ms(ts_event_ns: int, bar_ms: int) -> int:
    """The grid bar close a bar stamped ``ts_event_ns`` belongs to: Binance stamps klines at close - 1 ms,
    replay at the close; both map to the grid close."""
    return -(-int(ts_event_ns) // (NS_PER_MS * bar_ms)) * bar_ms


class BarSet:
    """The bar set being assembled: ``close_ms`` (None between sets), ``got`` (which arrived),
    ``open`` (Price objects: converted only where needed, funding), ``close`` (floats)."""

    def __init__(self, n: int):
        self.N = n
        self.close_ms = None
        self.got = np.zeros(n, np.bool_)
        self.n_got = 0
        self.open = [None] * n
        self.close = np.zeros(n)
        self.last_arrival = 0  # perf_counter_ns of the bar that completed the set (latency log)

    def start(self, close_ms: int) -> None:
        self.close_ms = close_ms
        self.got[:] = False
        self.n_got = 0

    def add(self, i: int, open_px, close: float, arrival_ns: int) -> bool:
        """Record instrument ``i``'s bar; True when the set is complete."""
        if not self.got[i]:
            self.got[i] = True
            self.n_got += 1
        self.open[i] = open_px
        self.close[i] = close
        self.last_arrival = arrival_ns
        return self.n_got == self.N

    def take(self):
        """End the set: ``(close_ms, got)``."""
        close_ms, self.close_ms = self.close_ms, None
        return close_ms, self.got.copy()

    def forward_fill(self, got: np.ndarray, last_close: np.ndarray) -> bool:
        """Missing instruments take the previous close as open and close; False if one never had a close."""
        if np.isnan(last_close[~got]).any():
            return False
        self.close[~got] = last_close[~got]
        for i in np.flatnonzero(~got):
            self.open[i] = float(last_close[i])
        return True

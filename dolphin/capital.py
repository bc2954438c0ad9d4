"""The capital chain's records: what one strategy day produced (``DayRecord``) and one ledger row
(``LedgerEntry``). Plain values with no I/O, so the pure day runner (``dolphin.daily``) builds and reads them
without importing the SQLite ledger (``dolphin.ledger``) that stores them.
"""

import json
from dataclasses import asdict, dataclass


def canon(obj) -> str:
    # sorted keys + repr floats: equal JSON text <=> equal values (NaN included, unlike ==)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class DayRecord:
    """What one day run produced."""

    opening_equity: float
    closing_equity: float
    closing_capital: float
    opening_state: dict
    closing_state: dict
    trades: list  # closed trades, JSON-able dicts (pnl, fees, funding, ...)
    bars: int

    @property
    def n_trades(self) -> int:
        return len(self.trades)

    def fingerprint(self) -> str:
        return canon(asdict(self))


@dataclass(frozen=True)
class LedgerEntry:
    seq: int
    strategy: str
    day: str
    version: int
    kind: str  # 'day' or 'void'
    recorded_at: str
    run_id: str | None
    note: str
    record: DayRecord | None  # None for a void row
    peak: float | None
    drawdown: float | None
    superseded: bool

    @property
    def pnl(self) -> float:
        return self.record.closing_equity - self.record.opening_equity

    @property
    def ret(self) -> float:
        r = self.record
        return r.closing_equity / r.opening_equity - 1.0 if r.opening_equity > 0 else float("nan")

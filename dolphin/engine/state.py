"""Engine state carried between runs (day partitions, restarts): capital, open position, pending order.

Stored with absolute times and symbols (JSON-friendly) so it survives universe changes and is what the
capital ledger persists; converted to the kernel's vector form relative to a run's first bar."""

from dataclasses import asdict, dataclass, field

import numpy as np

from dolphin.engine import kernel as K


class StateError(ValueError):
    pass


@dataclass
class EngineState:
    capital: float
    as_of_ms: int | None = None  # close time of the last bar simulated (None: never run)
    position: dict | None = None  # symbol, side, qty, entry_price, notional, leverage, entry_time_ms, fees, ...
    pending: dict | None = None  # order decided at the last scan, to execute at the next bar's open
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "EngineState":
        return cls(**d)

    @classmethod
    def fresh(cls, capital: float) -> "EngineState":
        return cls(capital=float(capital))

    def to_vector(self, symbols: list, open_time0: int, bar_ms: int) -> np.ndarray:
        v = K.initial_state(self.capital)
        idx = {s: i for i, s in enumerate(symbols)}
        if self.position:
            p = self.position
            if p["symbol"] not in idx:
                raise StateError(f"open position in {p['symbol']} but the run's universe does not contain it")
            v[K.S_INPOS] = 1.0
            v[K.S_ASSET], v[K.S_SIDE], v[K.S_QTY] = idx[p["symbol"]], p["side"], p["qty"]
            v[K.S_EPX], v[K.S_NOTIONAL], v[K.S_LEV] = p["entry_price"], p["notional"], p["leverage"]
            v[K.S_EBAR] = (int(p["entry_time_ms"]) - int(open_time0)) // int(bar_ms)
            v[K.S_FEES], v[K.S_FUND] = p["fees"], p["funding"]
            v[K.S_EPOST], v[K.S_EBOOST], v[K.S_CAPB] = p["entry_posture"], p["entry_boost"], p["capital_before"]
            v[K.S_SIG], v[K.S_MAKER] = p["signal"], 1.0 if p["maker_entry"] else 0.0
        if self.pending:
            q = self.pending
            if q["symbol"] not in idx:
                raise StateError(f"pending order in {q['symbol']} but the run's universe does not contain it")
            v[K.S_PEND] = 1 if q["kind"] == "entry" else 2
            v[K.S_PASSET], v[K.S_PSIDE], v[K.S_PLIMIT] = idx[q["symbol"]], q["side"], 1.0 if q["limit"] else 0.0
            v[K.S_PNOTIONAL], v[K.S_PLEV], v[K.S_PPX] = q["notional"], q["leverage"], q["price"]
            v[K.S_PSIG], v[K.S_PPOST], v[K.S_PREASON] = q["signal"], q["posture"], q["reason"]
            if q["kind"] == "entry":
                v[K.S_EBOOST] = q["boost"]
        return v

    @classmethod
    def from_vector(cls, v: np.ndarray, symbols: list, open_time0: int, bar_ms: int, as_of_ms: int) -> "EngineState":
        st = cls(capital=float(v[K.S_CAP]), as_of_ms=int(as_of_ms))
        if v[K.S_INPOS] > 0:
            st.position = {
                "symbol": symbols[int(v[K.S_ASSET])], "side": int(v[K.S_SIDE]), "qty": float(v[K.S_QTY]),
                "entry_price": float(v[K.S_EPX]), "notional": float(v[K.S_NOTIONAL]), "leverage": float(v[K.S_LEV]),
                "entry_time_ms": int(open_time0) + int(v[K.S_EBAR]) * int(bar_ms),
                "fees": float(v[K.S_FEES]), "funding": float(v[K.S_FUND]), "entry_posture": int(v[K.S_EPOST]),
                "entry_boost": float(v[K.S_EBOOST]), "capital_before": float(v[K.S_CAPB]),
                "signal": float(v[K.S_SIG]), "maker_entry": bool(v[K.S_MAKER] > 0),
            }
        if v[K.S_PEND] > 0:
            st.pending = {
                "kind": "entry" if int(v[K.S_PEND]) == 1 else "exit", "symbol": symbols[int(v[K.S_PASSET])],
                "side": int(v[K.S_PSIDE]), "limit": bool(v[K.S_PLIMIT] > 0), "notional": float(v[K.S_PNOTIONAL]),
                "leverage": float(v[K.S_PLEV]), "price": float(v[K.S_PPX]), "signal": float(v[K.S_PSIG]),
                "posture": int(v[K.S_PPOST]), "reason": int(v[K.S_PREASON]),
                "boost": float(v[K.S_EBOOST]) if int(v[K.S_PEND]) == 1 else 1.0,
            }
        return st

"""Binance USDT-M perpetual instruments for the replay venue.

Live and sandbox nodes never use these: the Binance adapter's instrument provider loads the exchange's
own specs (tick size, step size, filters) from exchangeInfo. Replay instruments are built from the
recorded data instead, with a finer grid than the exchange's, because the replay must reproduce the
dolphin engine's float arithmetic (TP = entry x (1 - 95 bps), open x (1 ± slippage), qty = notional /
price) and every rounding Nautilus applies to a price or a quantity shows up as a parity difference:

- price precision: at least the data's own decimals (so every recorded price is exact on the grid)
  and at least ``sig_digits`` significant digits at the smallest price seen (so derived prices round
  by < 1e-10 relative), capped at Nautilus's fixed precision (16 in the high-precision build);
- size precision: a step worth < 1e-7 of a unit of the largest price, i.e. a quantity rounding error
  far below a cent on any notional this engine trades.

Ids follow the Nautilus Binance adapter (``BTCUSDT-PERP.BINANCE``) so that a strategy configured for
replay subscribes to the same instrument and bar ids on a live node.
"""

import math
from decimal import Decimal

import numpy as np
from nautilus_trader.model.currencies import USDT
from nautilus_trader.model.data import BarType
from nautilus_trader.model.identifiers import InstrumentId, Symbol, Venue
from nautilus_trader.model.instruments import CryptoPerpetual
from nautilus_trader.model.objects import FIXED_PRECISION, Currency, Price, Quantity

from dolphin.timeutil import bar_label

VENUE = Venue("BINANCE")
MAKER_FEE = Decimal("0.0002")  # Binance USDT-M regular tier
TAKER_FEE = Decimal("0.0005")
QUOTE = "USDT"


def instrument_id(symbol: str) -> InstrumentId:
    return InstrumentId(Symbol(f"{symbol}-PERP"), VENUE)


def symbol_of(iid: InstrumentId) -> str:
    s = iid.symbol.value
    return s[:-5] if s.endswith("-PERP") else s


def bar_spec(bar_ms: int) -> str:
    """Nautilus bar spec for a bar length in ms: 300000 -> '5-MINUTE'."""
    for unit, size in (("DAY", 86_400_000), ("HOUR", 3_600_000), ("MINUTE", 60_000), ("SECOND", 1000)):
        if bar_ms % size == 0:
            return f"{bar_ms // size}-{unit}"
    raise ValueError(f"bar length {bar_ms} ms ({bar_label(bar_ms)}) has no Nautilus bar spec")


def bar_type(symbol: str, bar_ms: int) -> BarType:
    # EXTERNAL: the venue's own bars (Binance klines), LAST: trade prices
    return BarType.from_str(f"{instrument_id(symbol)}-{bar_spec(bar_ms)}-LAST-EXTERNAL")


def decimals(values: np.ndarray, max_decimals: int = FIXED_PRECISION) -> int:
    """Fewest decimals that represent every value exactly (as its shortest decimal string)."""
    v = np.unique(np.asarray(values, dtype=np.float64))
    v = v[np.isfinite(v)]
    for d in range(max_decimals + 1):
        if np.all(np.round(v, d) == v):
            return d
    return max_decimals


def price_precision_for(prices: np.ndarray, sig_digits: int = 10) -> int:
    p = np.asarray(prices, dtype=np.float64)
    p = p[np.isfinite(p) & (p > 0)]
    if p.size == 0:
        return 8
    sig = math.ceil(-math.log10(float(p.min()))) + sig_digits
    return int(min(FIXED_PRECISION, max(decimals(p), sig)))


def size_precision_for(prices: np.ndarray, rel_digits: int = 7) -> int:
    p = np.asarray(prices, dtype=np.float64)
    p = p[np.isfinite(p) & (p > 0)]
    if p.size == 0:
        return 3
    return int(min(FIXED_PRECISION, max(0, math.ceil(math.log10(float(p.max()))) + rel_digits)))


def make_perpetual(symbol: str, *, price_precision: int = 2, size_precision: int = 3,
                   maker_fee: Decimal = MAKER_FEE, taker_fee: Decimal = TAKER_FEE,
                   max_leverage: float = 6.0, maintenance_margin: float = 0.004, ts: int = 0) -> CryptoPerpetual:
    """A linear USDT-margined perpetual. ``margin_init`` = 1 / max_leverage (isolated margin at the
    highest leverage the engine may use), ``margin_maint`` = Binance's lowest-tier maintenance rate."""
    if not symbol.endswith(QUOTE) or len(symbol) <= len(QUOTE):
        raise ValueError(f"{symbol!r}: not a USDT-quoted symbol (USDT-M perpetuals are quoted in USDT)")
    base = Currency.from_str(symbol[: -len(QUOTE)], strict=False)
    return CryptoPerpetual(
        instrument_id=instrument_id(symbol),
        raw_symbol=Symbol(symbol),
        base_currency=base,
        quote_currency=USDT,
        settlement_currency=USDT,
        is_inverse=False,
        price_precision=price_precision,
        size_precision=size_precision,
        price_increment=Price(10.0 ** -price_precision, price_precision),
        size_increment=Quantity(10.0 ** -size_precision, size_precision),
        ts_event=ts,
        ts_init=ts,
        margin_init=Decimal(1) / Decimal(str(max_leverage)),
        margin_maint=Decimal(str(maintenance_margin)),
        maker_fee=Decimal(maker_fee),
        taker_fee=Decimal(taker_fee),
    )


def instruments_for_panel(panel, *, maker_fee=MAKER_FEE, taker_fee=TAKER_FEE, max_leverage: float = 6.0,
                          maintenance_margin: float = 0.004, sig_digits: int = 10) -> dict:
    """symbol -> CryptoPerpetual with precisions derived from the panel's own prices."""
    out = {}
    for j, s in enumerate(panel.symbols):
        px = np.concatenate([panel.open[:, j], panel.high[:, j], panel.low[:, j], panel.close[:, j]])
        out[s] = make_perpetual(s, price_precision=price_precision_for(px, sig_digits),
                                size_precision=size_precision_for(px), maker_fee=Decimal(str(maker_fee)),
                                taker_fee=Decimal(str(taker_fee)), max_leverage=max_leverage,
                                maintenance_margin=maintenance_margin)
    return out


def to_float(x) -> float:
    """Exact float of a Nautilus Price/Quantity: the nearest double to its decimal value.

    ``as_double()`` divides the fixed-point raw value in floating point and is off by one ulp for
    ~1/3 of BTC prices; the decimal string round-trips to the very float a recorded data set (or
    Binance's JSON) holds, which keeps the live scanner bit-identical to the batch one."""
    return float(str(x))

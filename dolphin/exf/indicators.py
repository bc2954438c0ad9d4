"""ExF indicator registry: the fixed names other modules rely on, with family, unit, source, cadence,
publication lag (when a value becomes knowable) and staleness limit.

Name = the recorded file's stem in ``<data>/exf/``. Families and live sources:

- ``fear_greed``       alternative.me Fear & Greed (live fetcher)
- ``deribit``          Deribit DVOL (live fetcher)
- ``binance_funding``  Binance USDT-M funding (live fetcher)
- ``fred``             FRED CSV, every ``fred_*`` series and the reverse repo (live fetcher)
- ``market``           dominance / DXY / SPX / gold: recorded history only, NO live fetcher
- ``unavailable``      listed so consumers degrade to ``None`` with a reason (no history, no source)

Publication rules are conservative on purpose: a backtest must never see a value before a live system
could have had it. Each rule maps an observation time to the earliest instant it is treated as known.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache

import numpy as np

DAY_MS = 86_400_000

FEAR_GREED, DERIBIT, BINANCE_FUNDING, FRED, MARKET, UNAVAILABLE = (
    "fear_greed", "deribit", "binance_funding", "fred", "market", "unavailable")
FAMILIES = (FEAR_GREED, DERIBIT, BINANCE_FUNDING, FRED, MARKET, UNAVAILABLE)
LIVE_FAMILIES = (FEAR_GREED, DERIBIT, BINANCE_FUNDING, FRED)

AT_TIME, NEXT_DAY, US_BUSINESS_DAY, FIXED_DAYS, MONTHLY = (
    "at_time", "next_day", "us_business_day", "fixed_days", "monthly")


@lru_cache(maxsize=1)
def _us_holidays() -> np.ndarray:
    # US federal holidays = Federal Reserve / FRED non-publication days (H.15 is not released on them)
    from pandas.tseries.holiday import USFederalHolidayCalendar

    return np.asarray(USFederalHolidayCalendar().holidays("1940-01-01", "2045-12-31").values.astype("datetime64[D]"))


@dataclass(frozen=True)
class Publication:
    """When an observation dated ``obs`` becomes available (all instants UTC).

    - ``at_time``:         at ``obs`` itself (funding rates are known at their funding time)
    - ``next_day``:        00:00 of the calendar day after obs's day (daily closes)
    - ``us_business_day``: 00:00 of the day after the next US business day after obs's day (FRED daily: the
                           value for D is posted during the next business day, US afternoon)
    - ``fixed_days``:      00:00 of obs's day + ``days``
    - ``monthly``:         day ``day_of_month`` 00:00 of the month ``months`` after obs's month
    ``overrides``: (observation day, available day) pairs for known off-schedule releases; always later.
    """

    kind: str
    days: int = 0
    months: int = 0
    day_of_month: int = 1
    overrides: tuple[tuple[str, str], ...] = ()

    def __post_init__(self):
        if self.kind not in (AT_TIME, NEXT_DAY, US_BUSINESS_DAY, FIXED_DAYS, MONTHLY):
            raise ValueError(f"unknown publication rule {self.kind!r}")

    def describe(self) -> str:
        text = {
            AT_TIME: "available at the observation time",
            NEXT_DAY: "day D available D+1 00:00 UTC (that day's close)",
            US_BUSINESS_DAY: "day D available 00:00 UTC after the next US business day (FRED posts D's value "
                             "on the next business day, US afternoon)",
            FIXED_DAYS: f"day D available D+{self.days} 00:00 UTC",
            MONTHLY: f"month M available on day {self.day_of_month} of M+{self.months}, 00:00 UTC",
        }[self.kind]
        if self.overrides:
            text += "; known late releases: " + ", ".join(f"{o} -> {a}" for o, a in self.overrides)
        return text

    def available_ms(self, obs_ms: np.ndarray) -> np.ndarray:
        """Vectorised: observation epoch ms -> availability epoch ms (int64)."""
        obs = np.asarray(obs_ms, dtype=np.int64)
        day = obs.astype("datetime64[ms]").astype("datetime64[D]")
        if self.kind == AT_TIME:
            out = obs.copy()
        elif self.kind == NEXT_DAY:
            out = _ms(day + np.timedelta64(1, "D"))
        elif self.kind == FIXED_DAYS:
            out = _ms(day + np.timedelta64(self.days, "D"))
        elif self.kind == US_BUSINESS_DAY:
            # roll='backward': a weekend/holiday observation counts from the business day before it
            nb = np.busday_offset(day, 1, roll="backward", holidays=_us_holidays())
            out = _ms(nb + np.timedelta64(1, "D"))
        else:
            month = day.astype("datetime64[M]") + np.timedelta64(self.months, "M")
            out = _ms(month.astype("datetime64[D]") + np.timedelta64(self.day_of_month - 1, "D"))
        for obs_day, avail_day in self.overrides:
            o = np.datetime64(obs_day, "D")
            a = _ms(np.datetime64(avail_day, "D"))
            out = np.where(day == o, np.maximum(out, a), out)
        return out


def _ms(d: np.ndarray) -> np.ndarray:
    return np.asarray(d).astype("datetime64[ms]").astype(np.int64)


@dataclass(frozen=True)
class Indicator:
    name: str
    family: str
    unit: str
    source: str
    cadence: str  # "8h" | "daily" | "business-daily" | "monthly" | "none"
    publication: Publication | None  # None for indicators without any data
    max_age_days: float | None  # older observation -> None ("stale")
    has_history: bool  # a recorded file exists in <data>/exf/
    live: bool  # a live fetcher exists (dolphin.adapters.exf_http)
    fred_id: str | None = None
    note: str = field(default="")

    @property
    def max_age_ms(self) -> int | None:
        return None if self.max_age_days is None else int(self.max_age_days * DAY_MS)

    @property
    def lag_rule(self) -> str:
        return self.publication.describe() if self.publication else "no data source"


_CRYPTO_DAILY = Publication(NEXT_DAY)
_FRED_DAILY = Publication(US_BUSINESS_DAY)


def _fred(name: str, unit: str, *, pub: Publication = _FRED_DAILY, cadence: str = "business-daily",
          max_age: float = 7, note: str = "", fred_id: str | None = None) -> Indicator:
    fid = fred_id or name.removeprefix("fred_")
    return Indicator(name, FRED, unit, f"FRED {fid} (fredgraph.csv)", cadence, pub, max_age, True, True, fid,
                     note or "business days only; max age covers weekend + holiday")


def _market(name: str, unit: str, source: str, max_age: float, note: str) -> Indicator:
    return Indicator(name, MARKET, unit, source, "daily", _CRYPTO_DAILY, max_age, True, False,
                     note=note + "; recorded history only, no live fetcher")


_REGISTRY: tuple[Indicator, ...] = (
    Indicator("fear_greed", FEAR_GREED, "index 0-100", "alternative.me /fng/", "daily", _CRYPTO_DAILY, 3, True,
              True, note="value stamped D 00:00 is treated as D's close: available D+1"),
    Indicator("dvol_btc", DERIBIT, "annualised % (30d implied vol)", "Deribit get_volatility_index_data BTC 1D",
              "daily", _CRYPTO_DAILY, 3, True, True, note="daily candle close; candle opening D closes D+1 00:00"),
    Indicator("funding_btc_8h", BINANCE_FUNDING, "fraction per 8h", "Binance fapi/v1/fundingRate BTCUSDT", "8h",
              Publication(AT_TIME), 1, True, True, note="settled at fundingTime (00/08/16 UTC)"),
    _market("btc_dominance", "% of total market cap", "CoinGecko via recorded files", 3, "crypto daily"),
    _market("usdt_dominance", "% of total market cap", "CoinGecko via recorded files", 3, "crypto daily"),
    _market("stablecoin_dominance", "% of total market cap", "CoinGecko via recorded files", 3,
            "crypto daily, history from 2025-05"),
    _market("dxy", "index", "US dollar index close via recorded files", 6, "trading days; max age covers a "
            "long weekend"),
    _market("spx", "index points", "S&P 500 close via recorded files", 6, "trading days; max age covers a "
            "long weekend"),
    _market("gold", "USD/oz", "gold futures close via recorded files", 6, "trading days; max age covers a "
            "long weekend"),
    _fred("rrp_fred_RRPONTSYD", "USD", fred_id="RRPONTSYD"),
    _fred("fred_DGS10", "%"),
    _fred("fred_DGS2", "%"),
    _fred("fred_DGS30", "%"),
    _fred("fred_T10Y2Y", "percentage points"),
    _fred("fred_T10YIE", "%"),
    _fred("fred_DFII10", "%"),
    _fred("fred_FEDFUNDS", "%", pub=Publication(MONTHLY, months=1, day_of_month=7), cadence="monthly",
          max_age=70, note="monthly average dated M-01, posted in the first business days of M+1"),
    # Employment Situation: first Friday of M+1 (at the latest ~the 10th). The 2025 federal shutdown delayed
    # September 2025 (released 2025-11-20) and November 2025 (2025-12-16); October 2025 was never published.
    _fred("fred_UNRATE", "%", pub=Publication(MONTHLY, months=1, day_of_month=12,
                                              overrides=(("2025-09-01", "2025-11-21"), ("2025-11-01", "2025-12-17"))),
          cadence="monthly", max_age=100,
          note="BLS release first Friday of M+1; other shutdown-delayed releases are not modelled"),
    _fred("fred_BAMLH0A0HYM2", "percentage points", note="ICE BofA HY OAS; FRED keeps ~3 years"),
    # EIA publishes daily spot prices weekly (Wednesdays): an observation can be up to ~10 days old when posted
    _fred("fred_DCOILWTICO", "USD/bbl", pub=Publication(FIXED_DAYS, days=10), max_age=17,
          note="EIA weekly release of daily spot prices"),
    _fred("fred_NASDAQCOM", "index points"),
    _fred("fred_PCETRIM12M159SFRBDAL", "% y/y", pub=Publication(MONTHLY, months=2, day_of_month=5),
          cadence="monthly", max_age=100,
          note="Dallas Fed trimmed mean; posted with BEA personal income ~end of M+1; shutdown delays not modelled"),
)

_UNAVAILABLE = (
    ("dvol_eth", "Deribit ETH DVOL"), ("jobless_claims", "US initial jobless claims"), ("m2", "US M2 money stock"),
    ("btc_hashrate", "BTC network hashrate"), ("usdc_supply", "USDC circulating supply"),
    ("orderbook_depth", "order-book depth"), ("taker_buy_volume", "taker-buy volume"),
)

REGISTRY: dict[str, Indicator] = {i.name: i for i in _REGISTRY}
REGISTRY.update({n: Indicator(n, UNAVAILABLE, "", what, "none", None, None, False, False,
                              note="no recorded history and no live source: always None")
                 for n, what in _UNAVAILABLE})

INDICATOR_NAMES: tuple[str, ...] = tuple(REGISTRY)
RECORDED_NAMES: tuple[str, ...] = tuple(n for n, i in REGISTRY.items() if i.has_history)


def indicator(name: str) -> Indicator:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown ExF indicator {name!r}; known: {', '.join(INDICATOR_NAMES)}") from None


def family_names(family: str) -> tuple[str, ...]:
    if family not in FAMILIES:
        raise KeyError(f"unknown ExF family {family!r}; known: {', '.join(FAMILIES)}")
    return tuple(n for n, i in REGISTRY.items() if i.family == family)


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(int(ms) / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")

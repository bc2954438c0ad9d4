"""The market data source of ``market_bars``."""

from typing import List

from dagster import ConfigurableResource
from pydantic import Field

from dolphin_assets.resources.home import under_home
from dolphin_assets.settings import SETTINGS


class MarketData(ConfigurableResource):
    """Where candles come from: a local folder / set name, or the Binance public archive (downloaded
    into a cache with dolphin.adapters.binance_archive, then read from there)."""

    kind: str = Field(default=SETTINGS.source, description="folder | binance_archive")
    data: str = Field(default=SETTINGS.data, description="folder source: set name under <data>/klines or a path")
    symbols: List[str] = Field(default=list(SETTINGS.symbols), description="binance_archive source: symbols")
    interval: str = Field(default=SETTINGS.interval, description="binance_archive source: kline interval")
    market: str = Field(default=SETTINGS.market, description="binance_archive source: spot | um")
    cache_dir: str = Field(default="", description="binance_archive cache (default <data home>/binance-archive, "
                                                   "shared with `dolphin data download`)")

    def load_day(self, start_ms: int, end_ms: int, warmup_bars: int):
        from dolphin.data import load_panel

        if self.kind == "folder":
            return load_panel(self.data, start_ms=start_ms, end_ms=end_ms, warmup_bars=warmup_bars)
        if self.kind != "binance_archive":
            raise ValueError(f"market data kind {self.kind!r}: expected folder or binance_archive")
        from dolphin.adapters.binance_archive import download_klines
        from dolphin.timeutil import parse_bar

        cache = under_home(self.cache_dir, "binance-archive")
        first = start_ms - (warmup_bars + 1) * parse_bar(self.interval)
        got = download_klines(list(self.symbols), self.interval, _utc_date(first), _utc_date(end_ms),
                              market=self.market, cache_dir=cache)
        # the cache mirrors the archive's folder tree; the readers take one flat folder: link this window's zips
        flat = cache / "views" / f"{self.market}-{self.interval}-{_utc_date(first)}-{_utc_date(end_ms)}"
        flat.mkdir(parents=True, exist_ok=True)
        for f in got.all_files():
            try:
                (flat / f.name).symlink_to(f)
            except FileExistsError:
                pass
        return load_panel(flat, start_ms=start_ms, end_ms=end_ms, warmup_bars=warmup_bars,
                          symbols=list(self.symbols), timeframe=self.interval)


def _utc_date(ms: int):
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).date()

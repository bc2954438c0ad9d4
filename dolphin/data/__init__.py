"""Market data: candle contracts, readers, Binance archive downloader, grid alignment."""

from dolphin.data.contracts import Candles, DataIssue, Panel, DataError

__all__ = ["Candles", "DataIssue", "Panel", "DataError"]

"""Market data: candle contracts, readers, grid alignment (the Binance archive downloader is dolphin.adapters.binance_archive)."""

from dolphin.data.contracts import Candles, DataIssue, Panel, DataError
from dolphin.data.readers import read_candles
from dolphin.data.align import AlignRules, align
from dolphin.data.loader import load_panel

__all__ = ["Candles", "DataIssue", "Panel", "DataError", "read_candles", "align", "AlignRules", "load_panel"]

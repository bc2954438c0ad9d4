"""A local Binance USD-M futures venue that replays recorded candles (``dolphin venue``).

- ``venue.market``: the replayed data set (candles, funding, symbol filters, synthetic depth).
- ``venue.exchange``: orders, fills (the backtest kernel's rules), positions, fees, funding.
- ``venue.server``: Binance's REST and routed WebSocket formats over starlette/uvicorn.
- ``venue.cli``: the ``dolphin venue`` command.
"""

"""DOLPHIN runtime: the fast-doing layer on NautilusTrader.

- ``instruments``: Binance USDT-M perpetual instruments for replay (live nodes load the exchange's own).
- ``risk``: the ``RiskSource`` port (posture, Rm, ACB boost, MC status) read before every decision.
- ``strategy``: ``DolphinStrategy``, the live scanner + the shared dolphin.engine decision functions.
  Its parts: ``bars`` (bar-set assembly), ``market`` (scanner / vol regime / ranking state),
  ``accounting`` (capital, pending entry, open trade, funding, trade list from fills).
- ``replay``: paper replay of recorded real bars through a Nautilus ``BacktestEngine``.
- ``nodes``: sandbox / live ``TradingNode`` configurations for Binance USDT-M (keys from env only).
- ``cli``: ``dolphin runtime paper|sandbox|live``.

Nautilus is imported by these modules, never by ``dolphin/`` (the domain core stays I/O- and
framework-free).
"""

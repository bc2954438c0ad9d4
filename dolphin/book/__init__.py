"""Order-book features (DESIGN.md "Order-book features"): ``features`` (pure formulas shared by the live
publisher and the archive reader) and ``publisher`` (``dolphin book``: Binance USD-M depth -> ``asset_<SYMBOL>_ob``)."""

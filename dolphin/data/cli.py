"""`dolphin data ...` commands."""


def register(sub) -> None:
    from dolphin.data import binance_archive, inspect_cmd

    data = sub.add_parser("data", help="market data: inspect candle sets, download from the Binance archive")
    data_sub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    inspect_cmd.register(data_sub)
    binance_archive.register(data_sub)

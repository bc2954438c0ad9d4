"""`dolphin data ...` commands."""


def register(sub):
    """The ``data`` command group with its pure subcommands; returns the group's subparsers so that the
    application (``dolphin.cli``) can add the ones that talk to the outside (the Binance archive download,
    ``dolphin.adapters.binance_archive``): ``dolphin.data`` itself never imports an adapter."""
    from dolphin.data import inspect_cmd

    data = sub.add_parser("data", help="market data: inspect candle sets, download from the Binance archive")
    data_sub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    inspect_cmd.register(data_sub)
    return data_sub

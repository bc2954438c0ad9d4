"""`dolphin` command line. Each command family registers its own subparser."""

import argparse
import importlib
import sys

# Modules exposing ``register(subparsers)``; each sets ``func`` on its parsers.
COMMAND_MODULES = [
    "dolphin.data.cli",
    "dolphin.scanner.cli",
    "dolphin.engine.cli",
    "runtime.cli",
    "dolphin.adapters.duckdb_sql",
    "dolphin.adapters.duckdb_warehouse",
    "dolphin.status",
    "dolphin.adapters.safety_override_sqlite",
    "dolphin.research.cli",
    "dolphin.rehydrate",
    "venue.cli",
    "dolphin.bridge",
    "dolphin.book.publisher",
    "dolphin.demo",
    "dolphin.console.server",
    "dolphin.alerts.watch",
    "dolphin.research.long_gate",
]
# Subcommands added to a group that a module above returns from ``register``: the ones that talk to the
# outside live in dolphin.adapters, and the pure package that owns the group must not import them.
GROUP_COMMAND_MODULES = {
    "dolphin.data.cli": ["dolphin.adapters.binance_archive"],  # dolphin data download
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dolphin", description="DOLPHIN regime-aware trading platform")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in COMMAND_MODULES:
        group = importlib.import_module(mod).register(sub)
        for extra in GROUP_COMMAND_MODULES.get(mod, ()):
            importlib.import_module(extra).register(group)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one clear line for expected input errors; traceback otherwise
        from dolphin.data.contracts import DataError
        from dolphin.engine.config import ConfigError
        from dolphin.errors import UserInputError
        from dolphin.paths import DataNotFoundError

        if isinstance(exc, (DataError, DataNotFoundError, ConfigError, UserInputError)):
            print(f"dolphin: error: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())

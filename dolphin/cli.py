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
    "dolphin.sqlcli",
    "dolphin.warehouse",
    "dolphin.status",
    "dolphin.survival.override",
    "dolphin.research.cli",
    "dolphin.store.rehydrate",
    "venue.cli",
    "dolphin.bridge",
    "dolphin.book.publisher",
    "dolphin.demo",
    "dolphin.console.server",
    "dolphin.alerts.watch",
    "dolphin.research.long_gate",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dolphin", description="DOLPHIN regime-aware trading platform")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in COMMAND_MODULES:
        importlib.import_module(mod).register(sub)
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

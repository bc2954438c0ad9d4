"""DOLPHIN domain: the pure math, the adapters that talk to the outside, and the processes that join them.

Pure (no database, network or message-bus client; no Dagster): data, scanner, engine, metrics, report, store
(the feature-store port), acb, esof, exf, mc, survival, research, book.features/history, daily, capital,
watchdog. I/O: ``dolphin.adapters`` (one module per outside system) and ``dolphin.ledger`` (SQLite). Processes
and commands: cli, bridge, scan_files, rehydrate, book.publisher, console, alerts, status, demo. The boundary is
checked by the import contracts in pyproject.toml (``lint-imports``, tests/unit/dolphin/test_import_contract.py).
"""

__version__ = "0.1.0"

"""Adapters: the modules that talk to the outside, one per system, named by what they talk to.

- ``sqlite_store``: the feature store in an embedded SQLite file (``EmbeddedStore``)
- ``hazelcast_store``: the feature store on a Hazelcast cluster (``HazelcastStore``: near cache, listeners, topics)
- ``near_cache``: the parsed-record near cache over either store (the runtime's hot-path reads)
- ``store_factory``: opens the configured store (DOLPHIN_FEATURE_STORE / DOLPHIN_HZ_*)
- ``binance_archive``: downloads klines / bookDepth from data.binance.vision (HTTP; `dolphin data download`)
- ``exf_http``: the live external-factor fetchers (HTTP APIs)
- ``duckdb_warehouse``: the DuckDB warehouse file (open safely, check, rebuild from the ledger)
- ``duckdb_sql``: `dolphin sql`, read-only SQL on that warehouse
- ``safety_override_sqlite``: the operator's manual safety override, audited in the ledger's SQLite file

The math (``dolphin.engine``, ``scanner``, ``metrics``, ...) and the store port (``dolphin.store``) never import
this package: ``[tool.importlinter]`` in pyproject.toml, checked by tests/unit/dolphin/test_import_contract.py. Processes and
commands (``dolphin.bridge``, ``status``, ``console``, ``dolphin_assets``, ``runtime``, ...) import what they need.
The capital ledger (``dolphin.ledger``, SQLite) is I/O too and is forbidden to the math the same way.
"""

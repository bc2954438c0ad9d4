"""Resources of the code location, one module each (``dolphin_assets.definitions`` builds them):

- ``market_data.MarketData``: where candles come from (a local folder / set, or the Binance public archive);
- ``scan_dir.ScanDir``: the scan directory (daily Parquet files, per-scan Arrow files);
- ``ledger.Ledger``: the SQLite capital ledger;
- ``feature_store.FeatureStoreResource``: the feature store (embedded SQLite or Hazelcast);
- ``warehouse.Warehouse``: the DuckDB warehouse, the io manager of the tables ``dolphin sql`` reads;
- ``exf_source.ExfSource``: where the external factors come from (recorded history or the live fetchers).

Paths left empty resolve under the data home (``DOLPHIN_HOME``, ``home.under_home``) when used, not at import,
so one ``defs`` serves every data home (tests point ``DOLPHIN_HOME`` at a temporary directory).
"""

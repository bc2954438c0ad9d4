"""Resources: market data source, scan directory, capital ledger, feature store, DuckDB warehouse.

Paths left empty resolve under the data home (``DOLPHIN_HOME``) when used, not at import, so one
``defs`` serves every data home (tests point ``DOLPHIN_HOME`` at a temporary directory).
"""

from contextlib import contextmanager
from pathlib import Path
from typing import List

import duckdb
from dagster import ConfigurableResource
from dagster._core.storage.db_io_manager import DbIOManager
from dagster._utils.backoff import backoff
from dagster_duckdb.io_manager import DuckDbClient
from dagster_duckdb_pandas import DuckDBPandasIOManager
from pydantic import Field

from dolphin.ledger import CapitalLedger
from dolphin.paths import data_home
from dolphin.adapters.duckdb_sql import warehouse_path
from dolphin.adapters.store_factory import open_store
from dolphin_assets.settings import SETTINGS


def _under_home(path: str, *default) -> Path:
    return Path(path).expanduser() if path else data_home().joinpath(*default)


class MarketData(ConfigurableResource):
    """Where candles come from: a local folder / set name, or the Binance public archive (downloaded
    into a cache with dolphin.adapters.binance_archive, then read from there)."""

    kind: str = Field(default=SETTINGS.source, description="folder | binance_archive")
    data: str = Field(default=SETTINGS.data, description="folder source: set name under <data>/klines or a path")
    symbols: List[str] = Field(default=list(SETTINGS.symbols), description="binance_archive source: symbols")
    interval: str = Field(default=SETTINGS.interval, description="binance_archive source: kline interval")
    market: str = Field(default=SETTINGS.market, description="binance_archive source: spot | um")
    cache_dir: str = Field(default="", description="binance_archive cache (default <data home>/binance-archive, "
                                                   "shared with `dolphin data download`)")

    def load_day(self, start_ms: int, end_ms: int, warmup_bars: int):
        from dolphin.data import load_panel

        if self.kind == "folder":
            return load_panel(self.data, start_ms=start_ms, end_ms=end_ms, warmup_bars=warmup_bars)
        if self.kind != "binance_archive":
            raise ValueError(f"market data kind {self.kind!r}: expected folder or binance_archive")
        from dolphin.adapters.binance_archive import download_klines
        from dolphin.timeutil import parse_bar

        cache = _under_home(self.cache_dir, "binance-archive")
        first = start_ms - (warmup_bars + 1) * parse_bar(self.interval)
        got = download_klines(list(self.symbols), self.interval, _utc_date(first), _utc_date(end_ms),
                              market=self.market, cache_dir=cache)
        # the cache mirrors the archive's folder tree; the readers take one flat folder: link this window's zips
        flat = cache / "views" / f"{self.market}-{self.interval}-{_utc_date(first)}-{_utc_date(end_ms)}"
        flat.mkdir(parents=True, exist_ok=True)
        for f in got.all_files():
            try:
                (flat / f.name).symlink_to(f)
            except FileExistsError:
                pass
        return load_panel(flat, start_ms=start_ms, end_ms=end_ms, warmup_bars=warmup_bars,
                          symbols=list(self.symbols), timeframe=self.interval)


def _utc_date(ms: int):
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).date()


class ScanDir(ConfigurableResource):
    """The scan directory: daily Parquet files (eigen_scans) and per-scan Arrow files (live scanner)."""

    path: str = Field(default="", description="default <data home>/scans")

    def dir(self) -> Path:
        from dolphin.scanner.writer import scan_dir  # the one scan-file layout (runtime, CLI, bridge)

        return scan_dir(self.path or None)


class Ledger(ConfigurableResource):
    path: str = Field(default="", description="SQLite file (default <data home>/ledger/ledger.sqlite)")
    start_day: str = Field(default="", description="the chain's first day, run from initial capital "
                                                   "(default: the first partition)")

    def open(self) -> CapitalLedger:
        return CapitalLedger(_under_home(self.path, "ledger", "ledger.sqlite"))

    def first_day(self) -> str:
        return self.start_day or SETTINGS.start


class FeatureStoreResource(ConfigurableResource):
    """Builds the feature store from configuration: ``embedded`` (SQLite under the data home, shared by
    local processes) or ``hazelcast`` (members / cluster name; credentials and TLS from DOLPHIN_HZ_* env)."""

    kind: str = Field(default=SETTINGS.feature_store, description="embedded | hazelcast")
    path: str = Field(default="", description="embedded: SQLite file (default <data home>/store/features.sqlite)")
    hazelcast_members: List[str] = Field(default=list(SETTINGS.hz_members), description="hazelcast: cluster members")
    hazelcast_cluster: str = Field(default=SETTINGS.hz_cluster, description="hazelcast: cluster name")

    def open(self):
        # the same construction as dolphin.adapters.store_factory.open_store_from_env (the CLI's path, without
        # Dagster)
        return open_store(self.kind, path=self.path or None, members=list(self.hazelcast_members) or None,
                          cluster=self.hazelcast_cluster or None)


class _Client(DuckDbClient):
    """DuckDbClient that connects to a path resolved at run time (the stock one reads it from config)."""

    def __init__(self, path: str):
        self.path = path

    @contextmanager
    def connect(self, context, _):
        from dolphin.adapters.duckdb_warehouse import connect, ensure_latest_views

        # several step processes write the warehouse; DuckDB allows one writer process at a time: a lock is
        # waited for, a damaged file fails the step at once naming it (dolphin.adapters.duckdb_warehouse)
        con = connect(self.path, read_only=False, wait_s=60.0, config={"custom_user_agent": "dagster"})
        try:
            yield con
            ensure_latest_views(con)  # capital_ledger_<s>_latest: a plain SUM must not count old versions
        finally:
            con.close()


class Warehouse(DuckDBPandasIOManager):
    """The one DuckDB warehouse (``dolphin sql`` reads it): DuckDBPandasIOManager, schema ``dolphin``;
    partitioned tables replace their partition's rows by the ``day`` column."""

    database: str = Field(default="", description="DuckDB file (default <data home>/warehouse.duckdb)")
    schema_: str = Field(default="dolphin", alias="schema")

    def path(self) -> str:
        return str(Path(self.database).expanduser() if self.database else warehouse_path())

    def create_io_manager(self, context) -> DbIOManager:
        path = self.path()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return DbIOManager(db_client=_Client(path), database=path, schema=self.schema_,
                           type_handlers=self.type_handlers(), default_load_type=self.default_load_type(),
                           io_manager_name="DuckDBIOManager")


class ExfSource(ConfigurableResource):
    """Where ExF comes from: ``recorded`` (the CSV history under ``<data>/exf``, for the dev set and backfills;
    a day's snapshot is as of its 23:00 UTC) or ``live`` (dolphin.adapters.exf_http, snapshot as of now). The
    base URLs are configurable so tests point the live fetchers at a loopback server."""

    kind: str = Field(default="recorded", description="recorded | live")
    root: str = Field(default="", description="recorded: data root or exf folder (default <data>/exf)")
    alternative_me_url: str = Field(default="https://api.alternative.me", description="live: fear & greed")
    deribit_url: str = Field(default="https://www.deribit.com", description="live: DVOL")
    binance_fapi_url: str = Field(default="https://fapi.binance.com", description="live: funding rates")
    fred_url: str = Field(default="https://fred.stlouisfed.org", description="live: FRED macro series")
    retries: int = Field(default=3, description="live: extra attempts per request after the first")
    connect_timeout: float = Field(default=5.0, description="live: seconds")
    read_timeout: float = Field(default=20.0, description="live: seconds")

    def _check_kind(self) -> None:
        if self.kind not in ("recorded", "live"):
            raise ValueError(f"ExfSource.kind {self.kind!r}: expected recorded or live")

    def history(self):
        """The recorded history (``ExfHistory``); ``FileNotFoundError`` naming the folder when it is missing."""
        from dolphin.exf.history import ExfHistory

        return ExfHistory.load(self.root or None)

    def fetch_config(self):
        from dolphin.adapters.exf_http import FetchConfig

        return FetchConfig(alternative_me_url=self.alternative_me_url, deribit_url=self.deribit_url,
                           binance_fapi_url=self.binance_fapi_url, fred_url=self.fred_url, retries=self.retries,
                           connect_timeout=self.connect_timeout, read_timeout=self.read_timeout)

    def snapshot(self, as_of_ms: int):
        """recorded: the values knowable at ``as_of_ms``; live: a fetch now (``as_of_ms`` is ignored: the
        live sources only know the present)."""
        self._check_kind()
        if self.kind == "live":
            from dolphin.adapters.exf_http import fetch_all

            return fetch_all(self.fetch_config())
        return self.history().as_of(int(as_of_ms))

    warehouse: str = Field(default="", description="live: DuckDB file holding the exf table (default: the "
                                                   "Warehouse's file)")

    def daily_frame(self, start_day: str, end_day: str):
        """Rows = UTC days start..end, columns = indicators, values knowable at each day's 00:00 (what
        ``dolphin.acb.exf_inputs`` reads). recorded: ``ExfHistory.daily_frame``; live: the ``exf`` rows the
        daily 23:00 fetches left in the warehouse, day d's row serving d+1 (fetched before that midnight)."""
        self._check_kind()
        if self.kind == "recorded":
            return self.history().daily_frame(start_day, end_day)
        import pandas as pd

        from dolphin.exf.indicators import INDICATOR_NAMES
        from dolphin.adapters.duckdb_sql import warehouse_path

        idx = pd.date_range(start_day, end_day, freq="D", tz="UTC", name="day")
        out = pd.DataFrame(float("nan"), index=idx, columns=list(INDICATOR_NAMES))
        path = Path(self.warehouse).expanduser() if self.warehouse else warehouse_path()
        if not path.exists():
            return out
        con = backoff(fn=duckdb.connect, retry_on=(RuntimeError, duckdb.IOException),
                      kwargs={"database": str(path), "read_only": True}, max_retries=30)
        try:
            if not con.execute("select count(*) from information_schema.tables where table_schema = 'dolphin' "
                               "and table_name = 'exf'").fetchone()[0]:
                return out
            cols = {r[0] for r in con.execute("select column_name from information_schema.columns where "
                                              "table_schema = 'dolphin' and table_name = 'exf'").fetchall()}
            have = [c for c in INDICATOR_NAMES if c in cols]
            lo, hi = idx[0] - pd.Timedelta(days=1), idx[-1] - pd.Timedelta(days=1)
            rows = con.execute(f"select day, {', '.join(have)} from dolphin.exf where day between ? and ? "
                               f"order by day", [lo.tz_localize(None), hi.tz_localize(None)]).fetch_df()
        finally:
            con.close()
        if len(rows):
            days = pd.DatetimeIndex(pd.to_datetime(rows.pop("day"))).tz_localize("UTC") + pd.Timedelta(days=1)
            out.loc[days, have] = rows[have].to_numpy(float)
        return out

"""The external-factor (ExF) source resource."""

import time
from pathlib import Path

import duckdb
from dagster import ConfigurableResource
from pydantic import Field

OPEN_RETRIES = 30  # extra attempts to open the warehouse while a writer step holds it
FIRST_DELAY_S = 0.1  # doubled after each failed attempt


def _open_read_only(path: Path):
    """A read-only connection to the warehouse, retried while DuckDB refuses it (a step holds the write lock:
    RuntimeError / IOException), after FIRST_DELAY_S, then doubling; the last error is raised."""
    delay = FIRST_DELAY_S
    for attempt in range(OPEN_RETRIES + 1):
        try:
            return duckdb.connect(database=str(path), read_only=True)
        except (RuntimeError, duckdb.IOException):
            if attempt == OPEN_RETRIES:
                raise
        time.sleep(delay)
        delay *= 2


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
        con = _open_read_only(path)
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

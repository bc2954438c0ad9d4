"""The DuckDB warehouse io manager: the tables ``dolphin sql`` reads (schema ``dolphin``).

Written on Dagster's public ``ConfigurableIOManager``: the stock ``DuckDBPandasIOManager`` can only connect to
the path in its configuration, with its own retry, while this one connects to a path resolved at run time
(the data home), through ``dolphin.adapters.duckdb_warehouse.connect`` (a held lock is waited for, a damaged file fails at once
naming it) and refreshes the ``capital_ledger_<s>_latest`` views after each connection. The SQL is the stock
io manager's (dagster-duckdb 0.29 with its pandas type handler), so the tables are the same: a partition's rows
are deleted by the ``partition_expr`` column's time window, then the frame is inserted (the table created from
the first frame); a partition is read back by the same window.
"""

from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
from dagster import (ConfigurableIOManager, DagsterInvariantViolationError, InputContext, MetadataValue,
                     OutputContext, TableColumn, TableSchema, TimeWindowPartitionsDefinition)
from pydantic import Field

from dolphin.adapters.duckdb_sql import warehouse_path

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # how a partition's window bounds are written in the SQL (as dagster-duckdb)


class Warehouse(ConfigurableIOManager):
    """The one DuckDB warehouse: pandas DataFrames, schema ``dolphin``; a daily-partitioned table replaces its
    partition's rows by the column named in the asset's ``partition_expr`` metadata (``day``)."""

    database: str = Field(default="", description="DuckDB file (default <data home>/warehouse.duckdb)")
    schema_: str = Field(default="dolphin", alias="schema")

    def path(self) -> str:
        return str(Path(self.database).expanduser() if self.database else warehouse_path())

    @contextmanager
    def _connect(self):
        from dolphin.adapters.duckdb_warehouse import connect, ensure_latest_views

        path = self.path()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        # several step processes write the warehouse; DuckDB allows one writer process at a time: a lock is
        # waited for, a damaged file fails the step at once naming it (dolphin.adapters.duckdb_warehouse)
        con = connect(path, read_only=False, wait_s=60.0, config={"custom_user_agent": "dagster"})
        try:
            yield con
            ensure_latest_views(con)  # capital_ledger_<s>_latest: a plain SUM must not count old versions
        finally:
            con.close()

    def _table(self, context, output_context: OutputContext) -> tuple:
        """(schema, table, where clause or None, columns or None) of what ``context`` writes or reads."""
        meta = output_context.definition_metadata or {}
        if not context.has_asset_key:
            return (meta.get("schema") or self.schema_ or "public", meta.get("table", output_context.name), None,
                    None)
        key = context.asset_key.path
        schema = meta.get("schema") or self.schema_ or (key[-2] if len(key) > 1 else "public")
        where = None
        if context.has_asset_partitions:
            expr = meta.get("partition_expr")
            if expr is None:
                raise ValueError(f"Asset '{context.asset_key}' has partitions, but no 'partition_expr' metadata "
                                 "value, so the warehouse does not know which column holds the partition.")
            if not isinstance(context.asset_partitions_def, TimeWindowPartitionsDefinition):
                # every warehouse table is daily; another kind would need its own delete / select rule
                raise ValueError(f"Asset '{context.asset_key}': the warehouse stores time-window partitions only, "
                                 f"not {type(context.asset_partitions_def).__name__}")
            if context.asset_partition_keys:
                start, end = context.asset_partitions_time_window
                where = (f"{expr} >= '{start.strftime(TIME_FORMAT)}' AND "
                         f"{expr} < '{end.strftime(TIME_FORMAT)}'")
            else:
                where = ""  # no partition selected: nothing to read
        return schema, key[-1], where, (context.definition_metadata or {}).get("columns")

    @staticmethod
    def _select(schema, table, where, columns) -> str:
        cols = ", ".join(columns) if columns else "*"
        if where:
            return f"SELECT {cols} FROM {schema}.{table} WHERE\n{where}"
        return f"SELECT {cols} FROM {schema}.{table}"

    def handle_output(self, context: OutputContext, obj: pd.DataFrame) -> None:
        import duckdb

        if obj is None:
            raise DagsterInvariantViolationError(
                "Unexpected 'None' output value. If a 'None' value is intentional, set the output type to None "
                "by adding return type annotation '-> None'.")
        if not isinstance(obj, pd.DataFrame):
            raise DagsterInvariantViolationError(f"Warehouse stores pandas DataFrames, not {type(obj)}")
        schema, table, where, columns = self._table(context, context)
        with self._connect() as con:
            con.execute(f"create schema if not exists {schema};")
            try:
                con.execute(f"DELETE FROM {schema}.{table}" + (f" WHERE\n{where}" if where else ""))
            except duckdb.CatalogException:
                pass  # the table does not exist yet
            if obj.empty:
                context.log.warning("Skipping DuckDB write for empty DataFrame. An empty table will not be created.")
            else:
                # DuckDB reads the frame from the local variable named in the SQL (``obj``)
                con.execute(f"create table if not exists {schema}.{table} as select * from obj;")
                if not con.fetchall():  # not created: the table exists, the rows are inserted
                    con.execute(f"insert into {schema}.{table} select * from obj")
        rows = "dagster/partition_row_count" if context.has_partition_key else "dagster/row_count"
        context.add_output_metadata({
            rows: obj.shape[0], "dagster/storage_kind": "duckdb",
            "dataframe_columns": MetadataValue.table_schema(TableSchema(
                columns=[TableColumn(name=name, type=str(dtype)) for name, dtype in obj.dtypes.items()])),
            "Query": self._select(schema, table, where, columns),
            "dagster/table_name": f"{self.path()}.{schema}.{table}",
        })

    def load_input(self, context: InputContext) -> pd.DataFrame:
        want = context.dagster_type.typing_type
        if want is not Any and not (isinstance(want, type) and issubclass(want, pd.DataFrame)):
            raise DagsterInvariantViolationError(f"Warehouse loads pandas DataFrames, not {want}")
        schema, table, where, columns = self._table(context, context.upstream_output)
        with self._connect() as con:
            if where == "":
                return pd.DataFrame()
            return con.execute(self._select(schema, table, where, columns)).fetchdf()

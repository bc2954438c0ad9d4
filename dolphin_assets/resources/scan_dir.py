"""The scan directory resource."""

from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field


class ScanDir(ConfigurableResource):
    """The scan directory: daily Parquet files (eigen_scans) and per-scan Arrow files (live scanner)."""

    path: str = Field(default="", description="default <data home>/scans")

    def dir(self) -> Path:
        from dolphin.scanner.writer import scan_dir  # the one scan-file layout (runtime, CLI, bridge)

        return scan_dir(self.path or None)

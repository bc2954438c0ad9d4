"""The capital ledger resource (the SQLite file the capital chains write, the sensors read)."""

from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from dolphin.ledger import CapitalLedger
from dolphin_assets.resources.home import under_home
from dolphin_assets.settings import SETTINGS


class Ledger(ConfigurableResource):
    path: str = Field(default="", description="SQLite file (default <data home>/ledger/ledger.sqlite)")
    start_day: str = Field(default="", description="the chain's first day, run from initial capital "
                                                   "(default: the first partition)")

    def file(self) -> Path:
        return under_home(self.path, "ledger", "ledger.sqlite")

    def open(self) -> CapitalLedger:
        return CapitalLedger(self.file())

    def first_day(self) -> str:
        return self.start_day or SETTINGS.start

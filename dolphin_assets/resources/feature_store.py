"""The feature store resource."""

from typing import List

from dagster import ConfigurableResource
from pydantic import Field

from dolphin.adapters.store_factory import open_store
from dolphin_assets.settings import SETTINGS


class FeatureStoreResource(ConfigurableResource):
    """Builds the feature store from configuration: ``embedded`` (SQLite under the data home, shared by
    local processes) or ``hazelcast`` (members / cluster name; credentials and TLS from DOLPHIN_HZ_* env)."""

    kind: str = Field(default=SETTINGS.feature_store, description="embedded | hazelcast")
    path: str = Field(default="", description="embedded: SQLite file (default <data home>/store/features.sqlite)")
    hazelcast_members: List[str] = Field(default=list(SETTINGS.hz_members), description="hazelcast: cluster members")
    hazelcast_cluster: str = Field(default=SETTINGS.hz_cluster, description="hazelcast: cluster name")

    def open(self):
        # the same construction as dolphin.adapters.store_factory.open_store_from_env (the CLI's path, without Dagster)
        return open_store(self.kind, path=self.path or None, members=list(self.hazelcast_members) or None,
                          cluster=self.hazelcast_cluster or None)

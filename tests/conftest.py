"""Shared fixtures: real candle rows from ../shared/data; a private data home with the embedded store."""

import pytest

from tests.data_helpers import real_rows


@pytest.fixture(scope="module")
def btc():
    return real_rows("BTCUSDT", 300)


@pytest.fixture(scope="module")
def eth():
    return real_rows("ETHUSDT", 300)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A private DOLPHIN_HOME with the embedded feature store (no Hazelcast settings leak in from the shell)."""
    monkeypatch.setenv("DOLPHIN_HOME", str(tmp_path))
    for k in ("DOLPHIN_FEATURE_STORE", "DOLPHIN_HZ_MEMBERS", "DOLPHIN_HZ_CLUSTER"):
        monkeypatch.delenv(k, raising=False)
    return tmp_path

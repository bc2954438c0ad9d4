"""Shared fixtures: real candle rows from ../shared/data."""

import pytest

from tests.data_helpers import real_rows


@pytest.fixture(scope="module")
def btc():
    return real_rows("BTCUSDT", 300)


@pytest.fixture(scope="module")
def eth():
    return real_rows("ETHUSDT", 300)

"""Shared fixtures and the test tiers.

Tiers by folder (marker = folder name, `pytest -m unit` etc.):
- tests/unit/<package>/...: one package's behaviour, in process (real data, Nautilus's simulated exchange, SQLite);
- tests/integration/...: several parts or a real service together (Dagster materialisations, the store contract,
  PostgreSQL, the venue with Nautilus's clients, compose files);
- tests/system/: the whole stack as separate processes (venue, bridge, runtime, Dagster, console, browser).
Support code (real-data loaders, process wrappers, the browser) is in tests/support/, used by every tier."""

from pathlib import Path

import pytest

from tests.support.data import real_rows

TESTS = Path(__file__).resolve().parent
TIERS = ("system", "integration", "unit")
# integration tests that start processes with real-time deadlines (publish within 1 s, silence for 10 s ...): they
# share the system tier's worker so that no two of them starve each other
REALTIME = ("integration/bridge", "integration/book", "integration/venue")
# system tests without real-time deadlines run on either worker (the crash test kills and restarts one runtime at a
# time and checks the journal, never a latency); they shorten the serial chain, which bounds `make test`
NO_DEADLINES = ("system/test_runtime_crash.py",)


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    """Mark each test with its tier and its xdist group, and start the system tier first.

    `make test` runs two workers (`-n 2 --dist loadgroup`): the system tests and the REALTIME integration tests share
    one worker and run one after the other (each starts processes with real-time deadlines; two such tests at once
    starve each other on 2 cores); every other file stays on one worker so its module fixtures (real data,
    backtests) are built once. That serial chain is the longest, so the system tier is started first: sorted first
    here, and `make test` passes --no-loadscope-reorder (xdist would otherwise hand out the groups with the most
    tests first, and the real-time group, ~37 tests, started behind the larger in-process files)."""
    for item in items:
        rel = Path(item.path).resolve().relative_to(TESTS)
        tier = rel.parts[0]
        if tier not in TIERS:
            raise pytest.UsageError(f"{rel}: tests live under tests/unit/<package>/, tests/integration/ or tests/system/")
        item.add_marker(getattr(pytest.mark, tier))
        serial = (tier == "system" and rel.as_posix() not in NO_DEADLINES) or rel.parent.as_posix() in REALTIME
        item.add_marker(pytest.mark.xdist_group("realtime" if serial else rel.as_posix()))
    items.sort(key=lambda it: TIERS.index(Path(it.path).resolve().relative_to(TESTS).parts[0]))


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

"""Sandbox / live node configuration for Binance USDT-M: builds offline, refuses without keys, never
shows a secret. Nothing here connects (there is no network) and nothing claims to have traded."""

import argparse
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runtime.nodes import (CredentialsError, NodeConfigError, NodeSettings, build_node, build_node_config,
                           check_credentials, credential_env_vars)

REPO = Path(__file__).resolve().parents[3]
KEY, SECRET = "k3y-SENTINEL-7f3a", "s3cret-SENTINEL-91be"
ALL_VARS = (*credential_env_vars(True), *credential_env_vars(False))


@pytest.fixture
def no_keys(monkeypatch):
    for v in ALL_VARS:
        monkeypatch.delenv(v, raising=False)


@pytest.fixture
def keys(monkeypatch):
    for testnet in (True, False):
        k, s = credential_env_vars(testnet)
        monkeypatch.setenv(k, KEY)
        monkeypatch.setenv(s, SECRET)


@pytest.mark.parametrize("mode", ["sandbox", "live"])
@pytest.mark.parametrize("testnet", [True, False])
def test_node_config_builds_offline(mode, testnet, no_keys):
    from nautilus_trader.adapters.binance.common.enums import BinanceAccountType, BinanceEnvironment
    from nautilus_trader.adapters.binance.config import BinanceDataClientConfig, BinanceExecClientConfig
    from nautilus_trader.adapters.sandbox.config import SandboxExecutionClientConfig
    from nautilus_trader.config import TradingNodeConfig

    env = BinanceEnvironment.TESTNET if testnet else BinanceEnvironment.LIVE
    cfg = build_node_config(NodeSettings(mode=mode, testnet=testnet, symbols=("BTCUSDT", "ETHUSDT")))
    assert isinstance(cfg, TradingNodeConfig)
    data = cfg.data_clients["BINANCE"]
    ex = cfg.exec_clients["BINANCE"]
    assert isinstance(data, BinanceDataClientConfig)
    assert data.account_type == BinanceAccountType.USDT_FUTURES and data.environment == env
    assert data.base_url_http is None and data.base_url_ws is None  # the adapter's (routed) defaults
    assert data.instrument_provider.load_ids == frozenset({"BTCUSDT-PERP.BINANCE", "ETHUSDT-PERP.BINANCE"})
    assert data.api_key is None and data.api_secret is None  # credentials never enter a config
    if mode == "live":
        assert isinstance(ex, BinanceExecClientConfig)
        assert ex.account_type == BinanceAccountType.USDT_FUTURES and ex.environment == env
        assert ex.base_url_http is None and ex.base_url_ws is None and ex.base_url_ws_stream is None
        assert ex.api_key is None and ex.api_secret is None
        assert ex.futures_leverages == {"BTCUSDT": 6, "ETHUSDT": 6}
        assert {v.value for v in ex.futures_margin_types.values()} == {"ISOLATED"}
        assert cfg.exec_engine.reconciliation
    else:
        assert isinstance(ex, SandboxExecutionClientConfig)  # paper fills: no order can reach Binance
        assert ex.starting_balances == ["25000.00 USDT"] and ex.account_type == "MARGIN"


def test_production_endpoints_are_binances_routed_usdm_urls():
    """Binance retired the unrouted USD-M WebSocket URLs on 2026-04-23: klines only arrive on /market,
    depth on /public, user data on /private. The node sets no URL; the adapter's defaults are routed."""
    from runtime.nodes import adapter_endpoints

    ep = adapter_endpoints(testnet=False)
    assert ep == {"http": "https://fapi.binance.com", "ws_market": "wss://fstream.binance.com/market",
                  "ws_public": "wss://fstream.binance.com/public", "ws_private": "wss://fstream.binance.com/private"}
    assert adapter_endpoints(testnet=True)["ws_market"] != ep["ws_market"]


def test_built_nodes_use_the_routed_urls(keys):
    """What the built clients hold, not only what the helpers say: a production node's kline stream is on
    /market, its book stream on /public, a live node's user data stream on /private."""
    for mode in ("sandbox", "live"):
        node = build_node(NodeSettings(mode=mode, testnet=False, symbols=("BTCUSDT", "ETHUSDT"), log_level="ERROR"))
        try:
            (data,) = node.kernel.data_engine._clients.values()
            assert data._ws_client._base_url == "wss://fstream.binance.com/market"
            assert data._ws_public_client._base_url == "wss://fstream.binance.com/public"
            if mode == "live":
                (ex,) = node.kernel.exec_engine._clients.values()
                assert ex._ws_client._stream_base_url == "wss://fstream.binance.com/private"
        finally:
            node.dispose()


@pytest.mark.parametrize("testnet", [True, False])
def test_missing_credentials_name_the_variable(testnet, no_keys, monkeypatch):
    key_var, secret_var = credential_env_vars(testnet)
    s = NodeSettings(mode="live", testnet=testnet)
    with pytest.raises(CredentialsError) as e:
        build_node(s)
    assert key_var in str(e.value) and secret_var in str(e.value)
    monkeypatch.setenv(key_var, KEY)
    with pytest.raises(CredentialsError) as e:
        check_credentials(s)
    assert secret_var in str(e.value) and key_var not in str(e.value) and KEY not in str(e.value)
    monkeypatch.setenv(secret_var, "   ")  # blank is missing, not a credential
    with pytest.raises(CredentialsError):
        check_credentials(s)
    assert check_credentials(NodeSettings(mode="sandbox", testnet=testnet)) == (key_var, secret_var)  # none needed


@pytest.mark.parametrize("with_keys", [False, True])
def test_sandbox_needs_no_credentials_and_uses_none(with_keys, no_keys, monkeypatch):
    """Nautilus 1.231's Binance data client never reads the environment (public market data, fee tier 0)
    and the sandbox's fills are simulated: a sandbox node builds for a real start without keys, and
    holds no key even when the environment has one."""
    if with_keys:
        for testnet in (True, False):
            k, s = credential_env_vars(testnet)
            monkeypatch.setenv(k, KEY)
            monkeypatch.setenv(s, SECRET)
    node = build_node(NodeSettings(mode="sandbox", testnet=False, symbols=("BTCUSDT", "ETHUSDT"),
                                   log_level="ERROR"))
    try:
        (data,) = node.kernel.data_engine._clients.values()
        (ex,) = node.kernel.exec_engine._clients.values()
        assert data._http_client.api_key is None and data._http_client._secret is None
        assert type(ex).__name__ == "SandboxExecutionClient"
    finally:
        node.dispose()


def test_live_dry_run_builds_without_credentials_real_start_refuses(no_keys, monkeypatch):
    from runtime.nodes import DRY_RUN_PLACEHOLDER, missing_credentials

    s = NodeSettings(mode="live", testnet=True, symbols=("BTCUSDT", "ETHUSDT"), log_level="ERROR")
    assert missing_credentials(s) == credential_env_vars(True)
    with pytest.raises(CredentialsError):
        build_node(s)
    node = build_node(s, dry_run=True)
    try:
        (ex,) = node.kernel.exec_engine._clients.values()
        assert ex._http_client.api_key == DRY_RUN_PLACEHOLDER and not node.kernel.trader.is_running
    finally:
        node.dispose()
    key_var, secret_var = credential_env_vars(True)
    monkeypatch.setenv(key_var, KEY)
    monkeypatch.setenv(secret_var, SECRET)
    node = build_node(s, dry_run=True)  # keys present: no placeholder, the adapter reads the environment
    try:
        (ex,) = node.kernel.exec_engine._clients.values()
        assert ex._http_client.api_key == KEY
    finally:
        node.dispose()


def test_bad_settings_are_refused():
    with pytest.raises(NodeConfigError):
        NodeSettings(mode="paper")
    with pytest.raises(NodeConfigError):
        NodeSettings(symbols=("BTCBUSD",))


def test_built_node_holds_the_strategy_and_has_not_traded(keys):
    node = build_node(NodeSettings(mode="live", testnet=True, symbols=("BTCUSDT", "ETHUSDT"), log_level="ERROR"))
    try:
        assert not node.kernel.trader.is_running  # built, never started: no connection was made
        (strategy,) = node.trader.strategies()
        assert strategy.symbols == ["BTCUSDT", "ETHUSDT"] and strategy.trades == []
        assert [str(c) for c in node.kernel.exec_engine.registered_clients] == ["BINANCE"]
        assert SECRET not in repr(node) and SECRET not in repr(strategy)
    finally:
        node.dispose()


_PROBE = textwrap.dedent("""
    import json
    from runtime.nodes import NodeSettings, build_node, build_node_config
    for mode in ("sandbox", "live"):
        for testnet in (True, False):
            s = NodeSettings(mode=mode, testnet=testnet, log_level="DEBUG")
            cfg = build_node_config(s)
            print(repr(cfg)); print(cfg.json().decode()); print(repr(s))
            node = build_node(s)
            print(repr(node), node.trader.strategies(), node.kernel.exec_engine.registered_clients)
            node.dispose()
    print("PROBE-DONE")
""")


def test_secret_never_in_repr_or_logs(tmp_path):
    """Every node variant built with DEBUG logging in a fresh process (Nautilus logging is per process):
    neither the key nor the secret appears anywhere in what it prints or logs."""
    env = {k: v for k, v in os.environ.items() if k not in ALL_VARS}
    for testnet in (True, False):
        k, s = credential_env_vars(testnet)
        env[k], env[s] = KEY, SECRET
    env["PYTHONPATH"] = str(REPO)
    p = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env, cwd=tmp_path,
                       timeout=120)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-3000:]
    assert "PROBE-DONE" in out
    # not vacuous: the node logged its configuration at DEBUG/INFO, adapters included
    assert "TradingNode" in out and "BINANCE" in out and out.count("\n") > 200
    assert SECRET not in out and KEY not in out


def test_a_secret_in_a_config_would_show(no_keys):
    """Why nodes.py keeps credentials out of configs: Nautilus prints every field."""
    from nautilus_trader.adapters.binance.config import BinanceExecClientConfig

    assert SECRET in repr(BinanceExecClientConfig(api_secret=SECRET))


def _cli(*argv):
    from runtime.cli import register

    parser = argparse.ArgumentParser(prog="dolphin")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_cli_dry_run_without_keys_warns_real_live_start_refuses(no_keys, capsys):
    assert _cli("runtime", "sandbox", "--dry-run", "--log-level", "ERROR") == 0  # sandbox needs no keys
    out = capsys.readouterr()
    assert "sandbox node built" in out.out and "BINANCE_" not in out.err
    assert _cli("runtime", "live", "--dry-run", "--log-level", "ERROR") == 0
    out = capsys.readouterr()
    assert "live node built" in out.out and "not connecting" in out.out
    assert "warning" in out.err and "BINANCE_FUTURES_TESTNET_API_KEY and BINANCE_FUTURES_TESTNET_API_SECRET" in out.err
    assert _cli("runtime", "live", "--venue", "production", "--dry-run", "--log-level", "ERROR") == 0
    assert "BINANCE_API_KEY and BINANCE_API_SECRET" in capsys.readouterr().err
    import signal

    mask, term = signal.pthread_sigmask(signal.SIG_BLOCK, set()), signal.getsignal(signal.SIGTERM)
    for venue in ("testnet", "production"):  # a real live start refuses before building anything
        assert _cli("runtime", "live", "--venue", venue, "--log-level", "ERROR") == 2
        err = capsys.readouterr().err
        assert "missing" in err and ("BINANCE_API_SECRET" if venue == "production" else
                                     "BINANCE_FUTURES_TESTNET_API_SECRET") in err
        # the start-up signal guard gave back the caller's mask (children of this process must stay stoppable)
        assert signal.pthread_sigmask(signal.SIG_BLOCK, set()) == mask
        assert signal.getsignal(signal.SIGTERM) == term


def test_cli_dry_run_builds_without_connecting(keys, capsys):
    assert _cli("runtime", "live", "--symbols", "btcusdt,ethusdt", "--dry-run", "--log-level", "ERROR") == 0
    out = capsys.readouterr()
    text = out.out + out.err
    assert "live node built" in text and "REAL orders on Binance testnet" in text and "not connecting" in text
    assert "BTCUSDT, ETHUSDT" in text
    assert SECRET not in text and KEY not in text


def test_node_restores_capital_from_the_ledger_and_continues_an_open_position(keys, capsys, tmp_path, monkeypatch):
    from datetime import datetime, timezone

    from dolphin.ledger.journal import FillJournal, JournalEvent

    monkeypatch.setenv("DOLPHIN_HOME", str(tmp_path / "home"))
    ledger = tmp_path / "ledger.sqlite"
    j = FillJournal(ledger)
    j.open_session("BLUE", "sandbox:testnet:2024-01-01", mode="sandbox", opening_capital=25_000.0)
    j.append("BLUE", JournalEvent("O-1:T-1", "sandbox:testnet:2024-01-01", "fill", 1, "BTCUSDT", "SELL", "entry",
                                  0.1, 40_000.0, 2.0, 24_998.0))
    args = ("runtime", "sandbox", "--dry-run", "--log-level", "ERROR", "--ledger", str(ledger))
    # an open position: its session continues (not today's), a real start would reconcile and adopt it
    assert _cli(*args) == 0
    out = capsys.readouterr().out
    assert "open positions" in out and "BTCUSDT -0.1 @ 40000" in out and "reconciles them" in out, out
    assert j.restore("BLUE", "sandbox:testnet:2024-01-01").runs == 2
    # a real start cannot adopt it: no entry decision was journaled for O-1 (written by runtime versions that
    # journal entries): refused before anything connects
    assert _cli(*args[:2], *args[3:]) == 2
    assert "no journaled entry decision for order O-1" in capsys.readouterr().err
    j.append("BLUE", JournalEvent("O-2:T-2", "sandbox:testnet:2024-01-01", "fill", 2, "BTCUSDT", "BUY", "tp",
                                  0.1, 39_000.0, 2.0, 25_096.0))
    assert _cli(*args) == 0  # flat: the new session opens with the last session's capital
    assert "capital 25,096.00" in capsys.readouterr().out
    today = f"sandbox:testnet:{datetime.now(timezone.utc).date().isoformat()}"
    assert j.restore("BLUE", today).opening_capital == 25_096.0
    assert _cli(*args) == 0  # a restart the same day continues the session
    assert "run 2" in capsys.readouterr().out

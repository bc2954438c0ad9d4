"""The runtime reaches a Binance-compatible server by configuration only: base URLs in NodeSettings, from
`--base-url` / `--http-url` / `--ws-market-url` / `--ws-private-url` or DOLPHIN_BINANCE_* variables."""

import argparse

import pytest

pytest.importorskip("nautilus_trader")

from runtime.cli import _endpoint_settings  # noqa: E402
from runtime.nodes import NodeConfigError, NodeSettings, build_node_config, node_endpoints, routed_urls, venue_label  # noqa: E402


def _args(**kw):
    base = dict(base_url=None, http_url=None, ws_market_url=None, ws_private_url=None)
    base.update(kw)
    return argparse.Namespace(**base)


def test_routed_urls_follow_binance_routes():
    assert routed_urls("http://127.0.0.1:8765/") == {"http_url": "http://127.0.0.1:8765",
                                                     "ws_market_url": "ws://127.0.0.1:8765/market",
                                                     "ws_private_url": "ws://127.0.0.1:8765/private"}
    assert routed_urls("https://proxy.example:443")["ws_market_url"] == "wss://proxy.example:443/market"
    with pytest.raises(NodeConfigError):
        routed_urls("ftp://x")


def test_flags_override_environment_override_defaults():
    assert _endpoint_settings(_args(), environ={}) == {}
    env = {"DOLPHIN_BINANCE_BASE_URL": "http://127.0.0.1:1", "DOLPHIN_BINANCE_WS_PRIVATE_URL": "ws://h:2/private"}
    got = _endpoint_settings(_args(http_url="http://127.0.0.1:9"), environ=env)
    assert got == {"http_url": "http://127.0.0.1:9", "ws_market_url": "ws://127.0.0.1:1/market",
                   "ws_private_url": "ws://h:2/private"}


def test_configured_urls_reach_the_adapter_configs_and_nothing_else_changes():
    s = NodeSettings(mode="live", symbols=("BTCUSDT",), **routed_urls("http://127.0.0.1:8765"))
    cfg = build_node_config(s)
    data, exe = cfg.data_clients["BINANCE"], cfg.exec_clients["BINANCE"]
    assert (data.base_url_http, data.base_url_ws) == ("http://127.0.0.1:8765", "ws://127.0.0.1:8765/market")
    assert (exe.base_url_http, exe.base_url_ws_stream) == ("http://127.0.0.1:8765", "ws://127.0.0.1:8765/private")
    assert exe.base_url_ws is None  # the WebSocket trading API is not configured (the venue does not serve it)
    default = build_node_config(NodeSettings(mode="live", symbols=("BTCUSDT",)))
    assert default.data_clients["BINANCE"].base_url_http is None  # the adapter's own defaults
    assert default.exec_clients["BINANCE"].base_url_ws_stream is None
    ep = node_endpoints(s)
    assert ep["configured"] == ("http", "ws_market", "ws_private") and ep["ws_public"] == ep["ws_market"]
    assert node_endpoints(NodeSettings())["configured"] == ()


def test_ledger_sessions_of_a_configured_venue_are_their_own():
    assert venue_label(NodeSettings()) == "testnet"
    assert venue_label(NodeSettings(testnet=False)) == "production"
    assert venue_label(NodeSettings(**routed_urls("http://127.0.0.1:8765"))) == "127.0.0.1"


def test_history_warm_up_accepts_symbols_in_any_order(tmp_path):
    """`--history` used to refuse the default symbols (BTC ETH SOL XRP DOGE): load_panel orders them."""
    import os
    import subprocess
    import sys

    import pyarrow.parquet as pq

    from dolphin.paths import data_root

    hist = tmp_path / "hist"
    hist.mkdir()
    for s in ("ETHUSDT", "BTCUSDT"):
        t = pq.read_table(data_root() / "klines" / "usdtm-5m-2023" / f"{s}.parquet")
        pq.write_table(t.slice(0, 1200), hist / f"{s}.parquet")
    env = dict(os.environ, DOLPHIN_HOME=str(tmp_path / "home"))
    r = subprocess.run([sys.executable, "-m", "dolphin.cli", "runtime", "sandbox", "--dry-run", "--risk", "defaults",
                        "--symbols", "ETHUSDT,BTCUSDT", "--history", str(hist), "--log-level", "ERROR"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    import re

    assert re.search(rf"2 instruments: BTCUSDT, ETHUSDT; warm-up: \d+ bars from {re.escape(str(hist))}", r.stdout)

"""The compose `venue` service: `dolphin venue` in the project image, published on loopback, keys passed through."""

from tests.support.compose import compose_config, compose_raw, env_of


def test_venue_service_runs_dolphin_venue_on_the_market_data(tmp_path):
    s = compose_raw()["services"]
    v = s["venue"]
    assert v["image"] == s["runtime"]["image"] and v["command"].split()[:2] == ["dolphin", "venue"]
    assert any(isinstance(x, dict) and x.get("target") == "/data/market" and x.get("read_only") for x in v["volumes"])
    env = env_of(v)
    assert env["DOLPHIN_VENUE_API_KEY"] == "${DOLPHIN_VENUE_API_KEY:-}"
    resolved = compose_config(tmp_path, DOLPHIN_VENUE_ARGS="--speed 0.2 --days 1")["services"]["venue"]
    cmd = resolved["command"]
    cmd = cmd.split() if isinstance(cmd, str) else cmd
    assert cmd == ["dolphin", "venue", "--host", "0.0.0.0", "--port", "8765", "--speed", "0.2", "--days", "1"]
    ports = resolved["ports"]
    assert any(str(p.get("host_ip", p) if isinstance(p, dict) else p).startswith("127.0.0.1") for p in ports), ports
    from dolphin.cli import build_parser

    args = build_parser().parse_args(cmd[1:])
    assert args.func.__module__ == "venue.cli" and args.port == 8765

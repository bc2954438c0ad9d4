"""The `console` and `alerts` compose services: the CLI commands in the project image, on the data home and the
store address every project service shares, secrets only passed through, the console on loopback only."""

from tests.support.compose import BINANCE_VARS, compose_config, compose_raw, default_of, env_of

ALERT_VARS = ("DOLPHIN_ALERT_WEBHOOK_URL", "DOLPHIN_ALERT_TELEGRAM_TOKEN", "DOLPHIN_ALERT_TELEGRAM_CHAT_ID",
              "DOLPHIN_ALERT_TELEGRAM_API")


def test_console_service():
    s = compose_raw()["services"]
    c = s["console"]
    assert c["command"] == ["dolphin", "console", "--host", "0.0.0.0", "--port", "8050"]
    assert c["image"] == s["runtime"]["image"] and "dolphin-home:/data/dolphin" in c["volumes"]
    env = env_of(c)
    assert env["DOLPHIN_HOME"] == "/data/dolphin" and "DOLPHIN_HZ_MEMBERS" in env
    assert default_of(env["DOLPHIN_CONSOLE_TOKEN"], "DOLPHIN_CONSOLE_TOKEN") == ""  # read-only unless set
    assert c["ports"] == ["${DOLPHIN_BIND_ADDRESS:-127.0.0.1}:${DOLPHIN_CONSOLE_PORT:-8050}:8050"]
    assert not any(v in env for v in BINANCE_VARS + ALERT_VARS), "the console needs no exchange or alert secret"
    assert c["depends_on"]["hazelcast"]["condition"] == "service_healthy"
    from dolphin.cli import build_parser

    args = build_parser().parse_args(c["command"][1:])
    assert args.func.__name__ == "cmd_console" and args.host == "0.0.0.0" and args.port == 8050


def test_alerts_service_and_daemon_get_the_alert_channels():
    s = compose_raw()["services"]
    a = s["alerts"]
    assert a["command"] == ["dolphin", "alerts"] and "dolphin-home:/data/dolphin" in a["volumes"]
    for svc in (a, s["dagster-daemon"]):
        env = env_of(svc)
        for v in ALERT_VARS:
            assert v in env
        assert default_of(env["DOLPHIN_ALERT_TELEGRAM_TOKEN"], "DOLPHIN_ALERT_TELEGRAM_TOKEN") == ""
        assert default_of(env["DOLPHIN_ALERT_WEBHOOK_URL"], "DOLPHIN_ALERT_WEBHOOK_URL") == ""
    from dolphin.cli import build_parser

    assert build_parser().parse_args(a["command"][1:]).func.__name__ == "cmd_alerts"


def test_console_resolves_on_loopback(tmp_path):
    cfg = compose_config(tmp_path, DOLPHIN_CONSOLE_TOKEN="a-token-from-the-shell-123")
    c = cfg["services"]["console"]
    ports = c["ports"]
    p = ports[0]
    host = p["host_ip"] if isinstance(p, dict) else str(p).split(":")[0]
    assert host == "127.0.0.1", ports
    assert c["environment"]["DOLPHIN_CONSOLE_TOKEN"] == "a-token-from-the-shell-123"

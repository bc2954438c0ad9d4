"""The `book` compose service: `dolphin book` in the project image, on the data home, no exchange key."""

from tests.support.compose import BINANCE_VARS, compose_raw, env_of


def test_book_service_runs_the_order_book_publisher():
    s = compose_raw()["services"]
    b = s["book"]
    assert b["command"] == ["dolphin", "book"]
    assert b["image"] == s["runtime"]["image"] and "dolphin-home:/data/dolphin" in b["volumes"]
    env = env_of(b)
    assert env["DOLPHIN_HOME"] == "/data/dolphin" and "DOLPHIN_HZ_MEMBERS" in env
    assert "DOLPHIN_BOOK_SYMBOLS" in env and "DOLPHIN_BOOK_WS_URL" in env
    assert b["restart"] == "unless-stopped" and b["depends_on"]["hazelcast"]["condition"] == "service_healthy"
    assert not any(v in env for v in BINANCE_VARS), "public depth streams need no exchange key"
    from dolphin.cli import build_parser

    assert build_parser().parse_args(b["command"][1:]).func.__name__ == "cmd_book"

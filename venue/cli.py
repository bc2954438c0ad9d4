"""``dolphin venue``: the local Binance USD-M futures venue (loopback, replayed candles)."""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys


def register(sub) -> None:
    p = sub.add_parser("venue", help="local Binance USD-M futures venue replaying recorded candles",
                       description="Serve Binance USD-M futures REST (/fapi) and routed WebSocket streams "
                                   "(/market, /public, /private) on one loopback port, replaying a candle set. "
                                   "API keys: DOLPHIN_VENUE_API_KEY / DOLPHIN_VENUE_API_SECRET.")
    p.add_argument("--data", default="usdtm-5m-2023", help="candle set name under <data>/klines, or a path")
    p.add_argument("--start", default=None, help="first replayed bar (UTC day or time; default: first whole day)")
    p.add_argument("--days", type=float, default=None, help="days to replay (default: to the end of the set)")
    p.add_argument("--speed", type=float, default=1.0, help="wall seconds per bar (default 1.0)")
    p.add_argument("--symbols", default=None, help="comma-separated symbols (default: the whole set)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port (printed)")
    p.add_argument("--state", default=None, help="JSON snapshot file: account kept across venue restarts")
    p.add_argument("--capital", type=float, default=None, help="USDT wallet (default: the engine's capital)")
    p.add_argument("--maker-fee", type=float, default=None)
    p.add_argument("--taker-fee", type=float, default=None)
    p.add_argument("--slippage-bps", type=float, default=None, help="market-order slippage (default: engine's)")
    p.add_argument("--leverage", type=int, default=20, help="default leverage per symbol")
    p.add_argument("--history-bars", type=int, default=1500, help="bars before --start served by /klines")
    p.add_argument("--ws-ping-interval", type=float, default=180.0, help="server ping period, s (Binance: 180)")
    p.add_argument("--hold", type=float, default=None, metavar="SECONDS",
                   help="rehearsals: hold the replay at --start until a client subscribes to a kline stream, then "
                        "start it SECONDS later (default: the replay runs from start-up)")
    p.add_argument("--log-level", default="INFO")
    p.set_defaults(func=run)


def run(args) -> int:
    import uvicorn

    from dolphin.engine.config import EngineConfig
    from dolphin.timeutil import parse_time
    from venue.exchange import Exchange
    from venue.market import Market
    from venue.server import Venue, build_app, keys_from_env

    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    log = logging.getLogger("venue")
    cfg = EngineConfig()
    symbols = [s.strip().upper() for s in args.symbols.split(",")] if args.symbols else None
    market = Market(args.data, start_ms=parse_time(args.start) if args.start else None, days=args.days,
                    symbols=symbols, history_bars=args.history_bars)
    ex = Exchange(market, capital=cfg.initial_capital if args.capital is None else args.capital,
                  maker_fee=cfg.maker_fee if args.maker_fee is None else args.maker_fee,
                  taker_fee=cfg.taker_fee if args.taker_fee is None else args.taker_fee,
                  slippage_bps=cfg.slippage_bps if args.slippage_bps is None else args.slippage_bps,
                  leverage=args.leverage, state_file=args.state)
    key, secret, from_env = keys_from_env()
    venue = Venue(market, ex, speed=args.speed, api_key=key, api_secret=secret, hold=args.hold)
    app = build_app(venue)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    port = sock.getsockname()[1]
    log.info("data set %s", market.describe())
    log.info("fees maker %g taker %g, market slippage %g bps, capital %.2f USDT, state %s", ex.maker_fee,
             ex.taker_fee, ex.slip * 1e4, ex.acct.wallet, args.state or "in memory only")
    log.info("API key from %s", "DOLPHIN_VENUE_API_KEY/_SECRET" if from_env else
             "the built-in development pair (set DOLPHIN_VENUE_API_KEY/_SECRET)")
    log.info("depth is SYNTHETIC (rule in venue/market.py); every depth payload carries \"synthetic\": true")
    print(f"dolphin venue: listening on http://{args.host}:{port} (REST /fapi), ws://{args.host}:{port}"
          f"/market, /public, /private", flush=True)
    # SIGTERM/SIGINT: uvicorn shuts down gracefully (lifespan: replay stopped, snapshot written), then
    # re-raises the signal; this handler turns that into exit status 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # uvicorn's own loggers stay at WARNING: its connection lines would print listenKeys
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            ws_ping_interval=args.ws_ping_interval, ws_ping_timeout=600.0)
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    return 0

"""Sandbox and live ``TradingNode`` configurations for Binance USDT-M futures.

- ``sandbox``: Binance USDT-M market data, Nautilus ``SandboxExecutionClient`` fills (paper trading on
  live data; no order reaches Binance). The sandbox account restarts from its starting balance on
  every start: capital comes from the DOLPHIN ledger, never from that account.
- ``live``: Binance USDT-M data and execution; isolated margin and per-symbol leverage set on the
  exchange by the adapter.
- ``testnet`` (both modes) picks Binance's futures testnet instead of production
  (``BinanceEnvironment.TESTNET``; production is ``BinanceEnvironment.LIVE``).

Endpoints: no base URL is set here. The adapter's defaults apply, and since NautilusTrader 1.226 they
are Binance's routed USD-M WebSocket URLs in production (``wss://fstream.binance.com/market`` for
klines and trades, ``/public`` for depth and book ticker, ``/private`` for user data); the legacy
unrouted URLs were retired on 2026-04-23 (``adapter_endpoints`` reports what the adapter resolves).

Credentials come ONLY from the environment, under the names the Nautilus Binance adapter reads
itself (``BINANCE_API_KEY`` / ``BINANCE_API_SECRET``; ``BINANCE_FUTURES_TESTNET_API_KEY`` /
``BINANCE_FUTURES_TESTNET_API_SECRET`` on testnet). They are checked for presence here and never put
into any config object: Nautilus configs print every field in their repr and log them at start-up,
so a key in a config would be a key in the logs. The adapter's execution client reads them when it
creates its HTTP client. Only ``live`` needs them: in NautilusTrader 1.231 the Binance DATA client
never reads the environment (its HTTP client gets the config's key, None here, and the instrument
provider then uses fee tier 0) and the sandbox's execution client is simulated, so a sandbox node
would not use a key even if one were set. A ``live`` dry run (``build_node(..., dry_run=True)``)
builds without them: the execution client gets the placeholder ``DRY_RUN_PLACEHOLDER`` (never a
real key, which stays in the environment) and the caller reports the missing variables by name.

Building a node here never connects: ``build_node`` constructs and builds it; ``node.run()`` (only
from ``dolphin runtime sandbox|live --run``) is what connects.
"""

import os
from dataclasses import dataclass, field
from decimal import Decimal

from dolphin.engine.config import BLUE, EngineConfig
from runtime.instruments import VENUE, instrument_id

DEFAULT_SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT")
MODES = ("sandbox", "live")


class CredentialsError(RuntimeError):
    """A required API credential is missing from the environment (names the variable, never a value)."""


class NodeConfigError(ValueError):
    pass


@dataclass(frozen=True)
class NodeSettings:
    mode: str = "sandbox"
    testnet: bool = True
    symbols: tuple = DEFAULT_SYMBOLS
    bar_ms: int = 300_000
    engine: EngineConfig = field(default=BLUE)
    trader_id: str = "DOLPHIN-001"
    leverage: int = 6  # exchange-side leverage per symbol: the engine's cap; sizing is the strategy's
    capital: float | None = None  # sandbox starting balance (default: the engine's initial capital)
    bar_timeout_ms: int = 20_000  # process a bar set this long after its first bar arrived even if incomplete
    log_level: str = "INFO"
    log_directory: str | None = None
    scan_files: bool = True  # each live scan -> an Arrow file for the scan bridge (runtime.scan_files)
    scan_dir: str | None = None  # default $DOLPHIN_HOME/scans (dolphin.scanner.writer.scan_dir)
    # endpoints (None: the Nautilus adapter's defaults for the environment; see node_endpoints)
    http_url: str | None = None  # Binance USD-M REST base, e.g. https://fapi.binance.com
    ws_market_url: str | None = None  # data client WebSocket base: klines on Binance's /market route
    ws_private_url: str | None = None  # live execution client user-data stream base: the /private route

    def __post_init__(self):
        if self.mode not in MODES:
            raise NodeConfigError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not self.symbols:
            raise NodeConfigError("no symbols")
        for s in self.symbols:
            if not s.endswith("USDT"):
                raise NodeConfigError(f"{s!r}: Binance USDT-M symbols end with USDT")
        if not 1 <= int(self.leverage) <= 125:
            raise NodeConfigError("leverage must be 1..125")


def credential_env_vars(testnet: bool) -> tuple[str, str]:
    """(key variable, secret variable) the Nautilus Binance adapter reads for USDT-M futures."""
    if testnet:
        return "BINANCE_FUTURES_TESTNET_API_KEY", "BINANCE_FUTURES_TESTNET_API_SECRET"
    return "BINANCE_API_KEY", "BINANCE_API_SECRET"


def missing_credentials(settings: NodeSettings, environ=None) -> tuple[str, ...]:
    """Names (never values) of the credential variables the mode needs and the environment lacks
    (blank counts as missing). ``sandbox`` needs none (see the module doc)."""
    if settings.mode != "live":
        return ()
    env = os.environ if environ is None else environ
    return tuple(n for n in credential_env_vars(settings.testnet) if not env.get(n, "").strip())


def check_credentials(settings: NodeSettings, environ=None) -> tuple[str, str]:
    """Raise ``CredentialsError`` naming every missing variable the mode needs; return the variable names."""
    names = credential_env_vars(settings.testnet)
    missing = missing_credentials(settings, environ)
    if missing:
        where = "Binance USDT-M futures testnet" if settings.testnet else "Binance USDT-M futures (production)"
        raise CredentialsError(
            f"dolphin runtime {settings.mode}: missing {' and '.join(missing)} in the environment "
            f"({where} API credentials; they are read from the environment only, never from files or flags)")
    return names


DRY_RUN_PLACEHOLDER = "DRY_RUN_PLACEHOLDER"  # what a live dry run without keys gives the exec client


def build_node_config(settings: NodeSettings, *, placeholder_credentials: bool = False):
    """The ``TradingNodeConfig`` (no credentials in it; see the module doc). ``placeholder_credentials``:
    live dry run only, the execution client gets ``DRY_RUN_PLACEHOLDER`` so it can be built without keys."""
    from nautilus_trader.adapters.binance.common.enums import BinanceAccountType, BinanceEnvironment
    from nautilus_trader.adapters.binance.config import BinanceDataClientConfig, BinanceExecClientConfig
    from nautilus_trader.adapters.binance.futures.enums import BinanceFuturesMarginType
    from nautilus_trader.adapters.sandbox.config import SandboxExecutionClientConfig
    from nautilus_trader.common.config import LoggingConfig
    from nautilus_trader.config import InstrumentProviderConfig, LiveExecEngineConfig, TradingNodeConfig

    ids = frozenset(str(instrument_id(s)) for s in settings.symbols)
    provider = InstrumentProviderConfig(load_all=False, load_ids=ids)
    env = BinanceEnvironment.TESTNET if settings.testnet else BinanceEnvironment.LIVE
    data = BinanceDataClientConfig(account_type=BinanceAccountType.USDT_FUTURES, environment=env,
                                   instrument_provider=provider, **_data_urls(settings))
    if settings.mode == "live":
        exec_cfg = BinanceExecClientConfig(
            account_type=BinanceAccountType.USDT_FUTURES, environment=env, instrument_provider=provider,
            futures_leverages={s: int(settings.leverage) for s in settings.symbols},
            futures_margin_types={s: BinanceFuturesMarginType.ISOLATED for s in settings.symbols},
            use_reduce_only=True, max_retries=3, retry_delay_initial_ms=500, retry_delay_max_ms=5_000, **_exec_urls(settings),
            **({"api_key": DRY_RUN_PLACEHOLDER, "api_secret": DRY_RUN_PLACEHOLDER} if placeholder_credentials else {}))
    else:
        capital = settings.engine.initial_capital if settings.capital is None else settings.capital
        exec_cfg = SandboxExecutionClientConfig(
            venue=VENUE.value, starting_balances=[f"{capital:.2f} USDT"], base_currency="USDT",
            oms_type="NETTING", account_type="MARGIN", default_leverage=Decimal(int(settings.leverage)),
            bar_execution=True, use_reduce_only=True)
    return TradingNodeConfig(
        trader_id=settings.trader_id,
        logging=LoggingConfig(log_level=settings.log_level, log_directory=settings.log_directory),
        exec_engine=LiveExecEngineConfig(reconciliation=settings.mode == "live"),
        data_clients={VENUE.value: data},
        exec_clients={VENUE.value: exec_cfg},
        timeout_connection=30.0, timeout_reconciliation=15.0, timeout_portfolio=10.0, timeout_disconnection=10.0,
        timeout_post_stop=5.0,
    )


def routed_urls(base_url: str) -> dict:
    """The three endpoint settings for a server that serves Binance's USD-M REST and its routed WebSocket
    streams on one origin (``dolphin venue``, a proxy): ``http(s)://host:port`` -> REST at that origin,
    klines at ``ws(s)://host:port/market``, user data at ``ws(s)://host:port/private``."""
    from urllib.parse import urlsplit

    u = urlsplit(base_url.strip())
    if u.scheme not in ("http", "https") or not u.netloc:
        raise NodeConfigError(f"base URL must be http(s)://host[:port], got {base_url!r}")
    ws = f"{'wss' if u.scheme == 'https' else 'ws'}://{u.netloc}"
    return {"http_url": f"{u.scheme}://{u.netloc}", "ws_market_url": f"{ws}/market",
            "ws_private_url": f"{ws}/private"}


def _data_urls(settings: NodeSettings) -> dict:
    """Data client base URLs: only the configured ones (else the adapter resolves its defaults)."""
    out = {"base_url_http": settings.http_url, "base_url_ws": settings.ws_market_url}
    return {k: v for k, v in out.items() if v}


def _exec_urls(settings: NodeSettings) -> dict:
    """Live execution client base URLs (REST, user-data stream): only the configured ones."""
    out = {"base_url_http": settings.http_url, "base_url_ws_stream": settings.ws_private_url}
    return {k: v for k, v in out.items() if v}


def node_endpoints(settings: NodeSettings) -> dict:
    """What the node connects to: the adapter's defaults (``adapter_endpoints``) with the configured base URLs
    over them; ``configured`` names the ones set. With a configured ``ws_market_url`` the adapter sends its
    ``/public`` streams (depth, book ticker) there as well: it only re-routes ``fstream.binance.com`` URLs."""
    ep = adapter_endpoints(settings.testnet)
    conf = {"http": settings.http_url, "ws_market": settings.ws_market_url, "ws_private": settings.ws_private_url}
    ep.update({k: v for k, v in conf.items() if v})
    if settings.ws_market_url:
        ep["ws_public"] = settings.ws_market_url
    ep["configured"] = tuple(k for k, v in conf.items() if v)
    return ep


def venue_label(settings: NodeSettings) -> str:
    """The venue part of a ledger session name: ``testnet`` / ``production``, or the REST host when a base URL
    is configured (a local venue's sessions never continue a testnet session's capital)."""
    if settings.http_url:
        from urllib.parse import urlsplit

        return urlsplit(settings.http_url).hostname or "custom"
    return "testnet" if settings.testnet else "production"


def adapter_endpoints(testnet: bool) -> dict:
    """The endpoints the Nautilus Binance adapter resolves for USDT-M futures when no base URL is
    configured (as ``build_node_config`` leaves them): ``http``, ``ws_market`` (klines, trades),
    ``ws_public`` (depth, book ticker), ``ws_private`` (user data; the execution client)."""
    from nautilus_trader.adapters.binance.common.enums import BinanceAccountType, BinanceEnvironment
    from nautilus_trader.adapters.binance.common.urls import (get_http_base_url, get_ws_base_url,
                                                              get_ws_private_base_url, get_ws_public_base_url)

    env = BinanceEnvironment.TESTNET if testnet else BinanceEnvironment.LIVE
    acct = BinanceAccountType.USDT_FUTURES
    return {"http": get_http_base_url(acct, env, False), "ws_market": get_ws_base_url(acct, env, False),
            "ws_public": get_ws_public_base_url(acct, env, False),
            "ws_private": get_ws_private_base_url(acct, env, False)}


def strategy_for(settings: NodeSettings, *, risk_source=None, history=None, capital=None, journal=None, adopt=None,
                 gap_filler=None):
    from runtime.strategy import DolphinStrategy, DolphinStrategyConfig

    # live: orders at the venue that Nautilus's start-up reconciliation finds (a take-profit resting from before a
    # restart) belong to this strategy, so it can track and cancel them (runtime.reconcile)
    claims = [instrument_id(s) for s in settings.symbols] if settings.mode == "live" else None
    scfg = DolphinStrategyConfig.for_engine(settings.engine, symbols=tuple(settings.symbols),
                                            bar_ms=int(settings.bar_ms), bar_timeout_ms=int(settings.bar_timeout_ms),
                                            external_order_claims=claims)
    strategy = DolphinStrategy(scfg, risk_source=risk_source, history=history, capital=capital, journal=journal,
                               adopt=adopt, gap_filler=gap_filler)
    if settings.scan_files:
        from runtime.scan_files import ScanFileWriter

        strategy.scan_files = ScanFileWriter(settings.scan_dir)
    return strategy


def build_node(settings: NodeSettings, *, risk_source=None, history=None, capital=None, loop=None, journal=None,
               dry_run: bool = False, adopt=None, on_constructed=None):
    """Check credentials, construct and build the node with its DolphinStrategy. Does not connect:
    the caller runs it (``node.run()``) and disposes it (``node.dispose()``, which closes its loop,
    hence a fresh event loop per node). ``dry_run``: the node will not be run, so missing credentials
    do not stop the build (placeholders; the caller warns with ``missing_credentials``). ``on_constructed``:
    called right after the ``TradingNode`` exists, before its clients are built (the CLI's signal guard)."""
    missing = missing_credentials(settings)  # the adapter reads os.environ itself: check exactly that
    if not dry_run:
        check_credentials(settings)
    import asyncio

    from nautilus_trader.adapters.binance.factories import (BinanceLiveDataClientFactory,
                                                            BinanceLiveExecClientFactory)
    from nautilus_trader.adapters.sandbox.factory import SandboxLiveExecClientFactory
    from nautilus_trader.live.node import TradingNode

    if loop is None:
        loop = asyncio.new_event_loop()
    node = TradingNode(config=build_node_config(settings, placeholder_credentials=bool(missing)), loop=loop)
    if on_constructed is not None:
        on_constructed(node)
    node.add_data_client_factory(VENUE.value, BinanceLiveDataClientFactory)
    node.add_exec_client_factory(VENUE.value, BinanceLiveExecClientFactory if settings.mode == "live"
                                 else SandboxLiveExecClientFactory)
    node.build()
    if settings.mode == "sandbox":  # the simulated exchange's market (runtime/sandbox_feed.py)
        from runtime.sandbox_feed import sandbox_market_feed

        node.trader.add_actor(sandbox_market_feed(settings.symbols, settings.bar_ms))
    from runtime.warmup import VenueGapFiller

    # bars the kline stream skipped (a restart racing a bar close, a dropped connection) come from the venue's REST
    filler = VenueGapFiller(node_endpoints(settings)["http"], settings.symbols, settings.bar_ms)
    node.trader.add_strategy(strategy_for(settings, risk_source=risk_source, history=history, capital=capital,
                                          journal=journal, adopt=adopt, gap_filler=filler))
    return node

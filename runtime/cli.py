"""`dolphin runtime paper|sandbox|live`."""

import sys
import time


def register(sub) -> None:
    rt = sub.add_parser("runtime", help="NautilusTrader runtime: paper replay, sandbox and live nodes")
    rsub = rt.add_subparsers(dest="runtime_command", metavar="MODE")

    p = rsub.add_parser("paper", help="replay recorded real bars through the Nautilus strategy (backtest venue)")
    p.add_argument("--data", default="spot-5m-2024", help="candle set name under <data>/klines or a path")
    p.add_argument("--start", required=True, help="first day/time (UTC) to replay")
    p.add_argument("--end", required=True, help="last day/time (UTC), inclusive")
    p.add_argument("--config", default=None, help="engine preset (blue, green) or YAML file")
    p.add_argument("--no-funding", action="store_true", help="do not charge recorded funding (USDT-M sets)")
    p.add_argument("--compare", action="store_true",
                   help="also run the dolphin backtest on the same bars and print the parity report")
    p.add_argument("--trades-csv", default=None, help="write the replay's trade list as CSV")
    p.add_argument("--ledger", default=None,
                   help="SQLite ledger whose fill journal records the session (default <data home>/ledger/ledger.sqlite)")
    p.add_argument("--no-ledger", action="store_true", help="do not journal fills (nothing is restored on a re-run)")
    p.add_argument("--strategy", default="BLUE", help="strategy name in the ledger (default BLUE)")
    p.add_argument("--progress", action="store_true", help="print one line per journal write")
    p.add_argument("--risk", choices=("store", "defaults"), default="defaults",
                   help="neutral defaults (APEX, Rm 1; default) or the survival stack from the feature store "
                        "(DOLPHIN_FEATURE_STORE / DOLPHIN_HZ_*), aged against each bar close")
    p.set_defaults(func=cmd_paper)

    for mode, help_ in (("sandbox", "Binance USDT-M market data, simulated (paper) fills: no order reaches Binance"),
                        ("live", "Binance USDT-M market data and REAL orders")):
        n = rsub.add_parser(mode, help=help_)
        n.add_argument("--venue", choices=("testnet", "production"), default="testnet",
                       help="Binance futures testnet (default) or production")
        n.add_argument("--symbols", default=None, help="comma-separated USDT-M symbols (default: BTC ETH SOL XRP DOGE)")
        n.add_argument("--config", default=None, help="engine preset (blue, green) or YAML file")
        n.add_argument("--history", default=None,
                       help="'venue': warm the scanner/regime from the venue's REST klines up to the last "
                            "closed bar (restarts after a gap); or a recorded candle set whose last bars do it "
                            "(must end where live bars start)")
        n.add_argument("--capital", type=float, default=None,
                       help="starting capital (default: the config's initial capital)")
        n.add_argument("--log-level", default="INFO")
        n.add_argument("--risk", choices=("store", "defaults"), default="store",
                       help="survival stack from the feature store (default; DOLPHIN_FEATURE_STORE / DOLPHIN_HZ_*) or "
                            "neutral defaults (APEX, Rm 1: testing only)")
        n.add_argument("--ledger", default=None, help="SQLite ledger (default <data home>/ledger/ledger.sqlite)")
        n.add_argument("--strategy", default="BLUE", help="strategy name in the ledger (default BLUE)")
        n.add_argument("--dry-run", action="store_true", help="build the node and exit without connecting")
        _add_endpoint_args(n)
        n.set_defaults(func=cmd_node, mode=mode)
    rt.set_defaults(func=lambda args: (rt.print_help(), 2)[1])


def cmd_paper(args) -> int:
    from dolphin.engine.config import load_config
    from dolphin.scanner.writer import time_bounds
    from runtime.parity import trade_summary
    from runtime.replay import run_replay

    cfg = load_config(args.config)
    start, end = time_bounds(args.start, args.end)
    risk_source = store = None
    if args.risk == "store":
        from runtime.risk import StoreRiskSource

        opened = open_risk_store("paper")
        if isinstance(opened, int):
            return opened
        store, where = opened
        # bar clock: the replay's "now" is the bar close being decided, so ages (MC 6 h, book 30 s, DVOL
        # recovery) run in market time, not in the minutes the replay takes; values stamped after the bar are
        # look-ahead and count as missing; reads stay synchronous, so the same store gives the same run.
        # No DOLPHIN_SAFETY / heartbeat: those are the live runtime's posture, not a replay's past one.
        risk_source = StoreRiskSource(store, symbols=None, clock="bar", publish=False)
        print(f"risk: survival stack from the feature store {where} (bar clock; DOLPHIN_SAFETY not published)",
              flush=True)
    sink = None
    if not args.no_ledger:
        from dolphin.ledger.journal import FillJournal
        from dolphin.status import ledger_path
        from runtime.ledger import LedgerSink, session_id

        journal = FillJournal(args.ledger or ledger_path())
        session = session_id("paper", args.data, args.start, args.end, cfg, args.risk)
        sink = LedgerSink(journal, args.strategy.upper(), session, mode="paper", opening_capital=cfg.initial_capital,
                          store=store, progress=sys.stdout if args.progress else None)
        if sink.restart:
            print(f"restarting: {sink.restored.describe()}", flush=True)
        if risk_source is not None:
            risk_source.attach(sink)  # the hot copy (runtime_paper) is re-created if the store loses it
    t0 = time.perf_counter()
    try:
        r = run_replay(args.data, cfg, start_ms=start, end_ms=end, funding_dir=None if args.no_funding else "auto",
                       keep_panel=args.compare, ledger=sink, risk=risk_source)
    finally:
        if risk_source is not None:
            risk_source.close()
            store.close()
    elapsed = time.perf_counter() - t0
    print(f"{cfg.name} paper replay on {args.data}: {len(r.symbols)} instruments, {r.bar_closes:,} bar closes "
          f"({r.bars:,} bars) through Nautilus in {r.wall_s:.1f} s ({elapsed:.1f} s with loading)")
    for note in r.notes:
        print(f"  {note}")
    if risk_source is not None and risk_source.last is not None:
        print(f"  risk at the last bar: {risk_source.last.breakdown.describe()}")
    print(trade_summary(r.trades, cfg.initial_capital))
    print(f"capital: strategy ledger {r.capital:,.2f} USDT; Nautilus account {r.account_balance:,.2f} USDT")
    if args.trades_csv:
        r.trades.to_csv(args.trades_csv, index=False)
        print(f"trades: {args.trades_csv}")
    if args.compare:
        from dolphin.engine.backtest import run_backtest
        from dolphin.engine.funding import find_funding_dir
        from dolphin.paths import resolve_kline_set
        from dolphin.scanner import scan
        from runtime.parity import compare

        p = r.panel
        path = resolve_kline_set(args.data)
        fdir = None if args.no_funding or not path.is_dir() else find_funding_dir(path)
        bt = run_backtest(p, scan(p, int(p.open_time[0])), cfg, trade_from_ms=int(p.close_time[p.warmup_bars]),
                          funding_dir=fdir)
        rep = compare(bt, r, p)
        print()
        print("parity with `dolphin backtest` on the same bars:")
        print(rep.describe())
        return 0 if rep.ok else 1
    return 0


class _StopGuard:
    """SIGTERM / SIGINT from the first line of `dolphin runtime sandbox|live` to the end.

    Nautilus runs its node on uvloop, whose signal handlers only work while the loop runs: a SIGTERM that
    arrived while the node was being built was dropped (measured: a restart sent SIGTERM 0.2 s after its
    warm-up never stopped). And ``node.stop()`` while the node is still starting (connecting, reconciling) is
    lost: the start-up carries on and the node runs. So: the two signals are blocked in the main thread (and
    the threads it starts) and recorded by a handler of ours in case another thread takes one; the handler is
    put back right after Nautilus replaced it (``on_constructed``); the start-up checks between its steps and
    stops cleanly; once the loop runs, its handler is armed, the signals unblocked (a pending one arrives then),
    and the node is stopped as soon as its trader is running (at most ``START_WAIT_S`` later)."""

    START_WAIT_S = 60.0

    def __init__(self):
        import signal

        self._signal = signal
        self.sigs = {signal.SIGTERM, signal.SIGINT}
        self.got = None
        self._handlers = {s: signal.getsignal(s) for s in self.sigs}
        self.record()
        self._mask = signal.pthread_sigmask(signal.SIG_BLOCK, self.sigs)

    def close(self) -> None:
        """Restore the mask and handlers this thread had (a blocked mask is inherited by every process started
        later: in a caller that goes on, e.g. a test process, its children could not be stopped by SIGTERM)."""
        signal = self._signal
        signal.pthread_sigmask(signal.SIG_SETMASK, self._mask)
        for s, h in self._handlers.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)

    def record(self, node=None) -> None:
        for s in self.sigs:
            self._signal.signal(s, self._record)

    def _record(self, signum, frame) -> None:
        self.got = self.got or self._signal.Signals(signum)

    def pending(self) -> bool:
        got = (self._signal.sigpending() & self.sigs) | ({self.got} if self.got else set())
        if got:
            print(f"dolphin runtime: {', '.join(sorted(s.name for s in got))} received during start-up: stopping",
                  file=sys.stderr, flush=True)
        return bool(got)

    def install(self, node) -> None:
        """Before ``node.run()``: arm the loop's handlers when it runs, then let the signals in."""
        loop, signal = node.get_event_loop(), self._signal

        def on_signal(sig):
            print(f"dolphin runtime: {sig.name} received: stopping the node", file=sys.stderr, flush=True)
            for s in self.sigs:  # one stop; a second signal does not interrupt the shutdown
                loop.remove_signal_handler(s)
            stop_when_started(loop.time() + self.START_WAIT_S)

        def stop_when_started(deadline):
            if node.trader.is_running or loop.time() >= deadline:
                node.stop()
            else:
                loop.call_later(0.1, stop_when_started, deadline)

        def arm():
            for s in self.sigs:
                loop.add_signal_handler(s, on_signal, s)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, self.sigs)
            if self.got:  # taken by another thread while the loop was not running
                on_signal(self.got)

        loop.call_soon(arm)


def cmd_node(args) -> int:
    guard = _StopGuard() if not args.dry_run else None
    try:
        return _cmd_node(args, guard)
    finally:
        if guard is not None:
            guard.close()


def _cmd_node(args, guard) -> int:
    from dolphin.engine.config import load_config
    from runtime.nodes import DEFAULT_SYMBOLS, NodeConfigError, NodeSettings

    cfg = load_config(args.config)
    symbols = tuple(s.strip().upper() for s in args.symbols.split(",")) if args.symbols else DEFAULT_SYMBOLS
    # the order load_panel gives a --history warm-up and the backtest its columns (the scanner's and the
    # ranking's order): any other order made the warm-up refuse the history
    symbols = tuple(sorted(dict.fromkeys(symbols)))
    try:
        settings = NodeSettings(mode=args.mode, testnet=args.venue == "testnet", symbols=symbols, engine=cfg,
                                capital=args.capital, log_level=args.log_level, **_endpoint_settings(args),
                                **({} if args.bar_timeout_ms is None else {"bar_timeout_ms": args.bar_timeout_ms}))
    except NodeConfigError as e:
        print(f"dolphin runtime {args.mode}: {e}", file=sys.stderr)
        return 2
    ctx = _node_ledger_and_risk(args, settings, symbols)
    if isinstance(ctx, int):
        return ctx
    sink, risk_source, capital, adopt = ctx
    try:
        if guard is not None and guard.pending():
            return 0
        return _build_and_run(args, cfg, settings, symbols, sink, risk_source, capital, adopt, guard)
    finally:
        if risk_source is not None:  # stop its refresher / publisher threads, then the store
            risk_source.close()
            risk_source.store.close()


def _build_and_run(args, cfg, settings, symbols, sink, risk_source, capital, adopt, guard=None) -> int:
    from runtime.nodes import CredentialsError, build_node, missing_credentials, node_endpoints

    history = None
    if args.history == "venue" and not args.dry_run:
        from runtime.nodes import node_endpoints
        from runtime.replay import warmup_bars
        from dolphin.timeutil import fmt_ms
        from runtime.warmup import WarmupError, venue_history

        http = node_endpoints(settings)["http"]
        t0 = time.monotonic()
        try:
            history = venue_history(http, symbols, settings.bar_ms, warmup_bars(cfg))
        except WarmupError as e:
            print(f"dolphin runtime {args.mode}: warm-up failed: {e}", file=sys.stderr)
            return 2
        print(f"warm-up: {history.n_bars} bars per symbol from {http}/fapi/v1/klines, "
              f"{fmt_ms(int(history.open_time[0]))} .. {fmt_ms(int(history.close_time[-1]))} "
              f"({time.monotonic() - t0:.1f} s)", flush=True)
        if guard is not None and guard.pending():
            return 0
    elif args.history and args.history != "venue":
        from dolphin.data import load_panel
        from runtime.replay import warmup_bars

        full = load_panel(args.history, symbols=list(symbols))
        history = full.slice_bars(max(0, full.n_bars - warmup_bars(cfg)), full.n_bars)
    missing = missing_credentials(settings)
    if missing and args.dry_run:  # names only, never values; a real start refuses (CredentialsError below)
        print(f"dolphin: warning: {' and '.join(missing)} not set: dry run built with placeholder credentials; "
              f"`dolphin runtime {args.mode}` without --dry-run refuses to start without them", file=sys.stderr)
    try:
        node = build_node(settings, history=history, capital=capital, risk_source=risk_source, journal=sink,
                          dry_run=args.dry_run, adopt=adopt, on_constructed=guard.record if guard else None)
    except CredentialsError as e:
        print(f"dolphin: error: {e}", file=sys.stderr)
        return 2
    where = "testnet" if settings.testnet else "PRODUCTION"
    what = ("simulated fills (sandbox)" if args.mode == "sandbox" else f"REAL orders on Binance {where}")
    print(f"{cfg.name} {args.mode} node built: Binance USDT-M {where} market data, {what}; "
          f"{len(symbols)} instruments: {', '.join(symbols)}; "
          f"warm-up: {_warmup_text(args, history)}")
    ep = node_endpoints(settings)
    print(f"endpoints ({_endpoints_origin(ep)}): REST {ep['http']}; WebSocket klines {ep['ws_market']}, "
          f"depth {ep['ws_public']}" + (f", user data {ep['ws_private']}" if args.mode == "live" else ""))
    print(f"ledger: {sink.restored.describe() if sink.restart else 'new session ' + sink.session}; capital "
          f"{capital:,.2f}; risk: {'survival stack from the feature store' if risk_source else 'defaults'}")
    if args.dry_run:
        print("dry run: not connecting, no orders")
        node.dispose()
        return 0
    if guard is not None:
        if guard.pending():  # stopped while warming up or building: never connect
            node.dispose()
            return 0
        guard.install(node)
    try:
        node.run()
    finally:
        node.dispose()
    return 0


def _warmup_text(args, history) -> str:
    if history is not None:
        return f"{history.n_bars} bars from {'the venue' if args.history == 'venue' else args.history}"
    if args.history == "venue":
        return "from the venue's klines at start (not fetched in a dry run)"
    return "none (entries wait for a warm regime)"


ENDPOINT_ENV = {"base_url": "DOLPHIN_BINANCE_BASE_URL", "http_url": "DOLPHIN_BINANCE_HTTP_URL",
                "ws_market_url": "DOLPHIN_BINANCE_WS_MARKET_URL", "ws_private_url": "DOLPHIN_BINANCE_WS_PRIVATE_URL"}


def _add_endpoint_args(n) -> None:
    """Base URLs: configuration only (a flag, else its environment variable, else the adapter's default)."""
    n.add_argument("--base-url", default=None, metavar="URL",
                   help="one origin serving Binance USD-M REST and the routed WebSocket streams, e.g. a local "
                        "`dolphin venue` at http://127.0.0.1:8765 (REST there, klines on ws://.../market, user "
                        f"data on ws://.../private; env {ENDPOINT_ENV['base_url']})")
    n.add_argument("--http-url", default=None, metavar="URL",
                   help=f"REST base URL (env {ENDPOINT_ENV['http_url']}; overrides --base-url)")
    n.add_argument("--ws-market-url", default=None, metavar="URL",
                   help=f"WebSocket base for klines, the /market route (env {ENDPOINT_ENV['ws_market_url']})")
    n.add_argument("--ws-private-url", default=None, metavar="URL",
                   help=f"WebSocket base for user data, the /private route (live; env {ENDPOINT_ENV['ws_private_url']})")
    n.add_argument("--bar-timeout-ms", type=int, default=None, metavar="MS",
                   help="decide a bar set this long after its first bar arrived even if incomplete (default 20000; "
                        "0 = only when the next bar arrives)")


def _endpoint_settings(args, environ=None) -> dict:
    """``NodeSettings`` endpoint fields from the flags / environment; empty = the adapter's defaults.
    Raises ``NodeConfigError`` for a malformed base URL."""
    import os

    from runtime.nodes import routed_urls

    env = os.environ if environ is None else environ
    val = {k: (getattr(args, k, None) or env.get(var, "").strip() or None) for k, var in ENDPOINT_ENV.items()}
    base = val.pop("base_url")
    out = routed_urls(base) if base else {}
    out.update({k: v for k, v in val.items() if v})
    return out


def _endpoints_origin(ep: dict) -> str:
    if not ep["configured"]:
        return "the Nautilus adapter's defaults"
    return f"configured: {', '.join(ep['configured'])}"


def open_risk_store(mode: str):
    """The configured feature store behind the parsed-record near cache, checked reachable with one read,
    and its description; or exit code 2 after one line on stderr naming the store."""
    from dolphin.store import ACB_STATE, FEATURES, StoreUnavailableError
    from dolphin.adapters.store_factory import store_config_from_env

    try:
        where = store_config_from_env().describe()
    except (ValueError, OSError) as e:  # a bad DOLPHIN_FEATURE_STORE, a data home that cannot be made
        print(f"dolphin runtime {mode}: {e}", file=sys.stderr)
        return 2
    from dolphin.adapters.store_factory import open_cached_store_from_env

    store = None
    try:
        store = open_cached_store_from_env()
        store.get(FEATURES, ACB_STATE)  # constructed is not reachable (an embedded file may be unreadable)
    except StoreUnavailableError as e:
        if store is not None:
            store.close()
        why = " ".join(str(e).split())
        print(f"dolphin runtime {mode}: feature store {where} unreachable: {why} (the survival stack needs it; "
              f"--risk defaults runs without it, for tests only)", file=sys.stderr)
        return 2
    return store, where


def _node_ledger_and_risk(args, settings, symbols):
    """The node's journal session (one per mode/venue/UTC day: a restart the same day continues it) and
    its risk source, capital and the position to adopt. Capital comes from the ledger: the session's own when
    restarting, else the last session's of this mode, else the config. A session with an open position
    continues until flat (also past midnight). Before a real start the journal is reconciled with the venue
    (``runtime.reconcile``: fills made while down are journaled, the open position adopted, a disagreement
    refused with exit 2); a dry run connects nowhere and only reports what the journal holds."""
    from datetime import datetime, timezone

    from dolphin.ledger.journal import FillJournal
    from dolphin.status import ledger_path
    from runtime.ledger import LedgerSink
    from runtime.nodes import CredentialsError, check_credentials

    if not args.dry_run:  # reconciliation reads the venue's account with them: refuse before touching anything
        try:
            check_credentials(settings)
        except CredentialsError as e:
            print(f"dolphin: error: {e}", file=sys.stderr)
            return 2
    journal = FillJournal(args.ledger or ledger_path())
    strategy = args.strategy.upper()
    from runtime.nodes import venue_label

    venue = venue_label(settings)
    session = f"{args.mode}:{venue}:{datetime.now(timezone.utc).date().isoformat()}"
    mine = [s for s in journal.sessions(strategy) if s["mode"] == args.mode and s["session"].startswith(
        f"{args.mode}:{venue}:")]
    current = journal.restore(strategy, session)
    prev = current if current.status != "new" else journal.restore(strategy, mine[-1]["session"]) if mine else None
    if current.status == "new" and prev is not None and prev.positions and prev.status == "open":
        session, current = prev.session, prev  # its open position's session continues until flat
    if current.status != "new":
        opening = current.opening_capital
    elif args.capital is not None:
        opening = float(args.capital)
    elif prev is not None:
        opening = prev.capital
    else:
        opening = float(settings.engine.initial_capital)
    risk_source = None
    if args.risk == "store":
        from runtime.risk import StoreRiskSource

        opened = open_risk_store(args.mode)
        if isinstance(opened, int):
            return opened
        # the operator's manual override (dolphin safety override) lives in the same ledger file
        risk_source = StoreRiskSource(opened[0], symbols=symbols, clock="wall", override_ledger=journal.path)
    sink = LedgerSink(journal, strategy, session, mode=args.mode, opening_capital=opening,
                      store=risk_source.store if risk_source else None, resimulate=False)
    adopt = None
    if args.dry_run:
        if sink.restored.positions:
            print(f"dry run: the ledger shows open positions ({sink.restored.describe()}); a real start reconciles "
                  "them with the venue and adopts them")
    else:
        from runtime.reconcile import ReconcileError, VenueAccount, reconcile

        try:
            account = None
            if args.mode == "live":
                from runtime.nodes import node_endpoints

                account = VenueAccount.from_env(node_endpoints(settings)["http"], settings.testnet)
            rec = reconcile(sink, symbols, account=account)
        except ReconcileError as e:
            print(f"dolphin runtime {args.mode}: {e}", file=sys.stderr)
            if risk_source is not None:
                risk_source.close()
                risk_source.store.close()
            return 2
        for line in rec.lines:
            print(f"reconcile: {line}", flush=True)
        adopt = rec.adopt
    if risk_source is not None:
        risk_source.attach(sink)  # runtime_<mode> is re-created from the journal if the store loses it
    return sink, risk_source, journal.restore(strategy, session).capital, adopt

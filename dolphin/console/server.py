"""`dolphin console`: the operator's live page on 127.0.0.1 (Starlette + uvicorn, server-sent events).

One background thread ("dolphin-console-collector") builds the snapshot (``dolphin.console.collect``) every
``--interval`` seconds (default 0.5) from the configured feature store and the ledger under the data home; every
open page receives each snapshot over ``/events`` (SSE) and redraws in place, without reloads. A collector round
stuck in a store call (a Hazelcast member gone: calls stall up to the client's timeout) is announced to the
pages after ``STALL_S`` seconds, so a hung store never looks like a quiet one.

Read-only by default. With ``DOLPHIN_CONSOLE_TOKEN`` set in the environment (at least 16 characters) the page also
offers the manual safety override (``dolphin.adapters.safety_override_sqlite``: set a posture for a limited time
with a reason, or clear it); each request must carry the token (``Authorization: Bearer``), typed by the operator
into the page (it is never put into the page). Every action, accepted or refused, is appended to
``<data home>/console/audit.jsonl`` and logged (never the token); the override itself is audited in the ledger.

Routes: ``/`` (the page), ``/events`` (SSE), ``/api/snapshot`` (JSON), ``/healthz``, ``POST /api/override``,
``POST /api/override/clear``.
"""

import asyncio
import hmac
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from dolphin.console.charts import equity_svg
from dolphin.console.collect import DAY_MS, Sources, snapshot

log = logging.getLogger("dolphin.console")

STALL_S = 3.0  # a collector round older than this is reported as "not answering"
TOKEN_ENV = "DOLPHIN_CONSOLE_TOKEN"
MIN_TOKEN = 16


class Collector:
    def __init__(self, src: Sources, interval: float = 0.5):
        self.src, self.interval = src, float(interval)
        self.snap: dict | None = None
        self.version = 0
        self.round_started: float | None = None  # monotonic start of the round in progress
        self.round_ms: list = []  # durations of the last rounds (for the note / the page)
        self.observed: list = []  # posture changes seen in DOLPHIN_SAFETY by this console (newest last)
        self._last_posture = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._t = threading.Thread(target=self._loop, name="dolphin-console-collector", daemon=True)

    def start(self) -> "Collector":
        self._t.start()
        return self

    def poke(self) -> None:
        """Collect now (after an action), not at the next interval."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            self.round_started = t0
            try:
                snap = build(self.src)
            except Exception as e:  # never let the page freeze on a bug: show it
                log.exception("console snapshot failed")
                snap = {"now_ms": int(time.time() * 1000), "errors": [f"{type(e).__name__}: {e}"],
                        "store": {"reachable": False, "error": "snapshot failed"}}
            took = time.monotonic() - t0
            snap["collect_ms"] = took * 1000
            self._track(snap)
            self.round_started = None
            self.round_ms = (self.round_ms + [took * 1000])[-50:]
            self.snap = snap
            self.version += 1
            self._wake.wait(max(0.0, self.interval - took))
            self._wake.clear()

    def _track(self, snap: dict) -> None:
        """Merge the posture changes this console saw in ``DOLPHIN_SAFETY`` with the runtime controller's (an
        override, or a runtime restart, changes the published posture without a controller change)."""
        sf = snap.get("safety")
        if sf and sf.get("posture"):
            if self._last_posture is not None and sf["posture"] != self._last_posture:
                self.observed = (self.observed + [{"timestamp": sf.get("timestamp"), "previous": self._last_posture,
                                                   "posture": sf["posture"], "Rm": sf.get("Rm"),
                                                   "breakdown": sf.get("breakdown") or {},
                                                   "source": "seen by the console"}])[-20:]
            self._last_posture = sf["posture"]
        if "posture_changes" in snap or self.observed:
            known = {c.get("timestamp") for c in snap.get("posture_changes") or []}
            merged = list(snap.get("posture_changes") or []) + [c for c in self.observed if c["timestamp"] not in known]
            snap["posture_changes"] = sorted(merged, key=lambda c: str(c.get("timestamp")), reverse=True)[:12]

    def stalled_s(self) -> float:
        s = self.round_started
        return 0.0 if s is None else max(0.0, time.monotonic() - s)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._t.join(2.0)


def build(src: Sources) -> dict:
    snap = snapshot(src)
    for st in snap.get("strategies", []):
        sess = st.get("session") or {}
        st["session_svg"] = equity_svg(f"{st['name']} runtime session {sess.get('session', '')}".strip(),
                                       sess.get("curve") or [])
        st["chain_svg"] = equity_svg(f"{st['name']} Dagster paper chain (closing equity per day)",
                                     [(_day_end_ms(d["day"]), d["equity"]) for d in st.get("chain") or []])
        st.pop("chain", None)
        if sess:
            sess.pop("curve", None)
    return snap


def _day_end_ms(day: str) -> int:
    from dolphin.timeutil import day_start_ms

    return day_start_ms(day) + DAY_MS


# ------------------------------------------------------------------ actions (token only)


class Actions:
    def __init__(self, token: str | None, ledger_path: Path, audit_path: Path):
        self.token = token or None
        self.ledger_path, self.audit_path = Path(ledger_path), Path(audit_path)

    @property
    def enabled(self) -> bool:
        return self.token is not None

    def authorised(self, header: str | None) -> bool:
        if not self.enabled or not header or not header.startswith("Bearer "):
            return False
        return hmac.compare_digest(header[len("Bearer "):].encode(), self.token.encode())

    def audit(self, **entry) -> None:
        entry = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **entry}
        self.audit_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.audit_path, "a") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        log.warning("console action %s by %s from %s: %s%s", entry.get("action"), entry.get("who"), entry.get("client"),
                    entry.get("result"), f" ({entry['detail']})" if entry.get("detail") else "")


def create_app(collector: Collector, actions: Actions, *, shutdown: threading.Event | None = None):
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    from dolphin.console.page import PAGE

    shutdown = shutdown or threading.Event()

    def current() -> dict:
        snap = dict(collector.snap or {"store": {"reachable": None}, "strategies": [], "waiting": True})
        snap["actions_enabled"] = actions.enabled
        snap["stalled_s"] = collector.stalled_s()
        snap["version"] = collector.version
        return snap

    async def page(request: Request):
        return HTMLResponse(PAGE, headers={"Cache-Control": "no-store"})

    async def api_snapshot(request: Request):
        return JSONResponse(current())

    async def healthz(request: Request):
        return JSONResponse({"ok": collector.snap is not None, "version": collector.version,
                             "stalled_s": collector.stalled_s()})

    async def events(request: Request):
        async def stream():
            seen, stall_sent, last_sent = -1, False, 0.0
            yield "retry: 1000\n\n"
            while not shutdown.is_set():
                if await request.is_disconnected():
                    return
                v, stalled = collector.version, collector.stalled_s()
                now = time.monotonic()
                if v != seen or (stalled >= STALL_S and now - last_sent >= 1.0):
                    seen, stall_sent, last_sent = v, stalled >= STALL_S, now
                    yield f"data: {json.dumps(current(), allow_nan=False)}\n\n"
                elif now - last_sent >= 15.0:
                    last_sent = now
                    yield ": keep-alive\n\n"
                await asyncio.sleep(0.05)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def _action(request: Request, name: str, fn):
        client = request.client.host if request.client else "?"
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
        except (ValueError, json.JSONDecodeError):
            body = None
        who = str((body or {}).get("who") or "").strip()[:80] or "unknown"
        if not actions.enabled:
            actions.audit(action=name, who=who, client=client, result="refused", detail="console is read-only")
            return JSONResponse({"ok": False, "error": f"read-only console (start it with {TOKEN_ENV} set)"}, 403)
        if not actions.authorised(request.headers.get("authorization")):
            actions.audit(action=name, who=who, client=client, result="refused", detail="bad or missing token")
            return JSONResponse({"ok": False, "error": "operator token missing or wrong"}, 401)
        if body is None:
            actions.audit(action=name, who=who, client=client, result="refused", detail="malformed body")
            return JSONResponse({"ok": False, "error": "expected a JSON object"}, 400)
        try:
            from dolphin.adapters import safety_override_sqlite as ov
        except ImportError:
            actions.audit(action=name, who=who, client=client, result="refused", detail="override module missing")
            return JSONResponse({"ok": False, "error": "dolphin.adapters.safety_override_sqlite is not installed"},
                                501)
        try:
            o = fn(ov, body, who)
        except ov.OverrideError as e:
            actions.audit(action=name, who=who, client=client, result="refused", detail=str(e))
            return JSONResponse({"ok": False, "error": str(e)}, 400)
        actions.audit(action=name, who=who, client=client, result="ok", detail=o.describe())
        collector.poke()
        return JSONResponse({"ok": True, "override": o.to_dict(), "text": o.describe()})

    async def set_override(request: Request):
        def do(ov, body, who):
            return ov.set_override(actions.ledger_path, body.get("posture"), str(body.get("reason") or ""),
                                   body.get("ttl_s"), f"{who} (console)")
        return await _action(request, "override_set", do)

    async def clear_override(request: Request):
        def do(ov, body, who):
            return ov.clear_override(actions.ledger_path, str(body.get("reason") or "cleared from the console"),
                                     f"{who} (console)")
        return await _action(request, "override_clear", do)

    async def favicon(request: Request):
        return Response(status_code=204)

    return Starlette(routes=[Route("/", page), Route("/events", events), Route("/api/snapshot", api_snapshot),
                             Route("/healthz", healthz), Route("/favicon.ico", favicon),
                             Route("/api/override", set_override, methods=["POST"]),
                             Route("/api/override/clear", clear_override, methods=["POST"])])


# ------------------------------------------------------------------ CLI


def _server_class():
    import contextlib

    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server whose SIGTERM / SIGINT also end the SSE streams (they would hold the graceful
        shutdown open) and exit normally (uvicorn re-raises the signal after its own shutdown)."""

        def __init__(self, config, shutdown: threading.Event):
            super().__init__(config)
            self._shutdown = shutdown

        @contextlib.contextmanager
        def capture_signals(self):
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            orig = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for s, h in orig.items():
                    signal.signal(s, h)

        def _on_signal(self, signum, frame):
            log.info("console: signal %d: stopping", signum)
            self._shutdown.set()
            self.should_exit = True

    return Server


def _Server(config, shutdown):
    return _server_class()(config, shutdown)


def register(sub) -> None:
    p = sub.add_parser("console", help="live operator page on 127.0.0.1 (posture, positions, PnL, freshness)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8050, help="port (default 8050; 0: a free one)")
    p.add_argument("--strategies", default="BLUE", help="comma-separated strategy names (default BLUE)")
    p.add_argument("--interval", type=float, default=0.5, help="seconds between snapshots (default 0.5)")
    p.add_argument("--dagster-url", default=os.environ.get("DOLPHIN_DAGSTER_URL", "http://127.0.0.1:3000"),
                   help="link to the Dagster UI (default $DOLPHIN_DAGSTER_URL or http://127.0.0.1:3000)")
    p.add_argument("--ledger", default=None, help="ledger SQLite file (default <data home>/ledger/ledger.sqlite)")
    p.set_defaults(func=cmd_console)


def cmd_console(args) -> int:
    import uvicorn

    from dolphin.paths import data_home
    from dolphin.scanner.writer import scan_dir
    from dolphin.status import ledger_path
    from dolphin.adapters.store_factory import open_store, store_config_from_env

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.interval > 0:
        print("dolphin console: --interval must be > 0", file=sys.stderr)
        return 2
    token = os.environ.get(TOKEN_ENV) or None
    if token is not None and len(token) < MIN_TOKEN:
        print(f"dolphin console: {TOKEN_ENV} must be at least {MIN_TOKEN} characters", file=sys.stderr)
        return 2
    cfg = store_config_from_env()
    store = open_store(cfg.kind, path=cfg.path, members=cfg.members, cluster=cfg.cluster)
    ledger = Path(args.ledger) if args.ledger else ledger_path()
    strategies = [s.strip().upper() for s in args.strategies.split(",") if s.strip()]
    src = Sources(store, ledger, scan_dir(), strategies, args.dagster_url)
    collector = Collector(src, args.interval).start()
    actions = Actions(token, ledger, data_home() / "console" / "audit.jsonl")
    shutdown = threading.Event()
    app = create_app(collector, actions, shutdown=shutdown)
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(128)  # connections queue from now on: the "listening" line below is true when printed
    port = sock.getsockname()[1]
    server = _Server(uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=3,
                                    lifespan="off"), shutdown)
    print(f"dolphin console: listening on http://{args.host}:{port} ; store {cfg.describe()} ; ledger {ledger} ; "
          f"scans {src.scan_dir} ; strategies {','.join(strategies)} ; "
          f"{'override actions ENABLED (operator token set)' if actions.enabled else 'read-only'} ; "
          f"audit {actions.audit_path}", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        shutdown.set()
        collector.stop()
        store.close()
    print("dolphin console: stopped", flush=True)
    return 0

"""`dolphin alerts`: watch the store and the ledger (the console's snapshot, ``dolphin.console.collect``) and the
scan folder, and send an alert for each change that matters:

- posture changes, with the Rm breakdown and each category's reason; HIBERNATE as its own critical alert;
- the manual override (the kill switch when it forces HIBERNATE) set, cleared or expired;
- the feature store becoming unreachable, and reachable again;
- every fill the runtime journals (a burst of more than ``FILL_BURST`` in one round is one summary alert);
- each new day of the Dagster paper chain (daily PnL, equity, drawdown);
- the watchdog going DEGRADED (with the failing checks), its failing set changing, and GREEN again;
- corrupt scan files (unparsable and untouched for 30 s: the sensor's and the bridge's rule).

The first round is the baseline: what is already there (old fills, an old paper day) is not announced, but a
system found in a bad state (HIBERNATE, DEGRADED, an override in force, the store unreachable) is. Dagster run
failures and failed asset checks come from ``dolphin_assets.sensors.alerts``.
"""

import logging
import signal
import sys
import threading
import time

from dolphin.alerts.channels import Alert, dispatcher_from_env

log = logging.getLogger("dolphin.alerts.watch")

FILL_BURST = 5
POSTURE_ORDER = ("APEX", "STALKER", "TURTLE", "HIBERNATE")


def _breakdown(sf: dict) -> str:
    bd, why = sf.get("breakdown") or {}, sf.get("reasons") or {}
    return "; ".join(f"{k} {float(bd[k]):.3f}" + (f" ({why[k]})" if why.get(k) else "") for k in sorted(bd))


def diff(prev: dict | None, cur: dict) -> list:
    """The alerts for going from snapshot ``prev`` (None: the first round) to ``cur``."""
    out = []
    first = prev is None
    prev = prev or {}
    st0, st1 = (prev.get("store") or {}), (cur.get("store") or {})
    if st1.get("reachable") is False and (first or st0.get("reachable") is not False):
        out.append(Alert("store", "feature store UNREACHABLE" + (" (at start)" if first else ""),
                         f"{st1.get('error', '')}. The runtime's Cat1 is 0: HIBERNATE.", "critical",
                         key=f"store-down:{cur.get('now')}"))
    elif st1.get("reachable") is True and st0.get("reachable") is False:
        out.append(Alert("store", "feature store reachable again", "", "info", key=f"store-up:{cur.get('now')}"))
    # posture
    sf0, sf1 = prev.get("safety"), cur.get("safety")
    p0 = (sf0 or {}).get("posture") if not first else None
    p1 = (sf1 or {}).get("posture")
    if p1 and ((first and p1 == "HIBERNATE") or (p0 and p1 != p0)):
        worse = p0 is None or POSTURE_ORDER.index(p1) > POSTURE_ORDER.index(p0)
        was = f"{p0} -> " if p0 else "at start: "
        text = f"{was}{p1}, Rm {float(sf1.get('Rm', float('nan'))):.3f}. {_breakdown(sf1)}"
        key = f"posture:{p1}:{sf1.get('timestamp')}"
        if p1 == "HIBERNATE":
            out.append(Alert("hibernate", "HIBERNATE: positions closed, no signals", text, "critical", key=key))
        else:
            out.append(Alert("posture", f"posture {was}{p1}", text, "warning" if worse else "info", key=key))
    # manual override
    ov0 = ((prev.get("override") or {}).get("active") or {}) if not first else {}
    ov1 = (cur.get("override") or {}).get("active") or {}
    if ov1 and ov1.get("seq") != ov0.get("seq"):
        kill = ov1.get("posture_name") == "HIBERNATE"
        out.append(Alert("override", ("KILL SWITCH: manual HIBERNATE override" if kill else
                                      f"manual override {ov1.get('posture_name')}") + (" (at start)" if first else ""),
                         ov1.get("text", ""), "critical" if kill else "warning", key=f"override:{ov1.get('seq')}"))
    elif ov0 and not ov1:
        out.append(Alert("override", "manual override ended (cleared or expired)", ov0.get("text", ""), "info",
                         key=f"override-end:{ov0.get('seq')}"))
    # watchdog
    h0, h1 = (prev.get("health") or {}) if not first else {}, cur.get("health") or {}
    if h1.get("status") == "DEGRADED" and (h0.get("status") != "DEGRADED" or h0.get("failing") != h1.get("failing")):
        failing = [c for c in h1.get("checks") or [] if not c.get("ok")]
        out.append(Alert("watchdog", f"watchdog DEGRADED: {', '.join(h1.get('failing') or [])}",
                         "\n".join(c.get("detail", c.get("name", "")) for c in failing), "warning",
                         key=f"watchdog:{h1.get('timestamp')}"))
    elif h1.get("status") == "GREEN" and h0.get("status") == "DEGRADED":
        out.append(Alert("watchdog", "watchdog GREEN again", "", "info", key=f"watchdog:{h1.get('timestamp')}"))
    # per strategy: fills and paper days
    prev_s = {s["name"]: s for s in prev.get("strategies") or []}
    for s in cur.get("strategies") or []:
        p = prev_s.get(s["name"])
        if first or p is None:
            continue
        se0, se1 = p.get("session") or {}, s.get("session") or {}
        seen = {f.get("event_id") for f in se0.get("fills_today") or []} if se0.get("session") == se1.get("session") \
            else set()
        new = [f for f in se1.get("fills_today") or [] if f.get("event_id") not in seen]
        if len(new) > FILL_BURST:
            out.append(Alert("fill", f"{s['name']}: {len(new)} fills", f"capital {se1.get('capital'):,.2f} USDT",
                             "info", key=f"fills:{new[-1].get('event_id')}"))
        else:
            for f in new:
                out.append(Alert("fill", f"{s['name']} {f['role']} {f['side']} {f['qty']:g} {f['symbol']} @ {f['price']:g}",
                                 f"fee {f['fee']:.4f}, capital after {f['capital_after']:,.2f} USDT ({f['time']})",
                                 "info", key=f"fill:{s['name']}:{f.get('event_id')}"))
        c0, c1 = p.get("chain_last") or {}, s.get("chain_last") or {}
        if c1 and c1.get("day") != c0.get("day"):
            out.append(Alert("daily_pnl", f"{s['name']} paper day {c1['day']}: PnL {c1['pnl']:+,.2f} USDT",
                             f"equity {c1['equity']:,.2f}, peak {c1['peak']:,.2f}, drawdown "
                             f"{100 * c1['drawdown']:.2f} %, {c1.get('trades', 0)} trade(s)", "info",
                             key=f"day:{s['name']}:{c1['day']}:{c1['equity']}"))
    return out


class CorruptScans:
    """New corrupt scan files (``dolphin.scan_files.poll`` from the newest file present at start)."""

    def __init__(self, scan_dir, settle_s: float = 30.0):
        from dolphin.scan_files import Cursor, list_scan_files

        self.dir, self.settle_s = scan_dir, settle_s
        files = list_scan_files(scan_dir) if scan_dir.is_dir() else []
        top = max((f.mtime_ns for f in files), default=-1)
        self.cursor = Cursor(top, sorted(f.rel for f in files if f.mtime_ns == top))

    def poll(self) -> list:
        from dolphin.scan_files import poll

        if not self.dir.is_dir():
            return []
        p = poll(self.dir, self.cursor, settle_s=self.settle_s)
        self.cursor = p.cursor
        return [Alert("corrupt_scan", f"corrupt scan file skipped: {f.rel}", f"{why} (in {self.dir})", "warning",
                      key=f"corrupt:{f.rel}:{f.mtime_ns}") for f, why in p.corrupt]


def register(sub) -> None:
    p = sub.add_parser("alerts", help="send alerts (webhook / Telegram) on posture, fills, PnL, health changes",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--strategies", default="BLUE", help="comma-separated strategy names (default BLUE)")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between checks (default 2)")
    p.add_argument("--test", action="store_true", help="send one test alert to every channel and exit")
    p.set_defaults(func=cmd_alerts)


def cmd_alerts(args) -> int:
    from dolphin.console.collect import Sources, snapshot
    from dolphin.scanner.writer import scan_dir
    from dolphin.status import ledger_path
    from dolphin.adapters.store_factory import open_store, store_config_from_env

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        disp = dispatcher_from_env()
    except ValueError as e:
        print(f"dolphin alerts: {e}", file=sys.stderr)
        return 2
    if args.test:
        if not disp.enabled:
            print("dolphin alerts: no alert channel configured (DOLPHIN_ALERT_WEBHOOK_URL, DOLPHIN_ALERT_TELEGRAM_*)",
                  file=sys.stderr)
            return 2
        disp.notify(Alert("test", "test alert", "sent by `dolphin alerts --test`"))
        ok = disp.flush(30)
        st = disp.stats()
        print(f"dolphin alerts: test alert: {st}")
        disp.close()
        return 0 if ok and all(v.get("failed", 0) == 0 for k, v in st.items() if isinstance(v, dict)) else 1
    cfg = store_config_from_env()
    store = open_store(cfg.kind, path=cfg.path, members=cfg.members, cluster=cfg.cluster)
    strategies = [s.strip().upper() for s in args.strategies.split(",") if s.strip()]
    src = Sources(store, ledger_path(), scan_dir(), strategies)
    corrupt = CorruptScans(scan_dir())
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda s, f: stop.set())
    print(f"dolphin alerts: watching store {cfg.describe()}, ledger {src.ledger_path}, scans {src.scan_dir}; "
          f"channels: {disp.describe()}" + ("" if disp.enabled else " (alerts are only logged)"), flush=True)
    prev = None
    try:
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                cur = snapshot(src)
                alerts = diff(prev, cur) + corrupt.poll()
                prev = cur
            except Exception:
                log.exception("alerts: check failed; next round in %.1f s", args.interval)
                alerts = []
            for a in alerts:
                log.info("alert [%s] %s: %s", a.severity, a.title, a.text.replace("\n", " | "))
                disp.notify(a)
            stop.wait(max(0.0, args.interval - (time.monotonic() - t0)))
    finally:
        disp.close(5.0)
        store.close()
    print(f"dolphin alerts: stopped; {disp.stats()}", flush=True)
    return 0

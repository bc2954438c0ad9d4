"""The console's snapshot: one JSON-ready dict of everything the page shows, read through the ports.

Sources (read-only; nothing here creates a file or writes a key):

- the feature store (``dolphin.store`` port: embedded or Hazelcast, whichever the environment configures):
  ``DOLPHIN_SAFETY/latest`` (posture, Rm, the five categories and their reasons), ``DOLPHIN_SYSTEM_HEALTH``
  (the watchdog's report, the runtime heartbeat), ``DOLPHIN_FEATURES`` (scan_latest, exf_latest,
  mc_forewarner_latest, acb_state, vol_regime, asset_<SYMBOL>_ob), ``DOLPHIN_STATE_<S>`` (the runtime
  session's hot copy, ``decisions`` from ``dolphin.console.decisions``), ``DOLPHIN_PNL_<S>``;
- the ledger file under the data home: the runtime's fill journal (``journal_*`` tables: session capital,
  fills, open positions, the entry decisions) and the Dagster paper chain (``ledger_days``), opened read-only;
- the manual override table (``dolphin.adapters.safety_override_sqlite``) in the same file, when that module is
  present;
- the newest scan file (top loadings of the leading eigenvector), since ``scan_latest`` carries no loadings.

A store that cannot be reached is reported as such (``store.reachable`` False with the error) and the ledger
parts are still shown: the console is most needed when something is down.
"""

import json
import math
import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path

from dolphin.engine.config import POSTURE_NAMES
from dolphin.store import (ACB_STATE, EXF_LATEST, FEATURES, MC_FOREWARNER_LATEST, SAFETY, SCAN_LATEST, STATE_LATEST,
                           SYSTEM_HEALTH, VOL_REGIME, StoreUnavailableError, pnl_map, state_map)
from dolphin.survival.stack import SurvivalConfig
from dolphin.watchdog import HealthConfig

from dolphin.console.decisions import DECISIONS_KEY

DAY_MS = 86_400_000


def _iso(ms) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _finite(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def freshness_limits() -> dict:
    """name -> (limit in seconds, where the limit comes from)."""
    h, s = HealthConfig(), SurvivalConfig()
    return {"scan": (h.scan_max_age_s, "watchdog"), "ExF": (h.exf_max_age_h * 3600, "watchdog"),
            "MC": (s.mc_fresh_hours * 3600, "survival Cat2 (older counts as ORANGE)"),
            "book": (s.ob_max_age_s, "survival Cat3 (older counts as stale)"),
            "heartbeat": (s.heartbeat_max_age_s, "survival Cat1")}


class Sources:
    """Where the console reads: the store (an open ``FeatureStore``), the ledger file and the scan folder."""

    def __init__(self, store, ledger_path, scan_dir=None, strategies=("BLUE",), dagster_url: str = ""):
        self.store = store
        self.ledger_path = Path(ledger_path)
        self.scan_dir = Path(scan_dir) if scan_dir else None
        self.strategies = tuple(s.upper() for s in strategies)
        self.dagster_url = dagster_url
        self._scan_cache = (None, None)  # (path, top loadings)


# ------------------------------------------------------------------ the store


def _rec(store, m, k, now_ms):
    rec = store.get(m, k)
    if rec is None:
        return None
    return {**rec.value, "timestamp": rec.timestamp, "age_s": (now_ms - rec.timestamp_ms) / 1000.0}


def read_store(src: Sources, now_ms: int) -> dict:
    """Everything the page takes from the store; ``StoreUnavailableError`` propagates."""
    st = src.store
    out = {"safety": _rec(st, SAFETY, "latest", now_ms), "health": _rec(st, SYSTEM_HEALTH, "latest", now_ms),
           "heartbeat": _rec(st, SYSTEM_HEALTH, "runtime_heartbeat", now_ms)}
    for name, key in (("scan", SCAN_LATEST), ("exf", EXF_LATEST), ("mc", MC_FOREWARNER_LATEST), ("acb", ACB_STATE),
                      ("vol", VOL_REGIME)):
        out[name] = _rec(st, FEATURES, key, now_ms)
    books = {}
    for k in sorted(st.keys(FEATURES)):
        if k.startswith("asset_") and k.endswith("_ob"):
            r = _rec(st, FEATURES, k, now_ms)
            if r is not None:
                books[k[len("asset_"):-len("_ob")]] = r
    out["books"] = books
    out["strategies"] = {}
    for s in src.strategies:
        keys = set(st.keys(state_map(s)))
        runtime = {k: _rec(st, state_map(s), k, now_ms) for k in sorted(keys) if k.startswith("runtime_")}
        pnl_days = sorted(st.keys(pnl_map(s)))
        out["strategies"][s] = {
            "chain": _rec(st, state_map(s), STATE_LATEST, now_ms) if STATE_LATEST in keys else None,
            "runtime": runtime,
            "decisions": _rec(st, state_map(s), DECISIONS_KEY, now_ms) if DECISIONS_KEY in keys else None,
            "pnl_last": _rec(st, pnl_map(s), pnl_days[-1], now_ms) if pnl_days else None}
    out["malformed"] = {f"{m}/{k}": err for (m, k), (err, _) in sorted(st.malformed().items())}
    return out


# ------------------------------------------------------------------ the ledger (read-only)


def _ro(path: Path):
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    con.row_factory = sqlite3.Row
    return con


def _tables(con) -> set:
    return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def read_ledger(src: Sources, now_ms: int) -> dict:
    """Per strategy: the runtime's latest session from the fill journal (capital, peak, drawdown, open position,
    fills, closed trades, equity points) and the Dagster chain's days (equity points)."""
    from dolphin.ledger.journal import _CONTENT, JournalEvent, positions_from

    path = src.ledger_path
    if not path.is_file():
        return {"exists": False, "path": str(path), "strategies": {}}
    out = {"exists": True, "path": str(path), "strategies": {}}
    con = _ro(path)
    try:
        tables = _tables(con)
        for s in src.strategies:
            d = {"session": None, "chain": []}
            if "journal_sessions" in tables:
                row = con.execute("SELECT * FROM journal_sessions WHERE strategy = ? ORDER BY (status = 'open') DESC, "
                                  "opened_at DESC LIMIT 1", (s,)).fetchone()
                if row is not None:
                    evs = [JournalEvent(event_id=r["event_id"], **{k: r[k] for k in _CONTENT}) for r in con.execute(
                        "SELECT * FROM journal_events WHERE strategy = ? AND session = ? ORDER BY seq",
                        (s, row["session"]))]
                    entries = [dict(r) for r in con.execute(
                        "SELECT * FROM journal_entries WHERE strategy = ? AND session = ? ORDER BY ts_ns",
                        (s, row["session"]))] if "journal_entries" in tables else []
                    d["session"] = _session_view(dict(row), evs, entries, positions_from(evs), now_ms)
            if "ledger_days" in tables:
                from dolphin.ledger import CapitalLedger

                days = CapitalLedger.existing(path).current(s)
                d["chain"] = [{"day": e.day, "equity": e.record.closing_equity, "capital": e.record.closing_capital,
                               "peak": e.peak, "drawdown": e.drawdown, "pnl": e.pnl, "trades": e.record.n_trades}
                              for e in days]
            out["strategies"][s] = d
    finally:
        con.close()
    return out


def _session_view(row: dict, evs: list, entries: list, positions: dict, now_ms: int) -> dict:
    opening = float(row["opening_capital"])
    capital = evs[-1].capital_after if evs else opening
    peak = max([opening, *(e.capital_after for e in evs)])
    opened_ms = int(datetime.fromisoformat(row["opened_at"]).timestamp() * 1000)
    fills = [e for e in evs if e.kind == "fill"]
    # "today": the UTC day of now, or of the session's last event when it runs on a replay clock
    last_ms = evs[-1].ts_ns // 1_000_000 if evs else now_ms
    day0 = (now_ms // DAY_MS) * DAY_MS
    if not any(e.ts_ns // 1_000_000 >= day0 for e in evs):
        day0 = (last_ms // DAY_MS) * DAY_MS
    today = [e for e in fills if e.ts_ns // 1_000_000 >= day0]
    trades, book, cap_before = [], {}, opening
    cap = opening
    for e in evs:  # closed trades: a symbol's position from flat back to flat
        if e.kind == "fill":
            q, ent, n_in, fees, t0, cb = book.get(e.symbol, (0.0, 0.0, 0.0, 0.0, e.ts_ns, cap))
            dq = e.qty if e.side == "BUY" else -e.qty
            if q == 0.0:
                t0, cb, ent, n_in = e.ts_ns, cap, 0.0, 0.0
            opening_fill = q == 0.0 or (q > 0) == (dq > 0)
            if opening_fill:
                ent, n_in = ent + e.qty * e.price, n_in + e.qty
            q2 = q + dq
            if abs(q2) <= 1e-12 * max(abs(q), abs(dq), 1e-300):
                q2 = 0.0
            book[e.symbol] = (q2, ent, n_in, fees + e.fee, t0, cb)
            if q2 == 0.0 and not opening_fill:
                trades.append({"symbol": e.symbol, "side": "SHORT" if q < 0 else "LONG", "qty": n_in,
                               "entry_price": ent / n_in if n_in else None, "exit_price": e.price,
                               "entry": _iso(t0 // 1_000_000), "exit": _iso(e.ts_ns // 1_000_000), "role": e.role,
                               "pnl": e.capital_after - cb})
        cap = e.capital_after
    pos = []
    ctx = {en["symbol"]: json.loads(en["context"]) | {"order_id": en["order_id"]} for en in entries}
    for p in positions.values():
        first = next((e for e in reversed(fills) if e.symbol == p.symbol and e.role == "entry"), None)
        c = ctx.get(p.symbol, {})
        pos.append({"symbol": p.symbol, "side": "SHORT" if p.qty < 0 else "LONG", "qty": abs(p.qty),
                    "entry_price": p.avg_price, "leverage": c.get("leverage"),
                    "entry_ms": None if first is None else first.ts_ns // 1_000_000,
                    "held_s": None if first is None else max(0.0, (now_ms - first.ts_ns / 1e6) / 1000.0)})
    curve = [(opened_ms if not evs else min(opened_ms, evs[0].ts_ns // 1_000_000), opening)]
    curve += [(e.ts_ns // 1_000_000, e.capital_after) for e in evs]
    return {"session": row["session"], "mode": row["mode"], "status": row["status"], "runs": row["runs"],
            "opening_capital": opening, "capital": capital, "peak": peak,
            "drawdown": 1.0 - capital / peak if peak > 0 else 0.0, "events": len(evs), "n_fills": len(fills),
            "fills_day": _iso(day0)[:10],
            "fills_today": [{"event_id": e.event_id, "time": _iso(e.ts_ns // 1_000_000), "symbol": e.symbol, "side": e.side, "role": e.role,
                             "qty": e.qty, "price": e.price, "fee": e.fee, "liquidity": e.liquidity,
                             "capital_after": e.capital_after} for e in today],
            "trades": trades, "positions": pos, "curve": curve}


def read_overrides(src: Sources, now_ms: int) -> dict:
    try:
        from dolphin.adapters import safety_override_sqlite as ov
    except ImportError:
        return {"available": False}
    path = src.ledger_path
    try:
        cur = ov.active_override(path, now_ms * 1_000_000)
        rows = ov.list_overrides(path, 10)
    except (sqlite3.Error, OSError) as e:
        return {"available": True, "error": f"{type(e).__name__}: {e}"}
    now_ns = now_ms * 1_000_000
    return {"available": True, "active": None if cur is None else {**cur.to_dict(), "text": cur.describe(now_ns)},
            "audit": [{**o.to_dict(), "text": o.describe(now_ns)} for o in reversed(rows)]}


# ------------------------------------------------------------------ the scan file (loadings)


def top_loadings(src: Sources, scan: dict | None, n: int = 5) -> dict | None:
    """Largest |loading| on the leading eigenvector per window, from the scan file ``scan_latest`` names (its
    ``source``), else the newest complete file in the scan folder."""
    from dolphin.scanner.writer import read_scan_arrow

    path = None
    if scan and isinstance(scan.get("source"), str) and scan["source"].endswith(".arrow"):
        p = Path(scan["source"])
        if p.is_file():
            path = p
    if path is None and src.scan_dir is not None and src.scan_dir.is_dir():
        from dolphin.scan_files import newest_complete

        f = newest_complete(src.scan_dir)
        path = f.path if f is not None else None
    if path is None:
        return None
    if src._scan_cache[0] == (str(path), path.stat().st_mtime_ns):
        return src._scan_cache[1]
    try:
        r = read_scan_arrow(path)
    except Exception as e:  # a corrupt file: say so, the rest of the page stays
        return {"file": str(path), "error": f"{type(e).__name__}: {e}"}
    out = {"file": str(path), "windows": {}}
    for k, w in enumerate(r.windows):
        ld = r.loadings[-1, k, :]
        order = sorted(range(len(r.symbols)), key=lambda i: -abs(ld[i]) if math.isfinite(ld[i]) else 0.0)[:n]
        out["windows"][str(w)] = [[r.symbols[i], float(ld[i]) if math.isfinite(ld[i]) else None] for i in order]
    src._scan_cache = ((str(path), path.stat().st_mtime_ns), out)
    return out


# ------------------------------------------------------------------ the snapshot


def freshness(store: dict, now_ms: int) -> list:
    lim = freshness_limits()
    books = store.get("books") or {}
    book_age = max((b["age_s"] for b in books.values()), default=None)
    book_ts = min((b["timestamp"] for b in books.values()), default=None)
    rows = []
    for name, rec in (("scan", store.get("scan")), ("ExF", store.get("exf")), ("MC", store.get("mc")),
                      ("book", {"age_s": book_age, "timestamp": book_ts} if books else None),
                      ("heartbeat", store.get("heartbeat"))):
        limit, why = lim[name]
        age = None if rec is None else rec.get("age_s")
        rows.append({"name": name, "age_s": age, "limit_s": limit, "limit_from": why,
                     "timestamp": None if rec is None else rec.get("timestamp"),
                     "ok": age is not None and age <= limit})
    return rows


def snapshot(src: Sources, now_ms: int | None = None) -> dict:
    now_ms = int(time.time() * 1000) if now_ms is None else int(now_ms)
    snap = {"now": _iso(now_ms), "now_ms": now_ms, "strategies_names": list(src.strategies),
            "dagster_url": src.dagster_url, "errors": []}
    t0 = time.monotonic()
    try:
        store = read_store(src, now_ms)
        snap["store"] = {"reachable": True, "took_ms": (time.monotonic() - t0) * 1000}
    except StoreUnavailableError as e:
        store = {}
        snap["store"] = {"reachable": False, "error": str(e), "took_ms": (time.monotonic() - t0) * 1000}
    except Exception as e:  # an adapter bug must not take the page down
        store = {}
        snap["store"] = {"reachable": False, "error": f"{type(e).__name__}: {e}"}
    try:
        ledger = read_ledger(src, now_ms)
    except (sqlite3.Error, OSError, ValueError) as e:
        ledger = {"exists": True, "error": f"{type(e).__name__}: {e}", "strategies": {}}
    snap["ledger"] = {k: v for k, v in ledger.items() if k != "strategies"}
    snap["override"] = read_overrides(src, now_ms)
    snap["safety"] = store.get("safety")
    snap["health"] = store.get("health")
    snap["malformed"] = store.get("malformed") or {}
    snap["freshness"] = freshness(store, now_ms) if store else []
    scan = store.get("scan")
    snap["scan"] = None if scan is None else {
        "timestamp": scan.get("timestamp"), "age_s": scan.get("age_s"), "vel_div": scan.get("vel_div"),
        "vel_div_norm": scan.get("vel_div_norm"), "asset_count": scan.get("asset_count"),
        "lambda": {k[len("lambda_w"):]: v for k, v in scan.items() if k.startswith("lambda_w")},
        "lambda_norm": {k[len("lambda_norm_w"):]: v for k, v in scan.items() if k.startswith("lambda_norm_w")}}
    try:
        snap["loadings"] = top_loadings(src, scan)
    except OSError as e:
        snap["loadings"] = {"error": str(e)}
    snap["mc"], snap["acb"], snap["vol"], snap["exf"] = (store.get(k) for k in ("mc", "acb", "vol", "exf"))
    snap["strategies"] = []
    for s in src.strategies:
        ss = (store.get("strategies") or {}).get(s, {})
        ls = ledger.get("strategies", {}).get(s, {})
        dec = ss.get("decisions")
        snap["strategies"].append(_strategy_view(s, ss, ls, dec, now_ms))
    # hysteresis and the last posture changes: the runtime's controller (decisions record)
    dec0 = next((st["decisions_record"] for st in snap["strategies"] if st.get("decisions_record")), None)
    snap["hysteresis"] = None if dec0 is None else dec0.get("hysteresis")
    snap["posture_changes"] = [] if dec0 is None else list(reversed(dec0.get("posture_changes") or []))
    for st in snap["strategies"]:
        st.pop("decisions_record", None)
    return _finite(snap)


def _strategy_view(name: str, ss: dict, ls: dict, dec: dict | None, now_ms: int) -> dict:
    sess = ls.get("session")
    chain = ls.get("chain") or []
    mark = (dec or {}).get("position") or {}
    positions = []
    for p in (sess or {}).get("positions", []):
        q = dict(p)
        if mark.get("symbol") == p["symbol"] and not mark.get("pending"):
            last = mark.get("last_close")
            q.update({k: mark.get(k) for k in ("tp_price", "stop_price", "liquidation_price", "max_hold_exit_ms",
                                               "last_close")})
            if q.get("leverage") is None:
                q["leverage"] = mark.get("leverage")
            if last:
                sgn = -1.0 if p["side"] == "SHORT" else 1.0
                q["unrealised"] = sgn * (last - p["entry_price"]) * p["qty"]
                for k, lab in (("tp_price", "to_tp_pct"), ("stop_price", "to_stop_pct"),
                               ("liquidation_price", "to_liq_pct")):
                    if q.get(k):
                        q[lab] = (q[k] / last - 1.0) * 100.0
            q["mark_age_s"] = None if dec is None else dec.get("age_s")
        positions.append(q)
    chain_last = chain[-1] if chain else None
    return {"name": name, "session": None if sess is None else {k: v for k, v in sess.items() if k != "positions"},
            "positions": positions, "pending": mark if mark.get("pending") else None,
            "chain_last": chain_last, "chain": chain, "store_chain": ss.get("chain"),
            "store_runtime": ss.get("runtime") or {}, "pnl_last": ss.get("pnl_last"),
            "decisions": list(reversed((dec or {}).get("decisions") or [])),
            "decisions_age_s": None if dec is None else dec.get("age_s"), "decisions_record": dec}


POSTURES = POSTURE_NAMES

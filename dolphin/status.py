"""`dolphin status`: one look at a running DOLPHIN (the seeds' ``status.py``), read-only.

Reads the configured feature store (``dolphin.adapters.store_factory.open_store_from_env``: DOLPHIN_FEATURE_STORE /
DOLPHIN_HZ_*) and the capital ledger under the data home, and reports: store reachable; latest scan age and vel_div;
vol regime; posture and Rm with the survival-stack breakdown (``DOLPHIN_SAFETY``); capital, peak and drawdown from
the ledger (the source of truth) next to the store's hot copy (``DOLPHIN_STATE_<S>/latest``); the open position and
pending order from the ledger's latest closing state; MC forewarner and ExF freshness; system health; the hot copy:
which published keys are missing from the store (or malformed) and what would restore them (``dolphin.rehydrate``,
dry run).

Also the runtime's sessions from the fill journal (``dolphin.ledger.journal``: capital, open position, last fill)
and the freshness of every published record against ``FRESHNESS_LIMITS_S``.

Never crashes on a missing or broken source: each section says what it could not read. Exit code 0 when
it could report, 1 when the store is unreachable, the ledger or journal exists but cannot be read, or a
published record is older than its freshness limit (``"ok": false``, ``"stale"`` lists them): a health check
for scripts and compose. An unknown strategy is refused (exit 2).
"""

import json
import math
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from dolphin.store import (ACB_STATE, EXF_LATEST, FEATURES, MC_FOREWARNER_LATEST, SAFETY, SCAN_LATEST, STATE_LATEST,
                           SYSTEM_HEALTH, VOL_REGIME, StoreKeyError, StoreUnavailableError, state_map)
from dolphin.adapters.store_factory import store_config_from_env, open_store
from dolphin.rehydrate import SENSOR_INTERVAL_S

MC_STALE_S = 6 * 3600  # DESIGN.md: an MC status older than 6 h counts as ORANGE
NOT_PUBLISHED = "not published"


def ledger_path() -> Path:
    """The capital ledger's SQLite file (``dolphin_assets.resources.ledger.Ledger``'s default)."""
    from dolphin.paths import data_home

    return data_home() / "ledger" / "ledger.sqlite"


def fmt_age(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = abs(seconds)
    sign = "in the future by " if seconds < -1 else ""
    if s < 60:
        out = f"{s:.0f}s"
    elif s < 3600:
        out = f"{int(s // 60)}m {int(s % 60):02d}s"
    elif s < 86400:
        out = f"{int(s // 3600)}h {int(s % 3600 // 60):02d}m"
    else:
        out = f"{int(s // 86400)}d {int(s % 86400 // 3600):02d}h"
    return sign + out


def _age(rec, now_ms: int) -> float:
    return (now_ms - rec.timestamp_ms) / 1000.0


def _num(x, fmt="{:,.2f}"):
    return fmt.format(x) if isinstance(x, (int, float)) and not (isinstance(x, float) and math.isnan(x)) else "?"


# ------------------------------------------------------------------ collection


def _read_store(strategy: str, now_ms: int) -> dict:
    cfg = None
    try:
        cfg = store_config_from_env()
    except ValueError as e:
        return {"reachable": False, "kind": None, "error": str(e)}
    out = {"kind": cfg.kind, "where": cfg.describe()}
    if cfg.kind == "embedded" and not cfg.path.exists():
        # reading must not create it: no file means nothing has published yet
        out.update(reachable=True, exists=False, note=f"no store file yet at {cfg.path} (nothing has published)")
        return out
    try:
        store = open_store(cfg.kind, path=cfg.path, members=cfg.members, cluster=cfg.cluster)
    except (StoreUnavailableError, ValueError) as e:
        out.update(reachable=False, error=str(e))
        return out
    except Exception as e:  # a broken client library / config must not crash the status line
        out.update(reachable=False, error=f"{type(e).__name__}: {e}")
        return out
    items = {"scan_latest": (FEATURES, SCAN_LATEST), "vol_regime": (FEATURES, VOL_REGIME),
             "safety": (SAFETY, "latest"), "state": (state_map(strategy), STATE_LATEST),
             "mc": (FEATURES, MC_FOREWARNER_LATEST), "exf": (FEATURES, EXF_LATEST), "acb": (FEATURES, ACB_STATE)}
    try:
        out["reachable"], out["exists"] = True, True
        for name, (m, k) in items.items():
            try:
                rec = store.get(m, k)
            except StoreUnavailableError:
                raise
            except Exception as e:  # e.g. a value that is not a JSON record: report it, go on
                out[name] = {"error": f"{m}/{k}: {type(e).__name__}: {e}"}
                continue
            out[name] = None if rec is None else {**rec.value, "timestamp": rec.timestamp,
                                                  "age_s": _age(rec, now_ms)}
        health = {}
        for k in store.keys(SYSTEM_HEALTH):
            try:
                rec = store.get(SYSTEM_HEALTH, k)
            except StoreUnavailableError:
                raise
            except Exception as e:
                health[k] = {"error": f"{type(e).__name__}: {e}"}
                continue
            if rec is not None:
                health[k] = {**rec.value, "timestamp": rec.timestamp, "age_s": _age(rec, now_ms)}
        out["system_health"] = health or None
        out["hot_copy"] = _hot_copy(store, strategy)
        out["malformed"] = {f"{m}/{k}": err for (m, k), (err, _) in sorted(store.malformed().items())}
    except StoreUnavailableError as e:
        out.update(reachable=False, error=str(e))
    finally:
        try:
            store.close()
        except Exception:
            pass
    return out


def _hot_copy(store, strategy: str) -> dict:
    """The rehydrator's dry run: expected keys, and the ones missing with what would restore them."""
    from dolphin.rehydrate import Sources, rehydrate

    try:
        results = rehydrate(store, Sources.default(strategy), dry_run=True)
    except Exception as e:  # the status line must come out whatever the sources hold
        return {"expected": 0, "missing": [], "error": f"{type(e).__name__}: {e}"}
    return {"expected": len(results), "missing": [{**r.to_dict(), "line": r.line()} for r in results if r.missing]}


def _read_ledger(strategy: str) -> dict:
    path = ledger_path()
    out = {"path": str(path)}
    if not path.exists():
        out.update(readable=True, exists=False)
        return out
    try:
        from dolphin.ledger import CapitalLedger

        current = CapitalLedger.existing(path).current(strategy)
    except Exception as e:  # sqlite3.Error (not a database, locked, no table), OSError...
        out.update(readable=False, exists=True, error=f"{type(e).__name__}: {e}")
        return out
    out.update(readable=True, exists=True, days=len(current))
    out["override"] = _read_override(path)
    if not current:
        return out
    last = current[-1]
    r = last.record
    st = r.closing_state or {}
    out["latest"] = {"day": last.day, "version": last.version, "recorded_at": last.recorded_at,
                     "capital": r.closing_capital, "equity": r.closing_equity, "peak": last.peak,
                     "drawdown": last.drawdown, "pnl": last.pnl, "n_trades": r.n_trades,
                     "position": st.get("position"), "pending": st.get("pending"), "as_of_ms": st.get("as_of_ms")}
    out["latest"].update(_cat5_reference(current))
    return out


def _cat5_reference(current) -> dict:
    """Cat5's drawdown as the survival stack measures it (DESIGN.md): the latest closing equity against the
    highest closing equity of the last ``cat5_peak_days`` days of the ledger (the opening equity of the
    chain's first day counts while it is inside the window)."""
    from datetime import date

    from dolphin.survival.stack import SurvivalConfig

    days = SurvivalConfig().cat5_peak_days
    last = current[-1]
    d_last = date.fromisoformat(last.day)
    window = [e for e in current if days and (d_last - date.fromisoformat(e.day)).days < days] if days else current
    peak = max(e.record.closing_equity for e in window)
    if current[0] in window:
        peak = max(peak, current[0].record.opening_equity)
    eq = last.record.closing_equity
    return {"cat5_peak_days": days, "cat5_peak": peak,
            "cat5_drawdown": min(1.0, max(0.0, 1.0 - eq / peak)) if peak > 0 else None}


def _read_override(path) -> dict | None:
    """The operator's manual override in force (dolphin.adapters.safety_override_sqlite), or None; errors reported."""
    try:
        from dolphin.adapters.safety_override_sqlite import active_override

        o = active_override(path, time.time_ns())
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"}
    return None if o is None else {**o.to_dict(), "line": o.describe(time.time_ns())}


# Freshness limits (seconds) of the published records: older than this and `dolphin status` reports
# "ok": false and exits 1, so it can serve as a health check. Scans and the vol regime come every bar (5 min):
# 3 bars late is stale; posture (DOLPHIN_SAFETY) likewise; MC 6 h (DESIGN.md); ExF is daily (+ a day's slack);
# the runtime heartbeat every few seconds. Records never published are not stale (a fresh install is ok).
FRESHNESS_LIMITS_S = {"scan_latest": 15 * 60, "vol_regime": 15 * 60, "safety": 15 * 60, "mc": MC_STALE_S,
                      "exf": 48 * 3600, "system_health/runtime_heartbeat": 5 * 60, "system_health/latest": 15 * 60}


def _stale(store: dict) -> list:
    out = []
    if not (store.get("reachable") and store.get("exists")):
        return out
    for name, limit in FRESHNESS_LIMITS_S.items():
        rec = store.get(name) if "/" not in name else (store.get("system_health") or {}).get(name.split("/", 1)[1])
        if isinstance(rec, dict) and isinstance(rec.get("age_s"), (int, float)) and rec["age_s"] > limit:
            out.append({"record": name, "age_s": rec["age_s"], "limit_s": limit,
                        "line": f"{name} {fmt_age(rec['age_s'])} old > limit {fmt_age(limit)}"})
    return out


def _read_journal(strategy: str) -> dict:
    """The runtime's sessions from the fill journal (it shares the ledger file), read-only."""
    import sqlite3

    from dolphin.ledger.journal import JournalEvent, _CONTENT, positions_from

    path = ledger_path()
    out = {"path": str(path), "sessions": []}
    if not path.exists():
        return out
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        con.row_factory = sqlite3.Row
        try:
            if con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'journal_sessions'"
                           ).fetchone() is None:
                return out
            rows = con.execute("SELECT * FROM journal_sessions WHERE strategy = ? ORDER BY opened_at DESC, session "
                               "DESC LIMIT 5", (strategy,)).fetchall()
            for r in rows:
                evs = [JournalEvent(event_id=e["event_id"], **{k: e[k] for k in _CONTENT}) for e in con.execute(
                    "SELECT * FROM journal_events WHERE strategy = ? AND session = ? ORDER BY seq",
                    (strategy, r["session"]))]
                fills = [e for e in evs if e.kind == "fill"]
                pos = positions_from(evs)
                out["sessions"].append({
                    "session": r["session"], "mode": r["mode"], "status": r["status"], "runs": r["runs"],
                    "opened_at": r["opened_at"], "opening_capital": r["opening_capital"],
                    "capital": evs[-1].capital_after if evs else r["opening_capital"], "n_fills": len(fills),
                    "positions": [{"symbol": p.symbol, "qty": p.qty, "avg_price": p.avg_price} for p in pos.values()],
                    "last_fill": None if not fills else {
                        "symbol": fills[-1].symbol, "side": fills[-1].side, "role": fills[-1].role,
                        "qty": fills[-1].qty, "price": fills[-1].price,
                        "time": datetime.fromtimestamp(fills[-1].ts_ns / 1e9, timezone.utc).isoformat(
                            timespec="seconds").replace("+00:00", "Z")}})
        finally:
            con.close()
    except Exception as e:  # sqlite3.Error, a malformed row: reported, the rest of the status still comes out
        out["error"] = f"{path}: {type(e).__name__}: {e}"
    return out


def known_strategies() -> set:
    """BLUE, GREEN, and every strategy the ledger or the fill journal holds."""
    import sqlite3

    names = {"BLUE", "GREEN"}
    path = ledger_path()
    if path.exists():
        try:
            con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                for t in ("ledger_days", "journal_sessions"):
                    if con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (t,)).fetchone():
                        names |= {str(r[0]).upper() for r in con.execute(f"SELECT DISTINCT strategy FROM {t}")}
            finally:
                con.close()
        except sqlite3.Error:
            pass  # an unreadable ledger is reported by the ledger section
    return names


def collect(strategy: str = "BLUE", now_ms: int | None = None) -> dict:
    strategy = strategy.upper()
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    rep = {"strategy": strategy, "now": datetime.fromtimestamp(now_ms / 1000, timezone.utc).isoformat(
        timespec="seconds").replace("+00:00", "Z"), "store": _read_store(strategy, now_ms),
        "ledger": _read_ledger(strategy), "runtime": _read_journal(strategy)}
    rep["stale"] = _stale(rep["store"])
    rep["ok"] = (bool(rep["store"].get("reachable")) and bool(rep["ledger"].get("readable"))
                 and not rep["stale"] and "error" not in rep["runtime"])
    return rep


# ------------------------------------------------------------------ rendering


def _side(s) -> str:
    if isinstance(s, (int, float)):
        return "SHORT" if s < 0 else "LONG" if s > 0 else "FLAT"
    return str(s)


def _position_line(p) -> str:
    if not p:
        return "none (flat)"
    when = ""
    if isinstance(p.get("entry_time_ms"), (int, float)):
        when = " since " + datetime.fromtimestamp(p["entry_time_ms"] / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M")
    return (f"{_side(p.get('side'))} {p.get('symbol', '?')} qty {_num(p.get('qty'), '{:.6g}')} @ "
            f"{_num(p.get('entry_price'), '{:.6g}')}, notional {_num(p.get('notional'))}, "
            f"leverage {_num(p.get('leverage'), '{:.2f}')}x{when}")


def _pending_line(q) -> str:
    if not q:
        return "none"
    how = f"limit @ {_num(q.get('price'), '{:.6g}')}" if q.get("limit") else "market"
    if q.get("kind") == "exit":  # the kernel keeps the entry's side on an exit order: name the position instead
        what = f"exit {q.get('symbol', '?')} (close the open position)"
    else:
        what = f"{q.get('kind', '?')} {_side(q.get('side'))} {q.get('symbol', '?')} notional {_num(q.get('notional'))}"
    return f"{what} {how} (executes at the next bar's open)"


def _fresh(rec, what="") -> str:
    if rec is None:
        return NOT_PUBLISHED
    if "error" in rec and "age_s" not in rec:
        return f"unreadable: {rec['error']}"
    return f"{fmt_age(rec['age_s'])} old ({rec['timestamp']}){what}"


def render(rep: dict) -> str:
    L = [f"DOLPHIN status  strategy {rep['strategy']}  now {rep['now']}"]
    st, lg = rep["store"], rep["ledger"]
    if st.get("reachable") and not st.get("exists"):
        L.append(f"feature store   {st['kind']}: {st['note']}")
    elif st.get("reachable"):
        L.append(f"feature store   reachable: {st['where']}")
    else:
        L.append(f"feature store   UNREACHABLE: {st.get('where') or st.get('kind')}: {st.get('error')}")
    live = st.get("reachable") and st.get("exists")
    na = NOT_PUBLISHED if st.get("reachable") else "unknown (store unreachable)"

    def get(name):
        return st.get(name) if live else None

    scan = get("scan_latest")
    if live and scan is not None and "age_s" in scan:
        L.append(f"latest scan     {_fresh(scan)}  vel_div {_num(scan.get('vel_div'), '{:+.6f}')}"
                 f"  assets {scan.get('asset_count', '?')}")
    else:
        L.append(f"latest scan     {_fresh(scan) if live else na}")
    vr = get("vol_regime")
    if vr is not None and "age_s" in vr:
        L.append(f"vol regime      {'OK (entries allowed)' if vr.get('regime_ok') else 'LOW (entries gated)'}"
                 f"  vol {_num(vr.get('current_vol'), '{:.3g}')} vs p{vr.get('percentile', '?')} "
                 f"{_num(vr.get('vol_p60'), '{:.3g}')}  {_fresh(vr)}")
    else:
        L.append(f"vol regime      {_fresh(vr) if live else na}")
    sf = get("safety")
    if sf is not None and "age_s" in sf:
        bd = sf.get("breakdown") or {}
        bds = "  ".join(f"{k}={_num(v, '{:.3f}')}" for k, v in sorted(bd.items())) or "no breakdown"
        L.append(f"posture         {sf.get('posture', '?')}  Rm {_num(sf.get('Rm'), '{:.3f}')}  [{bds}]  {_fresh(sf)}")
        why = sf.get("reasons") or {}
        if isinstance(why, dict) and why:  # survival stack's per-category reasons (DOLPHIN_SAFETY)
            L.append("  Rm reasons    " + "; ".join(f"{k}: {v}" for k, v in sorted(why.items()) if v))
    else:
        L.append("posture         " + (f"{NOT_PUBLISHED} (risk layer not running)" if sf is None and st.get("reachable")
                                       else _fresh(sf) if sf is not None else na))
    ov = lg.get("override")
    if ov:
        L.append("  OVERRIDE      " + (f"unreadable: {ov['error']}" if "error" in ov else
                                      f"manual posture {ov['line']}"))
    # capital: the ledger is the source of truth; the store holds the hot copy
    led = lg.get("latest")
    if not lg.get("readable"):
        L.append(f"capital         ledger UNREADABLE at {lg['path']}: {lg.get('error')}")
    elif not lg.get("exists"):
        L.append(f"capital         no ledger at {lg['path']} (no day has run yet)")
    elif led is None:
        L.append(f"capital         ledger has no day for {rep['strategy']} yet ({lg['path']})")
    else:
        L.append(f"capital         {_num(led['capital'])}  equity {_num(led['equity'])}  peak {_num(led['peak'])}  "
                 f"drawdown {_num(100 * led['drawdown'] if led['drawdown'] is not None else None, '{:.2f}')}%  "
                 f"(ledger, source of truth: day {led['day']} v{led['version']}, {lg['days']} day(s))")
        if led.get("cat5_drawdown") is not None:
            L.append(f"  Cat5 drawdown {100 * led['cat5_drawdown']:.2f}% from the {led['cat5_peak_days']:g}-day peak "
                     f"{_num(led['cat5_peak'])} (what the survival stack's Cat5 uses)")
    hs = get("state")
    if hs is not None and "age_s" in hs:
        same = ""
        if led is not None:
            same = ("  matches the ledger" if hs.get("day") == led["day"] and hs.get("capital") == led["capital"]
                    else f"  DIFFERS from the ledger (store day {hs.get('day')}: hot copy lags or is stale)")
        L.append(f"  store copy    {_num(hs.get('capital'))}  peak {_num(hs.get('peak'))}  drawdown "
                 f"{_num(100 * hs['drawdown'] if isinstance(hs.get('drawdown'), (int, float)) else None, '{:.2f}')}%"
                 f"  day {hs.get('day', '?')}{same}")
    else:
        L.append(f"  store copy    {('DOLPHIN_STATE_' + rep['strategy'] + '/latest ' + _fresh(hs)) if live else na}")
    if led is not None:
        L.append(f"position        {_position_line(led['position'])}")
        L.append(f"pending order   {_pending_line(led['pending'])}")
    else:
        L.append("position        unknown (no ledger day)")
        L.append("pending order   unknown (no ledger day)")
    mc = get("mc")
    if mc is not None and "age_s" in mc:
        stale = "  STALE (>6h: counts as ORANGE)" if mc["age_s"] > MC_STALE_S else ""
        score = f"  envelope_score {_num(mc['envelope_score'], '{:.3f}')}" if "envelope_score" in mc else ""
        L.append(f"MC forewarner   {mc.get('status', '?')}  catastrophic_prob "
                 f"{_num(mc.get('catastrophic_prob'), '{:.3f}')}{score}  {_fresh(mc)}{stale}")
    else:
        L.append(f"MC forewarner   {_fresh(mc) if live else na}")
    ex = get("exf")
    if ex is not None and "age_s" in ex and "non_null_count" in ex:  # dolphin.exf snapshot record
        dvol = f"  dvol_btc {_num(ex.get('dvol_btc'), '{:.2f}')}" if "dvol_btc" in ex else ""
        L.append(f"ExF             {ex['non_null_count']} indicators with a value (as of {ex.get('date', '?')})"
                 f"{dvol}  {_fresh(ex)}")
    else:
        L.append(f"ExF             {_fresh(ex) if live else na}")
    acb = get("acb")
    if acb is not None and "age_s" in acb:
        L.append(f"ACB             boost {_num(acb.get('boost'), '{:.3f}')}  beta {_num(acb.get('beta'), '{:.3f}')}  "
                 f"{acb.get('source', '?')} update of {acb.get('last_date', '?')}  {_fresh(acb)}")
    elif acb is not None:
        L.append(f"ACB             {_fresh(acb)}")
    sh = st.get("system_health") if live else None
    if sh:
        for k, v in sorted(sh.items()):
            if k == "latest" and "status" in v:  # the watchdog's report (dolphin.watchdog)
                failing = v.get("failing") or []
                what = f"failing {', '.join(map(str, failing))}" if failing else "all checks ok"
                missed = v.get("unpublished") or []
                extra = f"  ({len(missed)} report(s) missed while the store was down)" if missed else ""
                L.append(f"system health   {v['status']}  {what}{extra}  {_fresh(v)}")
            elif k == "runtime_heartbeat":
                L.append(f"  heartbeat     runtime {_fresh(v)}")
            else:
                body = {kk: vv for kk, vv in v.items() if kk not in ("timestamp", "age_s")}
                L.append(f"system health   {k}: {json.dumps(body, sort_keys=True)}  {_fresh(v)}")
        if "latest" not in sh:
            L.append(f"system health   latest: {NOT_PUBLISHED} (watchdog not running)")
    else:
        L.append(f"system health   {NOT_PUBLISHED if st.get('reachable') else na}")
    L.extend(_render_hot_copy(st) if live else [])
    L.extend(_render_runtime(rep.get("runtime") or {}))
    stale = rep.get("stale") or []
    L.append("freshness       " + ("STALE: " + "; ".join(x["line"] for x in stale) if stale
                                   else "every published record within its limit"))
    return "\n".join(L)


def _render_runtime(rt: dict) -> list:
    if rt.get("error"):
        return [f"runtime         fill journal UNREADABLE: {rt['error']}"]
    if not rt.get("sessions"):
        return ["runtime         no session in the fill journal"]
    L = []
    for x in rt["sessions"]:
        pos = ", ".join(f"{p['symbol']} {p['qty']:+.6g} @ {p['avg_price']:.6g}" for p in x["positions"]) or "flat"
        lf = x["last_fill"]
        last = "no fill" if lf is None else (f"last fill {lf['role']} {lf['side']} {lf['symbol']} {lf['qty']:.6g} @ "
                                            f"{lf['price']:.6g} at {lf['time']}")
        L.append(f"runtime         session {x['session']} ({x['mode']}, {x['status']}, run {x['runs']}): capital "
                 f"{_num(x['capital'])}, {x['n_fills']} fill(s), position {pos}; {last}")
    return L


MAX_MISSING_LINES = 12  # a wiped store misses every PNL day: the rest is counted, not listed


def _render_hot_copy(st: dict) -> list:
    hc, bad = st.get("hot_copy") or {}, st.get("malformed") or {}
    L = []
    miss = hc.get("missing", [])
    how = (f"store_rehydration_sensor restores within ~{SENSOR_INTERVAL_S} s when running; "
           f"now: dolphin store rehydrate")
    if hc.get("error"):
        L.append(f"hot copy        cannot check the published keys: {hc['error']}")
    elif not hc:
        pass
    elif miss:
        L.append(f"hot copy        {len(miss)} of {hc['expected']} published key(s) MISSING ({how})")
        for m in miss[:MAX_MISSING_LINES]:
            L.append(f"  missing       {m['line']}")
        if len(miss) > MAX_MISSING_LINES:
            L.append(f"  missing       ... and {len(miss) - MAX_MISSING_LINES} more")
    else:
        L.append(f"hot copy        all {hc['expected']} published key(s) present")
    for name, err in bad.items():
        L.append(f"  malformed     {name}: read as missing: {err}")
    return L


def _finite(x):
    """NaN / inf -> None: the JSON output must be strict JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def run(args) -> int:
    try:
        state_map(args.strategy)
    except StoreKeyError as e:
        print(f"dolphin status: {e}", file=sys.stderr)
        return 2
    known = known_strategies()
    if args.strategy.upper() not in known:
        print(f"dolphin status: unknown strategy {args.strategy!r}: known are {', '.join(sorted(known))} "
              f"(BLUE, GREEN and those in the ledger {ledger_path()})", file=sys.stderr)
        return 2
    rep = collect(args.strategy)
    if args.json:
        print(json.dumps(_finite(rep), sort_keys=True, default=str, allow_nan=False))
    else:
        print(render(rep))
    return 0 if rep["ok"] else 1


def register(sub) -> None:
    p = sub.add_parser("status", help="store, scan, posture, capital, position, MC/ExF freshness at a glance",
                       description=__doc__.split("\n\n")[1])
    p.add_argument("--strategy", default="BLUE", help="strategy name (default BLUE)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=run)


if __name__ == "__main__":  # python -m dolphin.status
    import argparse

    ap = argparse.ArgumentParser(prog="dolphin")
    register(ap.add_subparsers(dest="command"))
    ns = ap.parse_args(["status", *sys.argv[1:]])
    sys.exit(ns.func(ns))

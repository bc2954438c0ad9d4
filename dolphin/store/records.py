"""Feature-store records built from domain objects, and each key's "newer" order.

Shared by the publishers (the Dagster assets) and the rehydrator (``dolphin.rehydrate``), so a record
rebuilt from its durable source is byte-for-byte the one its publisher stored.
"""

import math

from dolphin.store.port import ACB_STATE, FEATURES, SCAN_LATEST, STATE_LATEST, Record, iso_utc
from dolphin.timeutil import DAY_MS, day_start_ms, day_str


def num(v):
    """float, or None for NaN/inf (JSON has no NaN)."""
    v = float(v)
    return v if math.isfinite(v) else None


def scan_record(scans, i: int = -1, source: str = "") -> Record:
    """``scan_latest``: one scan (default the last row) -- time, vel_div, λ and λ/N per window, N."""
    n = scans.n_assets
    ts = int(scans.timestamp[i])
    v = {"scan_time_ms": ts, "date": day_str(int(scans.open_time[i])), "vel_div": num(scans.vel_div[i]),
         "vel_div_norm": num(scans.vel_div[i] / n), "asset_count": n, "source": source}
    for k, w in enumerate(scans.windows):
        v[f"lambda_w{w}"] = num(scans.lam[i, k])
        v[f"lambda_norm_w{w}"] = num(scans.lam[i, k] / n)
    return Record(v, iso_utc(ts))


def _day_end_iso(day: str) -> str:
    return iso_utc(day_start_ms(day) + DAY_MS)


def state_record(strategy: str, last, ledger_seq: int) -> Record:
    """``DOLPHIN_STATE_<S>/latest`` from the ledger's last current day (a ``LedgerEntry``)."""
    return Record({"strategy": strategy, "day": last.day, "capital": last.record.closing_capital,
                   "equity": last.record.closing_equity, "peak": last.peak, "drawdown": last.drawdown,
                   "ledger_seq": ledger_seq}, _day_end_iso(last.day))


def pnl_record(strategy: str, e) -> Record:
    """``DOLPHIN_PNL_<S>/<day>`` from one current ledger day (a ``LedgerEntry``)."""
    r = e.record
    return Record({"strategy": strategy, "day": e.day, "version": e.version, "opening_equity": r.opening_equity,
                   "closing_equity": r.closing_equity, "capital": r.closing_capital, "pnl": num(e.pnl),
                   "return": num(e.ret), "trades": r.n_trades, "wins": sum(t["pnl"] > 0 for t in r.trades),
                   "peak": e.peak, "drawdown": e.drawdown}, _day_end_iso(e.day))


# ---------------------------------------------------------------- orders: is ``new`` newer than ``old``?


def scan_is_newer(new: Record, old: Record) -> bool:
    return new.value.get("scan_time_ms", -1) > old.value.get("scan_time_ms", -1)


def ledger_is_newer(new: Record, old: Record) -> bool:
    # a rebase moves the chain's last day backwards, so order by the ledger's append sequence, not by day
    return new.value.get("ledger_seq", -1) > old.value.get("ledger_seq", -1)


def acb_is_newer(new: Record, old: Record) -> bool:
    # dolphin.acb's order (updated_at, last_date) on the records: updated_at is the record's timestamp
    return (new.timestamp_ms, str(new.value.get("last_date", ""))) > \
           (old.timestamp_ms, str(old.value.get("last_date", "")))


def timestamp_is_newer(new: Record, old: Record) -> bool:
    return new.timestamp_ms > old.timestamp_ms


def newer_for(map_name: str, key: str):
    """The order its publishers use for ``map_name``/``key`` (``publish_if_newer``'s ``newer``)."""
    if map_name == FEATURES and key == SCAN_LATEST:
        return scan_is_newer
    if map_name == FEATURES and key == ACB_STATE:
        return acb_is_newer
    if map_name.startswith("DOLPHIN_STATE_") and key == STATE_LATEST:
        return ledger_is_newer
    return timestamp_is_newer

"""Feature-store records built from domain objects (what the assets publish), JSON-safe."""

import math

from dolphin.store import Record, iso_utc
from dolphin.timeutil import day_str


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


def scan_is_newer(new: Record, old: Record) -> bool:
    return new.value.get("scan_time_ms", -1) > old.value.get("scan_time_ms", -1)


def ledger_is_newer(new: Record, old: Record) -> bool:
    # a rebase moves the chain's last day backwards, so order by the ledger's append sequence, not by day
    return new.value.get("ledger_seq", -1) > old.value.get("ledger_seq", -1)


def publish_or_gap(context, what: str, fn):
    """Run a feature-store publish; an unavailable store does not stop the asset (its outputs and the ledger
    are the truth, the hot copy is repopulated by the next run): the gap is logged and returned for the
    asset's metadata. Returns (result or False, gap text or "none")."""
    from dolphin.store import StoreUnavailableError

    try:
        return fn(), "none"
    except StoreUnavailableError as e:
        gap = f"feature store unavailable, {what} not published: {e}"
        context.log.warning(gap)
        return False, gap

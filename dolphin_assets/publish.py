"""Feature-store records built from domain objects (what the assets publish), JSON-safe; publishing with the
store-gap rule and the published-record log that rehydration restores from (``dolphin.rehydrate``)."""

from dolphin.store.records import ledger_is_newer, num, scan_is_newer, scan_record  # noqa: F401 (re-exported)
from dolphin.rehydrate import keep_published  # noqa: F401 (re-exported; shared with the scan bridge)


def publish_or_gap(context, what: str, fn):
    """Run a feature-store publish; an unavailable store does not stop the asset (its outputs and the ledger
    are the truth, the hot copy is repopulated by the next run or by rehydration): the gap is logged and
    returned for the asset's metadata. Returns (result or False, gap text or "none")."""
    from dolphin.store import StoreUnavailableError

    try:
        return fn(), "none"
    except StoreUnavailableError as e:
        gap = f"feature store unavailable, {what} not published: {e}"
        context.log.warning(gap)
        return False, gap

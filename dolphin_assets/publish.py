"""Feature-store records built from domain objects (what the assets publish), JSON-safe; publishing with the
store-gap rule and the published-record log that rehydration restores from (``dolphin.store.rehydrate``)."""

from dolphin.store.records import ledger_is_newer, num, scan_is_newer, scan_record  # noqa: F401 (re-exported)


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


def keep_published(log, map_name: str, key: str, record) -> bool:
    """Keep ``record`` in the published-record log (newest per key, the key's publish order) after the asset
    published it -- also when the store was down, so rehydration restores it once the store is back. A log
    that cannot be written only costs rehydration that record: warned, never fatal to the asset."""
    import sqlite3

    from dolphin.store.rehydrate import PublishedLog

    try:
        return PublishedLog().keep(map_name, key, record)
    except (OSError, sqlite3.Error) as e:
        log.warning(f"published-record log not written for {map_name}/{key} (rehydration cannot restore this "
                    f"record): {type(e).__name__}: {e}")
        return False

"""Publishing from an asset with the store-gap rule: an unavailable feature store is reported in the asset's
metadata, not raised (the records are built by ``dolphin.store.records``; the published-record log that
rehydration restores from is ``dolphin.rehydrate.keep_published``)."""


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

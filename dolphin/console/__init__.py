"""Operator console (`dolphin console`): one live page over the feature store and the ledger, read-only unless
started with an operator token. ``decisions`` is the small record the runtime writes so the page can say why no
entry was made; ``collect`` builds the page's snapshot; ``server`` serves it (Starlette + uvicorn, SSE)."""

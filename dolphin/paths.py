"""Where DOLPHIN finds market data and keeps its own state.

- Market data: env ``DOLPHIN_DATA``, else ``../shared/data`` beside the repository checkout.
- Data home (scans, caches, ledger, DuckDB warehouse): env ``DOLPHIN_HOME``, else ``~/.dolphin``.
"""

import os
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parent.parent


class DataNotFoundError(FileNotFoundError):
    pass


def data_root() -> Path:
    env = os.environ.get("DOLPHIN_DATA")
    if env:
        p = Path(env).expanduser()
        if not p.is_dir():
            raise DataNotFoundError(f"DOLPHIN_DATA={env!r} is not a directory")
        return p
    for cand in (_REPO_ROOT.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"):
        if cand.is_dir():
            return cand
    raise DataNotFoundError(
        "market data not found: set DOLPHIN_DATA or place the data at ../shared/data beside the checkout"
    )


def resolve_kline_set(name_or_path: str) -> Path:
    """A set name like ``spot-5m-2024`` (looked up under ``<data>/klines``) or a path."""
    p = Path(name_or_path).expanduser()
    if p.exists():
        return p
    cand = data_root() / "klines" / name_or_path
    if cand.exists():
        return cand
    raise DataNotFoundError(f"candle set {name_or_path!r}: neither a path nor a set under {data_root() / 'klines'}")


def data_home() -> Path:
    p = Path(os.environ.get("DOLPHIN_HOME", "~/.dolphin")).expanduser()
    p.mkdir(parents=True, exist_ok=True)
    return p

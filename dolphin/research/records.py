"""Validation records: what a walk-forward validation found, stored so that a later step can require it.

A record names the data (``data_fingerprint``), the configuration (``config_hash`` of its parameters), the
code (``code_version``), the gate (each criterion's value, threshold and verdict) and the results. Files live
under ``$DOLPHIN_HOME/validation/<leg>-<config_hash>-<fingerprint[:12]>.json`` and are written atomically
(temp file + fsync + rename), so a reader never sees half a record. A later validation of the same config
on the same data replaces the file (the newest verdict is the one that counts).
"""

import hashlib
import json
import math
import os
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

LEGS = ("short", "long")


class RecordError(ValueError):
    pass


def _canon_value(v):
    """JSON-able canonical form: tuples as lists, numpy scalars as Python ones, NaN/inf spelled out (JSON has
    no literal for them); json.dumps then writes floats by repr, so 0.1 hashes as 0.1 on every platform."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return {"__float__": repr(v)} if not math.isfinite(v) else float(repr(v))
    if isinstance(v, Mapping):
        return {str(k): _canon_value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_canon_value(x) for x in v]
    if hasattr(v, "item"):  # numpy scalars
        return _canon_value(v.item())
    raise RecordError(f"config value {v!r} ({type(v).__name__}) is not JSON-able")


def canonical_json(params: Mapping) -> str:
    # sorted keys, no spaces; json.dumps writes floats with repr(), so equal text <=> equal values
    return json.dumps(_canon_value(dict(params)), sort_keys=True, separators=(",", ":"), allow_nan=False)


def config_hash(params: Mapping) -> str:
    """sha256 (hex) of the parameters' canonical JSON (sorted keys, floats by repr)."""
    return hashlib.sha256(canonical_json(params).encode()).hexdigest()


def _file_id(p: Path, content: bool) -> list:
    st = p.stat()
    if content:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return [p.name, st.st_size, h.hexdigest()]
    return [p.name, st.st_size, st.st_mtime_ns]


def data_fingerprint(path, start=None, end=None, *, content: bool = True) -> str:
    """What identifies a data set and a window: sha256 over the set's files (name, size, content hash; or
    mtime instead of the content with ``content=False``, cheaper but touched by a copy) and the window's
    bounds (``start``/``end``, anything with an ISO text form; None = the whole set). A folder counts its
    data files (parquet/feather/json/csv/zip) in sorted order; a file counts itself."""
    p = Path(path).expanduser()
    if p.is_dir():
        files = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in
                       (".parquet", ".feather", ".json", ".csv", ".zip", ".gz"))
        if not files:
            raise RecordError(f"data fingerprint: no data files in {p}")
    elif p.is_file():
        files = [p]
    else:
        raise RecordError(f"data fingerprint: {p} does not exist")
    doc = {"files": [_file_id(q, content) for q in files],
           "window": [None if start is None else _iso(start), None if end is None else _iso(end)]}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _iso(t) -> str:
    if isinstance(t, (int, float)) and not isinstance(t, bool):  # epoch ms
        return datetime.fromtimestamp(t / 1000, tz=timezone.utc).isoformat()
    if hasattr(t, "isoformat"):
        return t.isoformat()
    return str(t)


def code_version() -> str:
    """The git commit of the checkout (``+dirty`` when files differ), else the package version."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if sha.returncode == 0:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "dolphin"],
                                   cwd=root, capture_output=True, text=True, timeout=10)
            return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        from importlib.metadata import version
        return "dolphin " + version("dolphin")
    except Exception:
        return "unknown"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ValidationRecord:
    leg: str  # 'short' | 'long'
    data_fingerprint: str
    data_set: str
    config_hash: str
    params: dict
    code_version: str
    gate: dict  # name -> {"value", "threshold", "passed"}
    passed: bool
    results: dict
    created_at: str = field(default_factory=now_iso)  # ISO 8601 UTC

    def __post_init__(self):
        if self.leg not in LEGS:
            raise RecordError(f"leg must be one of {LEGS}, got {self.leg!r}")
        if not self.data_fingerprint or not self.config_hash:
            raise RecordError("a validation record needs a data fingerprint and a config hash")
        for name, g in self.gate.items():
            if not isinstance(g, Mapping) or not {"value", "threshold", "passed"} <= set(g):
                raise RecordError(f"gate {name!r} must have value, threshold and passed; got {g!r}")

    def to_json(self) -> str:
        return json.dumps(_canon_value(asdict(self)), sort_keys=True, indent=1, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> "ValidationRecord":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise RecordError(f"validation record is not JSON: {e}") from None
        if not isinstance(doc, dict):
            raise RecordError("validation record must be a JSON object")
        names = {f.name for f in fields(cls)}
        missing = names - set(doc) - {"created_at"}
        if missing:
            raise RecordError(f"validation record lacks {sorted(missing)}")
        return cls(**{k: _uncanon(v) for k, v in doc.items() if k in names})

    @property
    def file_name(self) -> str:
        return f"{self.leg}-{self.config_hash}-{self.data_fingerprint[:12]}.json"


def _uncanon(v):
    if isinstance(v, dict):
        if set(v) == {"__float__"}:
            return float(v["__float__"])
        return {k: _uncanon(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_uncanon(x) for x in v]
    return v


def validation_dir(home: Path | None = None) -> Path:
    if home is None:
        from dolphin.paths import data_home
        home = data_home()
    return Path(home) / "validation"


def save_record(rec: ValidationRecord, home: Path | None = None) -> Path:
    """Write ``rec`` atomically; returns its path. The file is readable by others (0644)."""
    d = validation_dir(home)
    d.mkdir(parents=True, exist_ok=True)
    target = d / rec.file_name
    text = rec.to_json()
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=d)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # the rename itself durable
        dfd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return target


def load_record(path) -> ValidationRecord:
    p = Path(path)
    try:
        return ValidationRecord.from_json(p.read_text())
    except RecordError as e:
        raise RecordError(f"{p}: {e}") from None


def find_records(params: Mapping, leg: str, home: Path | None = None) -> list:
    """Every stored record of this config (any data), newest first. A damaged file is skipped (with a
    warning naming it), never taken for a record."""
    import logging

    h = config_hash(params)
    d = validation_dir(home)
    out = []
    if not d.is_dir():
        return out
    for p in sorted(d.glob(f"{leg}-{h}-*.json")):
        try:
            rec = load_record(p)
        except (RecordError, OSError, TypeError) as e:
            logging.getLogger("dolphin.research").warning("validation record %s unreadable, ignored: %s", p, e)
            continue
        if rec.config_hash == h and rec.leg == leg:
            out.append(rec)
    out.sort(key=lambda r: r.created_at, reverse=True)
    return out


def latest_passing(params: Mapping, leg: str, home: Path | None = None) -> ValidationRecord | None:
    """The newest record of this config and leg that passed its gate, or None."""
    return next((r for r in find_records(params, leg, home) if r.passed), None)

"""``scan_latest`` with its per-asset columns as Arrow IPC bytes (the seeds' MIG4.3 zero-copy path).

At 400 assets a full scan (closes + leading-eigenvector loadings for 4 windows = 2,000 floats) is ~45 KB of
JSON that every reader parses float by float. Here the per-asset columns travel as one Arrow IPC stream
(one record batch: scalars, and a fixed-size list of N float64 per column, symbols in the schema metadata);
the reader maps them to numpy arrays without a per-float parse (``ScanArrays``, views on one buffer).

Transport: the store's contract stays as it is (a JSON object with ``timestamp``; compare-and-set by text;
Hazelcast 4.2/5.x and the embedded SQLite store unchanged). The IPC bytes ride base64-encoded in the field
``arrow_ipc_b64`` beside the scalar fields every existing reader uses (``scan_time_ms``, ``vel_div``,
``lambda_w*``...: ``records.scan_record``'s), so ``scan_is_newer``, ``dolphin status``, the watchdog and the
rehydrator read it as before. Base64 costs 4/3 in size and one C-speed decode: measured against the JSON
columns in ``bench/scale.py`` (encode + put + get + decode to arrays, 50 and 400 assets).
"""

import base64
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from dolphin.store.port import MalformedRecordError, Record
from dolphin.store.records import scan_record

FIELD = "arrow_ipc_b64"
ENCODING = "arrow-ipc-stream/v1"


def encode_scan(scans, i: int = -1) -> bytes:
    """One scan row as an Arrow IPC stream: scalars + ``close`` and ``loadings_w<W>`` as N float64 each."""
    n = scans.n_assets
    cols = {"scan_time_ms": pa.array([int(scans.timestamp[i])], pa.int64()),
            "vel_div": pa.array([float(scans.vel_div[i])], pa.float64())}
    for k, w in enumerate(scans.windows):
        cols[f"lambda_w{w}"] = pa.array([float(scans.lam[i, k])], pa.float64())
        cols[f"velocity_w{w}"] = pa.array([float(scans.velocity[i, k])], pa.float64())
        cols[f"instability_w{w}"] = pa.array([float(scans.instability[i, k])], pa.float64())
    vectors = {"close": scans.close[i]}
    vectors.update({f"loadings_w{w}": scans.loadings[i, k] for k, w in enumerate(scans.windows)})
    for name, v in vectors.items():
        cols[name] = pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(v, np.float64)), n)
    meta = {b"symbols": ",".join(scans.symbols).encode(), b"windows": ",".join(map(str, scans.windows)).encode()}
    batch = pa.RecordBatch.from_pydict(cols).replace_schema_metadata(meta)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as w:
        w.write_batch(batch)
    return sink.getvalue().to_pybytes()


@dataclass
class ScanArrays:
    """A decoded scan: scalars as Python numbers, per-asset columns as read-only numpy views."""

    symbols: list
    windows: tuple
    scan_time_ms: int
    vel_div: float
    lam: dict  # window -> lambda
    close: np.ndarray  # (N,)
    loadings: dict  # window -> (N,) leading eigenvector

    @property
    def n_assets(self) -> int:
        return len(self.symbols)


def decode_scan(data) -> ScanArrays:
    """IPC bytes -> ``ScanArrays`` (numpy views on the IPC buffer: no per-float work)."""
    try:
        reader = pa.ipc.open_stream(pa.py_buffer(data))
        batch = reader.read_next_batch()
        meta = batch.schema.metadata or {}
        symbols = meta[b"symbols"].decode().split(",")
        windows = tuple(int(x) for x in meta[b"windows"].decode().split(","))
        n = len(symbols)

        def vec(name):
            col = batch.column(batch.schema.get_field_index(name))
            a = col.values.to_numpy(zero_copy_only=True)
            if a.shape != (n,):
                raise ValueError(f"{name}: {a.shape[0]} values for {n} symbols")
            return a

        return ScanArrays(symbols, windows, int(batch.column(0)[0].as_py()), float(batch.column(1)[0].as_py()),
                          {w: float(batch.column(batch.schema.get_field_index(f"lambda_w{w}"))[0].as_py())
                           for w in windows},
                          vec("close"), {w: vec(f"loadings_w{w}") for w in windows})
    except (pa.ArrowInvalid, KeyError, ValueError, IndexError, StopIteration, AttributeError) as e:
        raise MalformedRecordError(f"scan_latest Arrow payload is not a valid scan ({e})") from None


def scan_arrow_record(scans, i: int = -1, source: str = "") -> Record:
    """``scan_latest`` = ``records.scan_record``'s fields + the Arrow IPC payload (base64) of the columns."""
    rec = scan_record(scans, i, source)
    return Record({**rec.value, "encoding": ENCODING, FIELD: base64.b64encode(encode_scan(scans, i)).decode("ascii")},
                  rec.timestamp)


def scan_arrays(record: Record) -> ScanArrays:
    """The per-asset columns of a ``scan_latest`` record published by ``scan_arrow_record``."""
    payload = record.value.get(FIELD)
    if not isinstance(payload, str):
        raise MalformedRecordError("scan_latest has no Arrow payload (published without per-asset columns)")
    try:
        raw = base64.b64decode(payload, validate=True)
    except (ValueError, TypeError) as e:
        raise MalformedRecordError(f"scan_latest Arrow payload is not base64 ({e})") from None
    arr = decode_scan(raw)
    if arr.scan_time_ms != record.value.get("scan_time_ms"):
        raise MalformedRecordError(f"scan_latest Arrow payload is of scan {arr.scan_time_ms}, the record of "
                                   f"{record.value.get('scan_time_ms')}")
    return arr

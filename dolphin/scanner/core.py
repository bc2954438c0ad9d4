"""Batch and live scanning on top of the numba kernels (see ``kernels.py`` for the math).

Bar indices: t = 0 is the first bar of the panel; r_t = log(close_t / close_{t-1}) exists for
t >= 1. lambda_W(t) exists for t >= W (W returns), velocity / instability for t >= W + 1.

Day anchoring: the bars of each UTC day (by bar OPEN time) form one segment. A segment starts
from its *seed*, the bar just before the day's first bar: all window sums are recomputed exactly
from the last max(W) returns and the seed's eigenpairs come from LAPACK; then the day runs
incrementally. The seed's lambda/u only feed velocity/instability of the day's first bar (the seed
bar's own row comes from the previous day's segment). So a day's rows depend only on its own bars
and the 751 bars before it, and are bit-identical whether the day is scanned alone (with that
warm-up tail) or inside a longer run. ``scan`` always starts at the beginning of the UTC day that
contains ``start_ms``; rows before ``start_ms`` are computed and dropped.
"""

from dataclasses import dataclass

import numpy as np
from scipy.linalg.lapack import dsyevr

from dolphin.scanner import kernels
from dolphin.scanner.blas import single_threaded
from dolphin.timeutil import DAY_MS

WINDOWS = (50, 150, 300, 750)
# Bars needed before the first scanned day for every window to be warm on that day's first bar:
# the seed (bar before the day) needs max(W) returns, i.e. max(W) + 1 closes.
WARMUP_BARS = max(WINDOWS) + 1


@dataclass
class ScanResult:
    """Scans of consecutive bars, as numpy arrays (what engine code consumes).

    T rows, K = len(windows) windows (ascending), N assets. Undefined values are NaN (see ``valid``).
    ``valid[:, k]`` is True where lambda_W exists (t >= W); velocity and instability are
    additionally NaN on the first valid bar (t = W). ``vel_div = velocity[:, 0] - velocity[:, 1]``
    (v_50 - v_150 for the default windows). ``fallbacks`` bit k set = window k used the exact
    LAPACK path on that bar; ``matvecs`` is the iteration count per window (diagnostic, not stored).
    """

    symbols: list
    bar_ms: int
    windows: tuple
    open_time: np.ndarray  # (T,) int64 ms, bar open
    lam: np.ndarray  # (T, K) largest eigenvalue of the correlation matrix
    velocity: np.ndarray  # (T, K) lam(t) - lam(t-1)
    instability: np.ndarray  # (T, K) 1 - |u(t).u(t-1)|
    valid: np.ndarray  # (T, K) bool
    loadings: np.ndarray  # (T, K, N) unit leading eigenvector, sum >= 0
    close: np.ndarray  # (T, N)
    fallbacks: np.ndarray  # (T,) int8 bitmask
    matvecs: np.ndarray = None  # (T, K) uint8

    @property
    def n_assets(self) -> int:
        return len(self.symbols)

    @property
    def timestamp(self) -> np.ndarray:
        """Scan time: bar CLOSE time (int64 ms), when the scan is known."""
        return self.open_time + self.bar_ms

    @property
    def lam_norm(self) -> np.ndarray:
        return self.lam / self.n_assets

    @property
    def vel_div(self) -> np.ndarray:
        return self.velocity[:, 0] - self.velocity[:, 1]

    def window_index(self, w: int) -> int:
        return self.windows.index(int(w))

    def fallback_counts(self) -> dict:
        """Number of rows that used the exact path, per window."""
        fb = self.fallbacks.astype(np.int64)
        return {w: int(((fb >> k) & 1).sum()) for k, w in enumerate(self.windows)}

    def __len__(self) -> int:
        return int(self.open_time.shape[0])

    def __getitem__(self, idx) -> "ScanResult":
        """Row slice (an int gives a one-row result)."""
        if isinstance(idx, (int, np.integer)):
            i = int(idx) % len(self) if len(self) else int(idx)
            idx = slice(i, i + 1)
        return ScanResult(
            symbols=self.symbols,
            bar_ms=self.bar_ms,
            windows=self.windows,
            open_time=self.open_time[idx],
            lam=self.lam[idx],
            velocity=self.velocity[idx],
            instability=self.instability[idx],
            valid=self.valid[idx],
            loadings=self.loadings[idx],
            close=self.close[idx],
            fallbacks=self.fallbacks[idx],
            matvecs=None if self.matvecs is None else self.matvecs[idx],
        )

    def row_dict(self, i: int = -1) -> dict:
        """One scan as plain Python values (e.g. for a JSON feature store)."""
        out = {
            "timestamp": int(self.timestamp[i]),
            "bar_open_time": int(self.open_time[i]),
            "n_assets": self.n_assets,
        }
        for k, w in enumerate(self.windows):
            out[f"lambda_w{w}"] = float(self.lam[i, k])
            out[f"lambda_norm_w{w}"] = float(self.lam[i, k] / self.n_assets)
            out[f"velocity_w{w}"] = float(self.velocity[i, k])
            out[f"instability_w{w}"] = float(self.instability[i, k])
            out[f"valid_w{w}"] = bool(self.valid[i, k])
            out[f"loadings_w{w}"] = self.loadings[i, k].tolist()
        out["vel_div"] = float(self.velocity[i, 0] - self.velocity[i, 1])
        out["close"] = self.close[i].tolist()
        out["fallbacks"] = int(self.fallbacks[i])
        return out


def _check_windows(windows) -> tuple:
    w = tuple(int(x) for x in windows)
    if len(w) < 2 or len(w) > 7 or list(w) != sorted(set(w)) or w[0] < 3:
        raise ValueError(f"windows must be 2..7 ascending distinct lengths >= 3, got {windows}")
    return w


class _Engine:
    """Scanner state + preallocated work buffers; thin wrapper around the kernels."""

    def __init__(self, n_assets: int, windows=WINDOWS):
        self.windows = _check_windows(windows)
        N = int(n_assets)
        if N < 2:
            raise ValueError("the scanner needs at least 2 assets")
        K = len(self.windows)
        P = N * (N - 1) // 2
        self.N, self.K = N, K
        self.win = np.array(self.windows, dtype=np.int64)
        self.off = kernels.packed_offsets(N)
        self.ring = np.zeros((self.windows[-1] + 1, N))
        self.ctr = np.zeros(1, dtype=np.int64)
        self.S1 = np.zeros((K, N))
        self.Sd = np.zeros((K, N))
        self.S2 = np.zeros((K, P))
        self.nz = np.zeros((K, N), dtype=np.int64)
        self.U = np.zeros((K, N))
        self.lam = np.zeros(K)
        self.has = np.zeros(K, dtype=np.bool_)
        self.zero_row = np.zeros(N)
        self.m, self.d, self.x, self.y, self.z = (np.zeros(N) for _ in range(5))
        self.Cbuf = np.zeros((N, N))
        self.aS1, self.aSd, self.aS2 = np.zeros(N), np.zeros(N), np.zeros(P)
        self.anz = np.zeros(N, dtype=np.int64)
        self.blk = np.zeros((kernels.SEED_BLOCK, N))

    @property
    def n_returns(self) -> int:
        return int(self.ctr[0])

    def push_only(self, rets: np.ndarray, n_after: int) -> None:
        """Load warm-up returns into the ring; ``n_after`` = returns seen once they are in."""
        self.ctr[0] = n_after - rets.shape[0]
        kernels.push_only(np.ascontiguousarray(rets), self.ring, self.ctr)

    def seed(self) -> None:
        """Day anchor (see module doc): exact sums from the ring, exact eigenpairs by LAPACK."""
        kernels.seed_sums(self.ring, self.ctr, self.win, self.off, self.S1, self.Sd, self.S2, self.nz,
                          self.aS1, self.aSd, self.aS2, self.anz, self.blk)
        n, N = self.n_returns, self.N
        for k, W in enumerate(self.windows):
            if n < W:
                self.has[k] = False
                continue
            kernels.explicit_corr(self.S2[k], self.off, self.S1[k], self.Sd[k], self.nz[k], W,
                                  self.m, self.d, N, self.Cbuf)
            # dsyevr computes only the top pair: ~2x cheaper than a full eigh at N=400
            w, z, found, _, info = dsyevr(self.Cbuf, compute_v=1, range="I", il=N, iu=N)
            if info != 0 or found != 1:
                raise np.linalg.LinAlgError(f"dsyevr failed (info={info}) on the w{W} seed correlation")
            self.lam[k] = w[0]
            self.U[k] = z[:, 0]
            kernels.sign_fix(self.U[k])
            self.has[k] = True

    def advance(self, rets: np.ndarray, out: dict, lo: int) -> None:
        """Process rets (B, N); write outputs into rows lo..lo+B-1 of the arrays in ``out``."""
        B = rets.shape[0]
        hi = lo + B
        kernels.advance(np.ascontiguousarray(rets), self.ring, self.ctr, self.win, self.off,
                        self.S1, self.Sd, self.S2, self.nz, self.U, self.lam, self.has,
                        self.zero_row, self.m, self.d, self.x, self.y, self.z, self.Cbuf,
                        out["lam"][lo:hi], out["velocity"][lo:hi], out["instability"][lo:hi],
                        out["valid"][lo:hi], out["loadings"][lo:hi], out["fallbacks"][lo:hi],
                        out["matvecs"][lo:hi])


def _alloc(T: int, K: int, N: int) -> dict:
    return {
        "lam": np.empty((T, K)),
        "velocity": np.empty((T, K)),
        "instability": np.empty((T, K)),
        "valid": np.empty((T, K), dtype=np.bool_),
        "loadings": np.empty((T, K, N)),
        "fallbacks": np.empty(T, dtype=np.int8),
        "matvecs": np.empty((T, K), dtype=np.uint8),
    }


def _blank_row(out: dict, i: int) -> None:
    """A bar with no return (first bar of the panel)."""
    for key in ("lam", "velocity", "instability", "loadings"):
        out[key][i] = np.nan
    out["valid"][i] = False
    out["fallbacks"][i] = 0
    out["matvecs"][i] = 0


def _bounds(open_time: np.ndarray, start_ms, end_ms) -> tuple:
    i0 = 0 if start_ms is None else int(np.searchsorted(open_time, int(start_ms), side="left"))
    i1 = len(open_time) if end_ms is None else int(np.searchsorted(open_time, int(end_ms), side="right"))
    return i0, max(i0, i1)


def _run(engine: _Engine, close: np.ndarray, open_time: np.ndarray, i0: int, i1: int, progress=None) -> tuple:
    """Scan bars [d0, i1) where d0 is the first bar of i0's UTC day; returns (out, d0).

    The engine must be fresh; it ends in the state after bar i1-1 (used by LiveScanner).
    """
    N, K = engine.N, engine.K
    d0 = int(np.searchsorted(open_time, (int(open_time[i0]) // DAY_MS) * DAY_MS, side="left"))
    # the seed (bar d0-1) needs r_{d0-maxW} .. r_{d0-1}, i.e. closes from bar d0-maxW-1
    first = max(1, d0 - engine.windows[-1])
    lo = first - 1
    rets = np.empty((i1 - lo, N))
    kernels.log_returns(np.ascontiguousarray(close[lo:i1]), rets)  # rets[t - lo] = r_t for t > lo
    out = _alloc(i1 - d0, K, N)
    if d0 >= 1:
        engine.push_only(rets[first - lo:d0 - lo], n_after=d0 - 1)
    day = open_time[d0:i1] // DAY_MS
    cuts = np.flatnonzero(np.diff(day)) + 1
    starts = [0, *cuts.tolist()]
    ends = [*cuts.tolist(), i1 - d0]
    for a0, b in zip(starts, ends):
        a = a0
        if d0 + a == 0:  # the panel's first bar has no return
            _blank_row(out, 0)
            a += 1
        engine.seed()
        if b > a:
            engine.advance(rets[d0 + a - lo:d0 + b - lo], out, a)
        if progress is not None:
            progress.update(b - a0)
    return out, d0


def scan(panel, start_ms=None, end_ms=None, *, windows=WINDOWS, progress: bool = False) -> ScanResult:
    """Scan the bars of ``panel`` whose open time lies in [start_ms, end_ms] (inclusive bar opens;
    None = the panel's ends, where the start skips ``panel.warmup_bars`` leading warm-up rows).

    For every window to be valid from the first row, the panel needs WARMUP_BARS (751) bars before
    the UTC day containing ``start_ms``; with fewer, rows are emitted with the windows that are not
    yet warm marked invalid (NaN), exactly as a run from the panel's first bar would give them.
    """
    windows = _check_windows(windows)
    if len(panel.symbols) < 2 and hasattr(panel, "require_assets"):
        panel.require_assets(2, "scan")  # DataError naming the input and the dropped assets
    open_time = np.asarray(panel.open_time, dtype=np.int64)
    close = np.asarray(panel.close, dtype=np.float64)
    warm = int(getattr(panel, "warmup_bars", 0) or 0)
    if start_ms is None and 0 < warm < len(open_time):
        start_ms = int(open_time[warm])  # load_panel(warmup_bars=...) rows are history, not output
    i0, i1 = _bounds(open_time, start_ms, end_ms)
    N, K = len(panel.symbols), len(windows)
    if close.shape != (len(open_time), N) or not (np.isfinite(close).all() and (close > 0).all()):
        from dolphin.data.contracts import DataError

        raise DataError("scan: panel closes must be a (T, N) array of finite positive prices")
    if i1 <= i0:
        out = _alloc(0, K, N)
        return _result(panel, windows, out, open_time[0:0], close[0:0])
    engine = _Engine(N, windows)
    bar = None
    if progress:
        from tqdm import tqdm

        d0 = int(np.searchsorted(open_time, (int(open_time[i0]) // DAY_MS) * DAY_MS))
        bar = tqdm(total=i1 - d0, unit="bar", desc="scan", smoothing=0.1)
    try:
        with single_threaded():
            out, d0 = _run(engine, close, open_time, i0, i1, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    k = i0 - d0
    out = {key: v[k:] for key, v in out.items()}
    return _result(panel, windows, out, open_time[i0:i1], close[i0:i1])


def _result(panel, windows, out, open_time, close) -> ScanResult:
    return ScanResult(
        symbols=list(panel.symbols),
        bar_ms=int(panel.bar_ms),
        windows=tuple(windows),
        open_time=open_time,
        close=close,
        **out,
    )


class LiveScanner:
    """Push one bar of closes at a time; each push returns a one-row ScanResult.

    Same kernels and the same day anchoring as ``scan``: after warming up from the same history,
    live rows are bit-identical to the batch rows. Bars must arrive on the bar grid without gaps
    (forward-fill a missing close before pushing it).
    """

    def __init__(self, symbols, bar_ms: int, windows=WINDOWS):
        self.symbols = list(symbols)
        self.bar_ms = int(bar_ms)
        self.windows = _check_windows(windows)
        self._eng = _Engine(len(self.symbols), self.windows)
        self._last_open = None
        self._last_close = None
        self._out = _alloc(1, len(self.windows), len(self.symbols))
        self._ret = np.empty((2, len(self.symbols)))

    @classmethod
    def from_panel(cls, panel, upto_ms=None, windows=WINDOWS) -> "LiveScanner":
        """A scanner whose state is that of ``scan(panel)`` after the bar opening at ``upto_ms``
        (default: the panel's last bar). Replays only that bar's UTC day plus its warm-up."""
        sc = cls(panel.symbols, panel.bar_ms, windows)
        open_time = np.asarray(panel.open_time, dtype=np.int64)
        close = np.asarray(panel.close, dtype=np.float64)
        i1 = len(open_time) if upto_ms is None else int(np.searchsorted(open_time, int(upto_ms), side="right"))
        if i1 == 0:
            return sc
        with single_threaded():
            _run(sc._eng, close, open_time, i1 - 1, i1)
        sc._last_open = int(open_time[i1 - 1])
        sc._last_close = close[i1 - 1].copy()
        return sc

    def push(self, open_time_ms: int, close) -> ScanResult:
        """Add the bar opening at ``open_time_ms`` with closes (N,); returns its scan."""
        from dolphin.data.contracts import DataError

        open_time_ms = int(open_time_ms)
        c = np.asarray(close, dtype=np.float64).reshape(-1)
        if c.shape[0] != len(self.symbols):
            raise ValueError(f"expected {len(self.symbols)} closes, got {c.shape[0]}")
        if not (np.all(np.isfinite(c)) and np.all(c > 0)):
            raise DataError(f"non-finite or non-positive close at {open_time_ms}")
        if self._last_open is not None and open_time_ms != self._last_open + self.bar_ms:
            raise DataError(
                f"bar at {open_time_ms} does not follow {self._last_open} by {self.bar_ms} ms "
                "(forward-fill missing bars before pushing)"
            )
        out = self._out
        if self._last_close is None:
            _blank_row(out, 0)
        else:
            self._ret[0] = self._last_close
            self._ret[1] = c
            rets = np.empty_like(self._ret)
            kernels.log_returns(self._ret, rets)
            with single_threaded():
                if open_time_ms // DAY_MS != self._last_open // DAY_MS:
                    self._eng.seed()
                self._eng.advance(rets[1:2], out, 0)
        self._last_open = open_time_ms
        self._last_close = c.copy()
        return ScanResult(
            symbols=self.symbols,
            bar_ms=self.bar_ms,
            windows=self.windows,
            open_time=np.array([open_time_ms], dtype=np.int64),
            close=c.copy()[None, :],
            **{k: v.copy() for k, v in out.items()},
        )

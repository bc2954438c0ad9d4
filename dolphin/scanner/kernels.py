"""Numba kernels of the incremental eigenvalue scanner.

State per window k (W = windows[k]) over the last W log returns of N assets:

- ``S1[k]``  (N,)   sum of returns
- ``Sd[k]``  (N,)   sum of squared returns (diagonal of the cross-product sums)
- ``S2[k]``  (P,)   sums of r_i r_j for i < j, packed row-wise (P = N(N-1)/2, index ``off[i] + j``)
- ``nz[k]``  (N,)   integer count of nonzero returns (exact zero-variance test)
- ``U[k], lam[k], has[k]``  last leading eigenpair (warm start, velocity, instability)

Correlation with the zero-variance rule: m_i = S1_i/W, d_i = 1/sqrt(Sd_i - S1_i m_i) (0 when the
asset is constant over the window), C_ij = (S2_ij - S1_i m_j) d_i d_j for i != j, C_ii = 1.
The 1/(W-1) factors of the covariance cancel.

Per bar and window (``advance``): O(N) update of S1/Sd/nz, then ONE pass over the triangle that
adds the newest outer product, subtracts the leaving one, forms C_ij for ||C||_F^2 and computes
y = C u_prev (warm start); further power steps apply C implicitly from the sums (``_matvec``).
An eigenpair is accepted only under the rigorous test in ``_power``; otherwise (budget
MAX_MATVEC) the exact LAPACK solve of the explicit matrix is used and flagged.

Determinism: every loop has a fixed order and the iterative path calls no BLAS, so the same inputs
give the same bits. ``reassoc``/``contract`` let LLVM vectorise the reductions and use FMA: the
rounding differs from plain IEEE evaluation but is fixed per compiled kernel, and the batch and
live paths call the very same kernels on C-contiguous float64 arrays. The exact path runs LAPACK
pinned to one thread (``blas.single_threaded``). Bit-identity therefore holds within one build on
one CPU type; another CPU (vector width, FMA) may differ in the last bits.
"""

import math

import numpy as np
from numba import njit

_FM = {"reassoc", "contract"}

# Acceptance of an iterated eigenpair (see ``_power``).
TOL_LAMBDA = 1e-13  # Kato-Temple bound on (lambda_1 - theta) / theta
TOL_VECTOR = 1e-8  # bound on tan(angle) between the reported vector and the true eigenvector
MAX_MATVEC = 25  # matvec budget before the exact LAPACK fallback


def packed_offsets(n: int) -> np.ndarray:
    """``off[i] + j`` is the packed index of (i, j), i < j, in the strict upper triangle."""
    i = np.arange(n, dtype=np.int64)
    return i * (n - 1) - i * (i - 1) // 2 - i - 1


@njit(cache=True)
def log_returns(close, out):
    """out[t] = log(close[t] / close[t-1]) for t >= 1; out[0] = 0 (no return at the first bar).

    Plain IEEE (no fastmath) and always this one function, so that the same closes give the same
    return bits in the batch and the live path.
    """
    T, N = close.shape
    for i in range(N):
        out[0, i] = 0.0
    for t in range(1, T):
        for i in range(N):
            out[t, i] = math.log(close[t, i] / close[t - 1, i])


# Inner loops index row slices from 0: numba then knows the index is non-negative and drops the
# negative-index wraparound, which otherwise blocks vectorisation (6x slower at N=400).


@njit(cache=True, fastmath=_FM)
def _rank1_add(S, off, a, N):
    for i in range(N - 1):
        ai = a[i]
        row = S[off[i] + i + 1:off[i] + N]
        aa = a[i + 1:]
        for j in range(N - 1 - i):
            row[j] += ai * aa[j]


@njit(cache=True, fastmath=_FM)
def _update_fused(S, off, rn, ro, s1, m, d, x, y, N):
    """S += rn rn^T - ro ro^T (strict upper), y = C x, returns sum of C_ij^2 over i < j.

    One pass over the triangle: the sums update, forming C_ij for the Frobenius norm and the
    first (warm-started) matvec share the memory traffic.
    """
    for j in range(N):
        y[j] = 0.0
    fro = 0.0
    for i in range(N - 1):
        a = rn[i]
        o = ro[i]
        s1i = s1[i]
        di = d[i]
        xi = x[i]
        row = S[off[i] + i + 1:off[i] + N]
        rnj = rn[i + 1:]
        roj = ro[i + 1:]
        mj = m[i + 1:]
        dj = d[i + 1:]
        xj = x[i + 1:]
        yj = y[i + 1:]
        acc = 0.0
        f = 0.0
        for j in range(N - 1 - i):
            s = row[j] + a * rnj[j] - o * roj[j]
            row[j] = s
            c = (s - s1i * mj[j]) * (di * dj[j])
            f += c * c
            acc += c * xj[j]
            yj[j] += c * xi
        y[i] += acc
        fro += f
    for i in range(N):
        y[i] += x[i]  # C_ii = 1
    return fro


@njit(cache=True, fastmath=_FM)
def _matvec(S, off, s1, m, d, x, z, y, N):
    """y = C x with C applied implicitly from the sums: C x = x + D (S' z - s1 (m.z - m_i z_i)), z = D x."""
    mz = 0.0
    for j in range(N):
        z[j] = d[j] * x[j]
        y[j] = 0.0
        mz += m[j] * z[j]
    for i in range(N - 1):
        zi = z[i]
        row = S[off[i] + i + 1:off[i] + N]
        zj = z[i + 1:]
        yj = y[i + 1:]
        acc = 0.0
        for j in range(N - 1 - i):
            sij = row[j]
            acc += sij * zj[j]
            yj[j] += sij * zi
        y[i] += acc
    for i in range(N):
        y[i] = d[i] * (y[i] - s1[i] * (mz - m[i] * z[i])) + x[i]


@njit(cache=True)
def lambda2_bound(theta, fro, N, mrank):
    """Rigorous upper bound on lambda_2 of C given a Rayleigh quotient theta <= lambda_1.

    Frobenius: lambda_2^2 <= sum_{i>=2} lambda_i^2 = ||C||_F^2 - lambda_1^2 <= ||C||_F^2 - theta^2.
    Trace + Frobenius over the m = rank-1 other nonzero eigenvalues (trace C = N):
    lambda_2 <= (s + sqrt((m-1)(m q - s^2))) / m with s = N - lambda_1, q = ||C||_F^2 - lambda_1^2;
    the right side decreases in lambda_1 once lambda_1 >= N/(m+1), so theta may replace lambda_1.
    The small slack covers rounding in ||C||_F^2 and in the numerically-zero eigenvalues.
    """
    q = fro - theta * theta
    b = math.sqrt(q) if q > 0.0 else 0.0
    if mrank >= 1 and theta * (mrank + 1) >= N:
        s = N - theta
        disc = (mrank - 1) * (mrank * q - s * s)
        g = (s + math.sqrt(disc if disc > 0.0 else 0.0)) / mrank
        if g < b:
            b = g
    return b + 1e-10 * theta


@njit(cache=True, fastmath=_FM)
def _power(S, off, s1, m, d, x, y, z, fro, N, mrank):
    """Power iteration from unit x with y = C x given. Returns (theta, accepted, matvecs).

    Acceptance for the tested unit v: theta = v.Cv, r = Cv - theta v, b >= lambda_2 (lambda2_bound);
    theta > b and Kato-Temple ||r||^2/(theta-b) <= TOL_LAMBDA*theta bound lambda_1 - theta; the
    reported vector is Cv/||Cv|| whose angle to u_1 obeys tan <= (b/theta) tan(v, u_1) with
    sin(v, u_1) <= ||r||/(theta-b) (Davis-Kahan), required <= TOL_VECTOR. On acceptance y holds the
    reported unit vector.
    """
    nmv = 1
    while True:
        theta = 0.0
        for i in range(N):
            theta += x[i] * y[i]
        r2 = 0.0
        yy = 0.0
        for i in range(N):
            e = y[i] - theta * x[i]
            r2 += e * e
            yy += y[i] * y[i]
        b = lambda2_bound(theta, fro, N, mrank)
        if theta > b and yy > 0.0:
            gap = theta - b
            if r2 <= TOL_LAMBDA * theta * gap:
                sn = math.sqrt(r2) / gap
                if sn < 1.0 and (b / theta) * sn / math.sqrt(1.0 - sn * sn) <= TOL_VECTOR:
                    inv = 1.0 / math.sqrt(yy)
                    for i in range(N):
                        y[i] *= inv
                    return theta, True, nmv
        if nmv >= MAX_MATVEC or not (yy > 0.0):
            return theta, False, nmv
        inv = 1.0 / math.sqrt(yy)
        for i in range(N):
            x[i] = y[i] * inv
        _matvec(S, off, s1, m, d, x, z, y, N)
        nmv += 1


@njit(cache=True)
def _fill_corr(S, off, s1, m, d, N, Cbuf):
    for i in range(N):
        Cbuf[i, i] = 1.0
        di = d[i]
        base = off[i]
        for j in range(i + 1, N):
            c = (S[base + j] - s1[i] * m[j]) * (di * d[j])
            Cbuf[i, j] = c
            Cbuf[j, i] = c


@njit(cache=True)
def _exact_top(S, off, s1, m, d, N, Cbuf, u):
    """Exact leading eigenpair (LAPACK syevd) of the explicit correlation. Writes u, returns lambda."""
    _fill_corr(S, off, s1, m, d, N, Cbuf)
    w, V = np.linalg.eigh(Cbuf)
    for i in range(N):
        u[i] = V[i, N - 1]
    return w[N - 1]


@njit(cache=True)
def _sign_fix(u, N):
    s = 0.0
    for i in range(N):
        s += u[i]
    if s < 0.0:
        for i in range(N):
            u[i] = -u[i]


@njit(cache=True)
def _reset_zero_rows(S, off, nzk, N):
    """Exact zeros in the cross sums of assets with no nonzero return in the window."""
    for i in range(N):
        if nzk[i] == 0:
            for j in range(i + 1, N):
                S[off[i] + j] = 0.0
            for j in range(i):
                S[off[j] + i] = 0.0


@njit(cache=True)
def _scales(S1k, Sdk, nzk, W, m, d, N):
    """m_i, d_i for the current window; returns the number of zero-variance assets."""
    zc = 0
    for i in range(N):
        mi = S1k[i] / W
        m[i] = mi
        var = Sdk[i] - S1k[i] * mi
        if nzk[i] > 0 and var > 0.0:
            d[i] = 1.0 / math.sqrt(var)
        else:  # constant price over the window (or a numerically null variance): uncorrelated
            d[i] = 0.0
            zc += 1
    return zc


@njit(cache=True)
def advance(rets, ring, ctr, windows, off, S1, Sd, S2, nz, U, lam, has,
            zero_row, m, d, x, y, z, Cbuf,
            o_lam, o_vel, o_inst, o_valid, o_load, o_fb, o_nmv):
    """Process B new bars (rows of ``rets``, one log return per asset) incrementally.

    ``ctr[0]`` counts the returns pushed so far; ``ring`` (R >= max(W)+1 rows) holds the latest ones.
    Writes every output entry of rows 0..B-1 (NaN / False where undefined).
    """
    B, N = rets.shape
    K = windows.shape[0]
    R = ring.shape[0]
    sqn = 1.0 / math.sqrt(N)
    for b in range(B):
        slot = _ring_push(ring, ctr, rets[b])
        n = ctr[0]
        rn = ring[slot]
        fb = 0
        for k in range(K):
            W = windows[k]
            ro = ring[(n - 1 - W) % R] if n > W else zero_row
            S1k = S1[k]
            Sdk = Sd[k]
            nzk = nz[k]
            for i in range(N):
                a = rn[i]
                o = ro[i]
                S1k[i] = (S1k[i] + a) - o
                Sdk[i] = (Sdk[i] + a * a) - o * o
                nzk[i] += (1 if a != 0.0 else 0) - (1 if o != 0.0 else 0)
                if nzk[i] == 0:
                    S1k[i] = 0.0
                    Sdk[i] = 0.0
            if n < W:  # warm-up: accumulate only
                _rank1_add(S2[k], off, rn, N)
                _reset_zero_rows(S2[k], off, nzk, N)
                o_lam[b, k] = np.nan
                o_vel[b, k] = np.nan
                o_inst[b, k] = np.nan
                o_valid[b, k] = False
                o_nmv[b, k] = 0
                for i in range(N):
                    o_load[b, k, i] = np.nan
                continue
            zc = _scales(S1k, Sdk, nzk, W, m, d, N)
            Uk = U[k]
            if has[k]:
                for i in range(N):
                    x[i] = Uk[i]
            else:  # cold start: the market mode is close to uniform
                for i in range(N):
                    x[i] = sqn
            fro = N + 2.0 * _update_fused(S2[k], off, rn, ro, S1k, m, d, x, y, N)
            _reset_zero_rows(S2[k], off, nzk, N)
            other = W - 1 if W - 1 < N - zc else N - zc
            theta, ok, nmv = _power(S2[k], off, S1k, m, d, x, y, z, fro, N, other + zc - 1)
            if not ok:
                theta = _exact_top(S2[k], off, S1k, m, d, N, Cbuf, y)
                fb |= 1 << k
            _sign_fix(y, N)
            if has[k]:
                dot = 0.0
                for i in range(N):
                    dot += y[i] * Uk[i]
                inst = 1.0 - abs(dot)
                o_vel[b, k] = theta - lam[k]
                o_inst[b, k] = inst if inst > 0.0 else 0.0
            else:
                o_vel[b, k] = np.nan
                o_inst[b, k] = np.nan
            for i in range(N):
                Uk[i] = y[i]
                o_load[b, k, i] = y[i]
            lam[k] = theta
            has[k] = True
            o_lam[b, k] = theta
            o_valid[b, k] = True
            o_nmv[b, k] = nmv
        o_fb[b] = fb


@njit(cache=True)
def _ring_push(ring, ctr, row):
    """Store one bar of returns in the ring; returns its slot. ``ctr[0]`` counts returns pushed."""
    n = ctr[0] + 1
    ctr[0] = n
    slot = (n - 1) % ring.shape[0]
    for i in range(row.shape[0]):
        ring[slot, i] = row[i]
    return slot


@njit(cache=True)
def push_only(rets, ring, ctr):
    """Append returns to the ring without touching the sums (warm-up before a seed)."""
    for b in range(rets.shape[0]):
        _ring_push(ring, ctr, rets[b])


SEED_BLOCK = 16


@njit(cache=True, fastmath=_FM)
def _block_add(S, off, blk, nb, N):
    """S += sum_q blk[q] blk[q]^T (strict upper), q in order 0..nb-1 for every entry.

    Each entry gets exactly the additions a row-by-row loop would make, in the same order (so the
    result does not depend on nb); looping q inside i keeps the triangle row in L1 and streams
    the triangle from L2 once per block instead of once per return.
    """
    for i in range(N - 1):
        row = S[off[i] + i + 1:off[i] + N]
        for q in range(nb):
            ai = blk[q, i]
            bq = blk[q, i + 1:]
            for j in range(N - 1 - i):
                row[j] += ai * bq[j]


@njit(cache=True)
def seed_sums(ring, ctr, windows, off, S1, Sd, S2, nz, aS1, aSd, aS2, anz, blk):
    """Day anchor: recompute every window's sums exactly from the ring contents.

    Sums run newest to oldest over one accumulator that is snapshotted at each window length
    (windows ascending), so they depend only on the returns in the ring, never on history.
    Windows longer than the available history get all of it (still warming up).
    """
    n = ctr[0]
    R = ring.shape[0]
    K = windows.shape[0]
    N = ring.shape[1]
    for i in range(N):
        aS1[i] = 0.0
        aSd[i] = 0.0
        anz[i] = 0
    for p in range(aS2.shape[0]):
        aS2[p] = 0.0
    kmax = windows[K - 1] if windows[K - 1] < n else n
    k = 0
    q = 0
    while q < kmax:
        stop = q + blk.shape[0]
        if stop > kmax:
            stop = kmax
        for kk in range(k, K):  # never let a block straddle a snapshot point
            if q < windows[kk] < stop:
                stop = windows[kk]
                break
        nb = stop - q
        for b in range(nb):
            row = ring[(n - 1 - (q + b)) % R]
            for i in range(N):
                a = row[i]
                blk[b, i] = a
                aS1[i] += a
                aSd[i] += a * a
                if a != 0.0:
                    anz[i] += 1
        _block_add(aS2, off, blk, nb, N)
        q = stop
        while k < K and windows[k] == q:
            S1[k, :] = aS1
            Sd[k, :] = aSd
            S2[k, :] = aS2
            nz[k, :] = anz
            k += 1
    while k < K:
        S1[k, :] = aS1
        Sd[k, :] = aSd
        S2[k, :] = aS2
        nz[k, :] = anz
        k += 1
    for k in range(K):
        nzk = nz[k]
        for i in range(N):
            if nzk[i] == 0:
                S1[k, i] = 0.0
                Sd[k, i] = 0.0
        _reset_zero_rows(S2[k], off, nzk, N)


@njit(cache=True)
def explicit_corr(S2k, off, S1k, Sdk, nzk, W, m, d, N, Cbuf):
    """The full correlation matrix of one window (for the exact LAPACK solve at a seed)."""
    _scales(S1k, Sdk, nzk, W, m, d, N)
    _fill_corr(S2k, off, S1k, m, d, N, Cbuf)


@njit(cache=True)
def sign_fix(u):
    _sign_fix(u, u.shape[0])

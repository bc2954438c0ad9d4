"""The BLUE/GREEN alpha engine as one numba kernel: decisions and the backtest fill model.

Timeline per bar t (the scan of bar t is known at the bar's CLOSE):
  1. orders placed at scan t-1 execute inside bar t: market orders at open[t] ± slippage (taker);
     a limit marketable at open[t] fills there (taker, no slippage), else only if bar t trades through
     the price, at the price (maker); unfilled limits are cancelled;
  2. the open position is checked inside bar t: liquidation (adverse extreme first: conservative),
     then the resting take-profit limit; funding is charged when bar t opens on a funding time;
  3. equity is marked at close[t];
  4. the decision for scan t uses data up to and including bar t only (vel_div[t-1..t], loadings[t],
     closes[t-k..t], vol_ok[t], posture/MC/ACB/Rm at t) and may queue one order for bar t+1.

``decide_*`` functions are shared with the live runtime, which lets Nautilus do the fills.
"""

import numpy as np
from numba import njit

# packed parameter vector indices (see pack_params)
(P_DIR_LONG, P_THR, P_EXT, P_LTHR, P_LEXT, P_VOL_GATE, P_RANK_LB, P_W_LOAD, P_W_MOVE, P_W_FLOW,
 P_MIN_LEV, P_MAX_LEV, P_ABS_MAX, P_STALKER_MAX, P_MIN_ORDER_LEV, P_TP, P_MAX_HOLD, P_EXIT_POSTURE,
 P_CAPITAL, P_MAKER, P_TAKER, P_SLIP, P_LIMIT_OFF, P_MMR, P_FUNDING, P_ACB_ADVERSE, P_ACB_DROP,
 P_FRACTION, P_DIR_SHORT, P_MAX_LOSS, N_PARAMS) = range(31)

APEX, STALKER, TURTLE, HIBERNATE = 0, 1, 2, 3
MC_RED = 2

# decision codes (per scan)
D_NONE, D_ENTER_SHORT, D_ENTER_LONG, D_EXIT_MAX_HOLD, D_EXIT_POSTURE, D_EXIT_HIBERNATE, D_EXIT_ACB = range(7)
DECISION_NAMES = ("none", "enter_short", "enter_long", "exit_max_hold", "exit_posture", "exit_hibernate",
                  "exit_acb_adverse")
# exit reasons (per trade)
R_TP, R_MAX_HOLD, R_POSTURE, R_HIBERNATE, R_LIQUIDATION, R_END, R_ACB, R_STOP = range(1, 9)
EXIT_REASONS = {R_TP: "take_profit", R_MAX_HOLD: "max_hold", R_POSTURE: "posture_change",
                R_HIBERNATE: "hibernate", R_LIQUIDATION: "liquidation", R_END: "end_of_data",
                R_ACB: "acb_adverse_turn", R_STOP: "stop_loss"}
DECISION_TO_REASON = {D_EXIT_MAX_HOLD: R_MAX_HOLD, D_EXIT_POSTURE: R_POSTURE, D_EXIT_HIBERNATE: R_HIBERNATE,
                      D_EXIT_ACB: R_ACB}


def pack_params(cfg, acb_adverse_exit: bool = False, acb_drop: float = 0.2) -> np.ndarray:
    p = np.zeros(N_PARAMS)
    p[P_DIR_LONG] = 1.0 if cfg.long_active else 0.0
    p[P_THR], p[P_EXT] = cfg.entry_threshold, cfg.extreme_threshold
    p[P_LTHR], p[P_LEXT] = cfg.long_entry_threshold, cfg.long_extreme_threshold
    p[P_VOL_GATE] = 1.0 if cfg.vol_gate else 0.0
    p[P_RANK_LB] = cfg.rank_lookback
    p[P_W_LOAD], p[P_W_MOVE], p[P_W_FLOW] = cfg.w_loading, cfg.w_move, cfg.w_flow
    p[P_MIN_LEV], p[P_MAX_LEV], p[P_ABS_MAX] = cfg.min_leverage, cfg.max_leverage, cfg.abs_max_leverage
    p[P_STALKER_MAX], p[P_MIN_ORDER_LEV] = cfg.stalker_max_leverage, cfg.min_order_leverage
    p[P_TP] = cfg.take_profit_bps * 1e-4
    p[P_MAX_HOLD] = cfg.max_hold_bars
    p[P_EXIT_POSTURE] = 1.0 if cfg.exit_on_posture_change else 0.0
    p[P_CAPITAL] = cfg.initial_capital
    p[P_MAKER], p[P_TAKER] = cfg.maker_fee, cfg.taker_fee
    p[P_SLIP] = cfg.slippage_bps * 1e-4
    p[P_LIMIT_OFF] = cfg.limit_offset_bps * 1e-4
    p[P_MMR] = cfg.maintenance_margin
    p[P_FUNDING] = 1.0 if cfg.charge_funding else 0.0
    p[P_ACB_ADVERSE] = 1.0 if acb_adverse_exit else 0.0
    p[P_ACB_DROP] = acb_drop
    p[P_FRACTION] = cfg.capital_fraction
    # the SHORT leg is off only in a LONG-leg validation run (direction long_only)
    p[P_DIR_SHORT] = 0.0 if cfg.direction == "long_only" else 1.0
    p[P_MAX_LOSS] = getattr(cfg, "max_trade_loss", 0.0)
    return p


def unit_leg_weights(T: int) -> np.ndarray:
    """(T, 2) leg weights [short, long] of 1.0: every trade sized by capital_fraction alone (BLUE)."""
    return np.ones((T, 2))


@njit(cache=True)
def signal_side(p, vd_prev, vd):
    """+1/-1 when vel_div crosses its threshold at this scan, else 0 (NaN never signals)."""
    if not (np.isfinite(vd) and np.isfinite(vd_prev)):
        return 0
    if p[P_DIR_SHORT] > 0.0 and vd < -p[P_THR] and vd_prev >= -p[P_THR]:
        return -1
    if p[P_DIR_LONG] > 0.0 and vd > p[P_LTHR] and vd_prev <= p[P_LTHR]:
        return 1
    return 0


@njit(cache=True)
def signal_leverage(p, side, vd, posture, boost, rm):
    """Leverage grows linearly with signal strength, times ACB boost, capped, times Rm (STALKER ≤ 2x)."""
    if side < 0:
        thr, ext, mag = p[P_THR], p[P_EXT], -vd
    else:
        thr, ext, mag = p[P_LTHR], p[P_LEXT], vd
    s = (mag - thr) / (ext - thr)
    s = min(max(s, 0.0), 1.0)
    lev = p[P_MIN_LEV] + (p[P_MAX_LEV] - p[P_MIN_LEV]) * s
    lev = min(lev * boost, p[P_ABS_MAX]) * rm
    if posture == STALKER:
        lev = min(lev, p[P_STALKER_MAX])
    return lev


@njit(cache=True)
def rank_asset(p, side, t, close, tradable, loadings, flow):
    """Best asset to carry the move: eigenvector loading, relative move (z-scored), flow agreement."""
    n = close.shape[1]
    lb = int(p[P_RANK_LB])
    t0 = t - lb if t - lb >= 0 else 0
    # cross-sectional relative move over the lookback
    mean = 0.0
    cnt = 0
    for i in range(n):
        if tradable[t, i]:
            mean += np.log(close[t, i] / close[t0, i])
            cnt += 1
    if cnt == 0:
        return -1
    mean /= cnt
    var = 0.0
    for i in range(n):
        if tradable[t, i]:
            d = np.log(close[t, i] / close[t0, i]) - mean
            var += d * d
    sd = np.sqrt(var / cnt) if cnt > 1 else 0.0
    sqn = np.sqrt(n)
    best, best_score = -1, -np.inf
    for i in range(n):
        if not tradable[t, i] or not np.isfinite(loadings[t, i]):
            continue
        score = p[P_W_LOAD] * loadings[t, i] * sqn
        if sd > 0.0:
            score += p[P_W_MOVE] * side * (np.log(close[t, i] / close[t0, i]) - mean) / sd
        score += p[P_W_FLOW] * side * flow[t, i]
        if score > best_score:  # strict: ties go to the lowest index (deterministic)
            best, best_score = i, score
    return best


@njit(cache=True)
def decide_exit(p, t, entry_bar, entry_posture, entry_boost, posture, boost):
    """Exit decision at scan t for an open position (TP and liquidation rest in the book instead)."""
    if posture == HIBERNATE:
        return D_EXIT_HIBERNATE
    if p[P_EXIT_POSTURE] > 0.0 and posture > entry_posture:
        return D_EXIT_POSTURE
    # 1e-9: a drop of exactly acb_drop up to float rounding is not adverse (as dolphin.acb.adverse_turn)
    if p[P_ACB_ADVERSE] > 0.0 and entry_boost - boost > p[P_ACB_DROP] + 1e-9:
        return D_EXIT_ACB
    if t - entry_bar + 1 >= p[P_MAX_HOLD]:
        return D_EXIT_MAX_HOLD
    return D_NONE


@njit(cache=True)
def entry_allowed(p, vol_ok, posture, mc):
    if posture >= TURTLE or mc == MC_RED:
        return False
    if p[P_VOL_GATE] > 0.0 and not vol_ok:
        return False
    return True


# carried state (one float64 vector; bar indices are relative to the run's first row, so a position
# entered in an earlier run has a negative entry bar)
(S_CAP, S_INPOS, S_ASSET, S_SIDE, S_QTY, S_EPX, S_NOTIONAL, S_LEV, S_EBAR, S_FEES, S_FUND, S_EPOST, S_EBOOST,
 S_CAPB, S_SIG, S_MAKER, S_PEND, S_PASSET, S_PSIDE, S_PLIMIT, S_PNOTIONAL, S_PLEV, S_PPX, S_PSIG, S_PPOST,
 S_PREASON, N_STATE) = range(27)


def initial_state(capital: float) -> np.ndarray:
    st = np.zeros(N_STATE)
    st[S_CAP] = capital
    st[S_ASSET] = st[S_PASSET] = -1
    return st


@njit(cache=True)
def _book_exit(k, t, px, fee_rate, reason, qty, tr_side, tr_entry_px, tr_exit, tr_exit_px, tr_reason, tr_fees,
               tr_funding, tr_pnl):
    """Record trade k's exit at px; returns the change to capital (gross pnl minus the exit fee)."""
    fee = qty * px * fee_rate
    gross = tr_side[k] * qty * (px - tr_entry_px[k])
    tr_exit[k], tr_exit_px[k], tr_reason[k] = t, px, reason
    tr_fees[k] += fee
    tr_pnl[k] = gross - tr_fees[k] - tr_funding[k]
    return gross - fee


@njit(cache=True)
def run_kernel(p, open_, high, low, close, tradable, vel_div, loadings, vol_ok, posture, mc, boost, rm,
               flow, funding, first_bar, state, close_at_end, leg_w):
    """Simulate bars [first_bar, T) from ``state``; earlier rows are history (ranking, crossings).

    ``leg_w`` (T, 2): the capital arbiter's weight of the SHORT (column 0) and LONG (column 1) leg at each
    scan; an entry's isolated margin is capital x capital_fraction x the weight of its leg (1.0 = BLUE).

    Returns the trade arrays (closed trades, plus the still-open one when ``close_at_end`` is False is
    NOT included: it lives in the returned state), per-bar outputs and the final state."""
    T, N = close.shape
    max_tr = T + 2  # generous bound (at most one fill per bar, +1 carried): numba does not bounds-check
    tr_entry = np.full(max_tr, -1, np.int64)
    tr_exit = np.full(max_tr, -1, np.int64)
    tr_asset = np.full(max_tr, -1, np.int64)
    tr_side = np.zeros(max_tr, np.int64)
    tr_notional = np.zeros(max_tr)
    tr_lev = np.zeros(max_tr)
    tr_entry_px = np.zeros(max_tr)
    tr_exit_px = np.zeros(max_tr)
    tr_fees = np.zeros(max_tr)
    tr_funding = np.zeros(max_tr)
    tr_pnl = np.zeros(max_tr)
    tr_reason = np.zeros(max_tr, np.int64)
    tr_cap_before = np.zeros(max_tr)
    tr_signal = np.zeros(max_tr)
    tr_posture = np.zeros(max_tr, np.int64)
    tr_maker_entry = np.zeros(max_tr, np.bool_)

    equity = np.full(T, state[S_CAP])
    pos_asset = np.full(T, -1, np.int64)
    decision = np.zeros(T, np.int64)
    dec_asset = np.full(T, -1, np.int64)
    dec_lev = np.zeros(T)

    capital = state[S_CAP]
    n_tr = 0
    in_pos = state[S_INPOS] > 0.0
    qty = state[S_QTY]
    entry_boost = state[S_EBOOST]
    if in_pos:  # the carried position occupies slot 0
        n_tr = 1
        tr_entry[0], tr_asset[0], tr_side[0] = int(state[S_EBAR]), int(state[S_ASSET]), int(state[S_SIDE])
        tr_notional[0], tr_lev[0], tr_entry_px[0] = state[S_NOTIONAL], state[S_LEV], state[S_EPX]
        tr_fees[0], tr_funding[0] = state[S_FEES], state[S_FUND]
        tr_cap_before[0], tr_signal[0] = state[S_CAPB], state[S_SIG]
        tr_posture[0], tr_maker_entry[0] = int(state[S_EPOST]), state[S_MAKER] > 0.0
    # pending order placed at the previous scan: 0 none, 1 entry, 2 exit
    pend = int(state[S_PEND])
    pend_asset, pend_side, pend_limit = int(state[S_PASSET]), int(state[S_PSIDE]), state[S_PLIMIT] > 0.0
    pend_notional, pend_lev, pend_px = state[S_PNOTIONAL], state[S_PLEV], state[S_PPX]
    pend_signal, pend_posture, pend_reason = state[S_PSIG], int(state[S_PPOST]), int(state[S_PREASON])
    pend_boost = state[S_EBOOST] if pend == 1 else 1.0

    for t in range(first_bar, T):
        # ---- 1. orders from scan t-1 execute in bar t ----
        if pend == 1:
            a = pend_asset
            filled = False
            px = 0.0
            if pend_limit:
                # as the venue (Nautilus) does: a limit already marketable when it arrives at the open
                # (sell at/below the open, buy at/above it) fills at once at the open as a TAKER, without
                # slippage; otherwise it rests and fills at its price only if the bar trades through it (maker)
                lim = pend_px
                o = open_[t, a]
                fee_rate = p[P_MAKER]
                if (pend_side < 0 and o >= lim) or (pend_side > 0 and o <= lim):
                    px = o
                    filled = True
                    fee_rate = p[P_TAKER]
                elif pend_side < 0 and high[t, a] > lim:
                    px = lim
                    filled = True
                elif pend_side > 0 and low[t, a] < lim:
                    px = lim
                    filled = True
            else:
                px = open_[t, a] * (1.0 + pend_side * p[P_SLIP])
                filled = True
                fee_rate = p[P_TAKER]
            if filled:
                k = n_tr
                n_tr += 1
                in_pos = True
                qty = pend_notional / px
                fee = pend_notional * fee_rate
                capital -= fee
                tr_entry[k], tr_asset[k], tr_side[k] = t, a, pend_side
                tr_notional[k], tr_lev[k], tr_entry_px[k] = pend_notional, pend_lev, px
                tr_fees[k] = fee
                tr_cap_before[k] = capital + fee
                tr_signal[k], tr_posture[k] = pend_signal, pend_posture
                tr_maker_entry[k] = pend_limit
                entry_boost = pend_boost
        elif pend == 2 and in_pos:
            k = n_tr - 1
            px = open_[t, tr_asset[k]] * (1.0 - tr_side[k] * p[P_SLIP])
            capital += _book_exit(k, t, px, p[P_TAKER], pend_reason, qty, tr_side, tr_entry_px, tr_exit,
                                  tr_exit_px, tr_reason, tr_fees, tr_funding, tr_pnl)
            in_pos = False
        pend = 0

        # ---- 2. intrabar: funding, liquidation, take-profit ----
        if in_pos:
            k = n_tr - 1
            a, s = tr_asset[k], tr_side[k]
            e_px = tr_entry_px[k]
            if p[P_FUNDING] > 0.0 and funding[t, a] != 0.0 and tr_entry[k] < t:
                f = s * funding[t, a] * qty * open_[t, a]  # longs pay positive rates, shorts receive
                tr_funding[k] += f
                capital -= f
            lev = tr_lev[k]
            mmr = p[P_MMR]
            if s < 0:
                liq = e_px * (1.0 + 1.0 / lev) / (1.0 + mmr)
                hit_liq = high[t, a] >= liq
                tp = e_px * (1.0 - p[P_TP])
                hit_tp = low[t, a] < tp
            else:
                liq = e_px * (1.0 - 1.0 / lev) / (1.0 - mmr)
                hit_liq = low[t, a] <= liq
                tp = e_px * (1.0 + p[P_TP])
                hit_tp = high[t, a] > tp
            # per-trade loss bound: a stop-market where the price move costs max_trade_loss of the capital the
            # trade was opened with; it rests below the liquidation price, so a path from the open reaches it
            # first, unless the bar opens beyond the liquidation price (then liquidation, conservatively)
            hit_stop = False
            stop = 0.0
            if p[P_MAX_LOSS] > 0.0:
                dist = p[P_MAX_LOSS] * tr_cap_before[k] / qty
                if s < 0:
                    stop = e_px + dist
                    hit_stop = stop < liq and high[t, a] >= stop and open_[t, a] < liq
                else:
                    stop = e_px - dist
                    hit_stop = stop > liq and low[t, a] <= stop and open_[t, a] > liq
            if hit_stop:
                # gap through the stop: fills at the (worse) open; then taker slippage against us
                if s < 0:
                    px = max(stop, open_[t, a]) if t > tr_entry[k] else stop
                else:
                    px = min(stop, open_[t, a]) if t > tr_entry[k] else stop
                px = px * (1.0 - s * p[P_SLIP])
                capital += _book_exit(k, t, px, p[P_TAKER], R_STOP, qty, tr_side, tr_entry_px, tr_exit,
                                      tr_exit_px, tr_reason, tr_fees, tr_funding, tr_pnl)
                in_pos = False
            elif hit_liq:
                # isolated margin is lost entirely (remaining maintenance margin goes to the insurance fund)
                margin = tr_notional[k] / lev
                capital -= margin
                tr_exit[k], tr_exit_px[k], tr_reason[k] = t, liq, R_LIQUIDATION
                tr_pnl[k] = -margin - tr_fees[k] - tr_funding[k]
                in_pos = False
            elif hit_tp:
                # resting limit: a gap through the price fills at the (better) open
                if s < 0:
                    px = min(tp, open_[t, a]) if t > tr_entry[k] else tp
                else:
                    px = max(tp, open_[t, a]) if t > tr_entry[k] else tp
                capital += _book_exit(k, t, px, p[P_MAKER], R_TP, qty, tr_side, tr_entry_px, tr_exit,
                                      tr_exit_px, tr_reason, tr_fees, tr_funding, tr_pnl)
                in_pos = False

        # ---- 3. mark to market at the close ----
        if in_pos:
            k = n_tr - 1
            equity[t] = capital + tr_side[k] * qty * (close[t, tr_asset[k]] - tr_entry_px[k])
            pos_asset[t] = tr_asset[k]
        else:
            equity[t] = capital

        # ---- 4. decision for scan t (made at the last bar too: live, that is the one that trades;
        #         in a backtest an order queued at the very last bar never executes) ----
        if in_pos:
            k = n_tr - 1
            d = decide_exit(p, t, tr_entry[k], tr_posture[k], entry_boost, posture[t], boost[t])
            if d != D_NONE:
                decision[t] = d
                dec_asset[t] = tr_asset[k]
                pend = 2
                if d == D_EXIT_MAX_HOLD:
                    pend_reason = R_MAX_HOLD
                elif d == D_EXIT_POSTURE:
                    pend_reason = R_POSTURE
                elif d == D_EXIT_HIBERNATE:
                    pend_reason = R_HIBERNATE
                else:
                    pend_reason = R_ACB
            continue
        if t < 1 or not entry_allowed(p, vol_ok[t], posture[t], mc[t]):
            continue
        side = signal_side(p, vel_div[t - 1], vel_div[t])
        if side == 0:
            continue
        lev = signal_leverage(p, side, vel_div[t], posture[t], boost[t], rm[t])
        if lev < p[P_MIN_ORDER_LEV]:
            continue
        a = rank_asset(p, side, t, close, tradable, loadings, flow)
        if a < 0:
            continue
        decision[t] = D_ENTER_SHORT if side < 0 else D_ENTER_LONG
        dec_asset[t] = a
        dec_lev[t] = lev
        pend = 1
        pend_asset, pend_side = a, side
        pend_lev = lev
        # isolated margin = fraction of capital, times the arbiter's weight of the signal's leg
        pend_notional = capital * p[P_FRACTION] * leg_w[t, 0 if side < 0 else 1] * lev
        pend_signal = vel_div[t]
        pend_posture = posture[t]
        pend_boost = boost[t]
        pend_limit = posture[t] == STALKER
        pend_px = close[t, a] * (1.0 - side * p[P_LIMIT_OFF])

    n_closed = n_tr
    if in_pos and close_at_end:  # close what is still open at the last close (taker)
        k = n_tr - 1
        px = close[T - 1, tr_asset[k]] * (1.0 - tr_side[k] * p[P_SLIP])
        capital += _book_exit(k, T - 1, px, p[P_TAKER], R_END, qty, tr_side, tr_entry_px, tr_exit, tr_exit_px,
                              tr_reason, tr_fees, tr_funding, tr_pnl)
        equity[T - 1] = capital
        in_pos = False
        pend = 0
    elif in_pos:
        n_closed = n_tr - 1

    out_state = np.zeros(N_STATE)
    out_state[S_CAP] = capital
    out_state[S_ASSET] = -1
    out_state[S_PASSET] = -1
    if in_pos:
        k = n_tr - 1
        out_state[S_INPOS] = 1.0
        out_state[S_ASSET], out_state[S_SIDE], out_state[S_QTY] = tr_asset[k], tr_side[k], qty
        out_state[S_EPX], out_state[S_NOTIONAL], out_state[S_LEV] = tr_entry_px[k], tr_notional[k], tr_lev[k]
        out_state[S_EBAR], out_state[S_FEES], out_state[S_FUND] = tr_entry[k], tr_fees[k], tr_funding[k]
        out_state[S_EPOST], out_state[S_EBOOST], out_state[S_CAPB] = tr_posture[k], entry_boost, tr_cap_before[k]
        out_state[S_SIG], out_state[S_MAKER] = tr_signal[k], 1.0 if tr_maker_entry[k] else 0.0
    if pend != 0:
        out_state[S_PEND], out_state[S_PASSET], out_state[S_PSIDE] = pend, pend_asset, pend_side
        out_state[S_PLIMIT], out_state[S_PNOTIONAL], out_state[S_PLEV] = 1.0 if pend_limit else 0.0, pend_notional, pend_lev
        out_state[S_PPX], out_state[S_PSIG], out_state[S_PPOST] = pend_px, pend_signal, pend_posture
        out_state[S_PREASON] = pend_reason
        if pend == 1:
            out_state[S_EBOOST] = pend_boost

    return (n_closed, tr_entry, tr_exit, tr_asset, tr_side, tr_notional, tr_lev, tr_entry_px, tr_exit_px,
            tr_fees, tr_funding, tr_pnl, tr_reason, tr_cap_before, tr_signal, tr_posture, tr_maker_entry,
            equity, pos_asset, decision, dec_asset, dec_lev, out_state)

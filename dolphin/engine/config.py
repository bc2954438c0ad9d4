"""Engine configuration: one typed object, YAML-loadable, with BLUE and GREEN presets.

Windows and holding times are in BARS (a 1h data set gets the same numbers of bars as a 5m one).
Thresholds apply to ``vel_div / N`` (the velocity divergence of λ/N, N = assets in the universe), so
the same numbers carry across universes of different size; they were chosen by ``dolphin calibrate``
on the in-sample part of the development set only (see ``dolphin/engine/calibrate.py`` and the README
section "Calibration").
"""

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import yaml

from dolphin.scanner.core import WINDOWS

# Posture codes shared by engine, survival stack and runtime.
APEX, STALKER, TURTLE, HIBERNATE = 0, 1, 2, 3
POSTURE_NAMES = ("APEX", "STALKER", "TURTLE", "HIBERNATE")
# MC forewarner status codes.
GREEN, ORANGE, RED = 0, 1, 2
MC_NAMES = ("GREEN", "ORANGE", "RED")


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class EngineConfig:
    name: str = "BLUE"
    # entry/extreme thresholds, w_move and max_hold_bars: `dolphin calibrate --data spot-5m-2024`
    # (in-sample = first 150 of 250 days, objective in-sample daily Sharpe at >= 0.5 trades/day), and
    # capital_fraction: largest with in-sample max drawdown < 20 %.
    # --- signal ---
    direction: str = "short_only"  # "short_only" | "bidirectional" | "long_only" (LONG-leg validation runs)
    entry_threshold: float = 0.033478  # SHORT when vel_div/N crosses below -entry_threshold
    extreme_threshold: float = 0.083956  # full signal strength at -extreme_threshold
    long_entry_threshold: float = 0.02  # LONG when vel_div/N crosses above +long_entry_threshold
    long_extreme_threshold: float = 0.06
    long_enabled: bool = False  # GREEN's LONG leg stays off until validated on multi-year data
    # --- capital arbiter (dolphin/engine/arbiter.py): per-day leg weights {short, long}, used when LONG is active ---
    arbiter: str = "regime_weighted"  # "equal_weight" | "regime_weighted"
    arbiter_trend_bars: int = 288  # bars of BTC trend (and of mean vel_div) before the day starts
    arbiter_tilt: float = 0.4  # regime_weighted: w_long = 0.5 + tilt x score, score in [-1, 1]
    # --- vol regime gate: realised vol of the equal-weight market return above its rolling percentile ---
    vol_gate: bool = True
    vol_window: int = 50  # bars of market returns in the realised-vol estimate
    vol_lookback: int = 2016  # bars of past realised vol forming the percentile (7 days at 5m)
    vol_percentile: float = 60.0
    # --- asset ranking: score = w_loading*loading + w_move*momentum_z + w_flow*flow_agreement ---
    rank_window: int = 50  # which scanner window's leading eigenvector supplies the loadings
    rank_lookback: int = 12  # bars of relative move
    w_loading: float = 1.0
    w_move: float = 1.0  # >0 momentum (asset already moving the signal's way), <0 reversal
    w_flow: float = 0.5
    # --- sizing: isolated margin = capital_fraction x capital; notional = margin x leverage ---
    capital_fraction: float = 0.25
    min_leverage: float = 1.0
    max_leverage: float = 6.0  # at full signal strength, before ACB boost and Rm
    abs_max_leverage: float = 6.0  # hard cap after every multiplier
    stalker_max_leverage: float = 2.0
    min_order_leverage: float = 0.05  # below this (after Rm) no order is sent
    # --- exits ---
    take_profit_bps: float = 95.0
    max_hold_bars: int = 144
    exit_on_posture_change: bool = True
    # per-trade loss bound: a protective stop-market at the price where the trade loses this fraction of the
    # capital it was opened with (price move only; fees on top); 0 = off. Liquidation stays modelled behind
    # it (a bar opening beyond the liquidation price still liquidates). Default decided by walk-forward
    # validation on the three sets in ../shared/data (README "Per-trade loss bound").
    max_trade_loss: float = 0.0
    # survival stack Cat5 (risk-layer backtests): drawdown from the highest equity of the last N days
    # (DESIGN.md); 0 = all-time peak (the old rule, for comparison)
    cat5_peak_days: float = 30.0
    # --- costs and fills ---
    initial_capital: float = 25_000.0
    maker_fee: float = 0.0002  # Binance USDT-M defaults
    taker_fee: float = 0.0005
    slippage_bps: float = 2.0  # market orders, against us
    limit_offset_bps: float = 0.0  # STALKER entry limit price offset from the signal bar's close
    maintenance_margin: float = 0.004  # liquidation model (isolated margin)
    charge_funding: bool = True  # only where funding data exists for the set

    def __post_init__(self):
        if self.direction not in ("short_only", "bidirectional", "long_only"):
            raise ConfigError(f"direction must be short_only, bidirectional or long_only, got {self.direction!r}")
        if self.arbiter not in ("equal_weight", "regime_weighted"):
            raise ConfigError(f"arbiter must be equal_weight or regime_weighted, got {self.arbiter!r}")
        if not 0 <= self.arbiter_tilt < 0.5:
            raise ConfigError(f"arbiter_tilt must be in [0, 0.5) so both leg weights stay > 0, got {self.arbiter_tilt}")
        if not self.arbiter_trend_bars >= 2:
            raise ConfigError(f"arbiter_trend_bars must be >= 2, got {self.arbiter_trend_bars}")
        if not (isinstance(self.cat5_peak_days, (int, float)) and self.cat5_peak_days >= 0):
            raise ConfigError(f"cat5_peak_days must be >= 0 (0 = all-time peak), got {self.cat5_peak_days!r}")
        if not (isinstance(self.max_trade_loss, (int, float)) and 0.0 <= self.max_trade_loss < 1.0):
            raise ConfigError(f"max_trade_loss must be a fraction of capital in [0, 1) (0 = off), got "
                              f"{self.max_trade_loss!r}")
        if self.rank_window not in WINDOWS:
            raise ConfigError(f"rank_window must be one of {WINDOWS}, got {self.rank_window}")
        for f in ("entry_threshold", "long_entry_threshold", "initial_capital", "max_hold_bars",
                  "vol_window", "vol_lookback", "rank_lookback"):
            if not getattr(self, f) > 0:
                raise ConfigError(f"{f} must be > 0, got {getattr(self, f)}")
        if self.extreme_threshold <= self.entry_threshold:
            raise ConfigError("extreme_threshold must exceed entry_threshold")
        if self.long_extreme_threshold <= self.long_entry_threshold:
            raise ConfigError("long_extreme_threshold must exceed long_entry_threshold")
        if not 0 < self.capital_fraction <= 1:
            raise ConfigError("capital_fraction must be in (0, 1]")
        if not 0 < self.min_leverage <= self.max_leverage <= self.abs_max_leverage:
            raise ConfigError("need 0 < min_leverage <= max_leverage <= abs_max_leverage")
        if not 0 <= self.vol_percentile <= 100:
            raise ConfigError("vol_percentile must be in [0, 100]")

    @property
    def long_active(self) -> bool:
        return self.direction in ("bidirectional", "long_only") and self.long_enabled

    @property
    def arbitrated(self) -> bool:
        """Both legs trade: the capital arbiter splits the capital between them."""
        return self.direction == "bidirectional" and self.long_enabled

    def with_(self, **kw) -> "EngineConfig":
        return replace(self, **kw)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_yaml(self, path: Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_dict(cls, d: dict, base: "EngineConfig | None" = None) -> "EngineConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown config key(s): {', '.join(unknown)}")
        return replace(base or cls(), **d)


def load_config(path_or_preset: str | Path | None) -> EngineConfig:
    """A preset name ('blue', 'green') or a YAML file (optionally ``preset: green`` plus overrides)."""
    if path_or_preset is None:
        return BLUE
    key = str(path_or_preset).lower()
    if key in PRESETS:
        return PRESETS[key]
    p = Path(path_or_preset)
    if not p.is_file():
        raise ConfigError(f"config {path_or_preset!r}: not a preset ({', '.join(PRESETS)}) nor a file")
    try:
        d = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: invalid YAML: {' '.join(str(e).split())}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read: {e}") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{p}: expected a mapping of config keys")
    base = preset_named(d.pop("preset", "blue"), str(p))
    from dolphin.engine.configcheck import ConfigValueError, config_bar_ms

    try:
        bar_ms = config_bar_ms(d.pop("bar", None), str(p))  # the bar size its bar counts are for (5m)
    except ConfigValueError as e:
        raise ConfigError(str(e)) from None
    return with_overrides(base, d, str(p), bar_ms=bar_ms)


def preset_named(preset, where: str) -> EngineConfig:
    """The preset called ``preset`` (any case); ConfigError naming ``where``, the known presets and the closest."""
    base = PRESETS.get(str(preset).lower())
    if base is None:
        import difflib

        close = difflib.get_close_matches(str(preset).lower(), list(PRESETS), n=1)
        raise ConfigError(f"{where}: preset: unknown preset {preset!r} (known: {', '.join(PRESETS)})"
                          + (f"; did you mean {close[0]!r}?" if close else ""))
    return base


def with_overrides(base: EngineConfig, overrides: dict, where: str, *, bar_ms: int | None = None) -> EngineConfig:
    """``base`` with ``overrides`` (EngineConfig fields), each checked and typed by ``dolphin.engine.configcheck``
    (types, ranges, unknown keys with the closest known key suggested; durations such as ``12h`` converted with
    ``bar_ms``, default the presets' 5m), then the dataclass's own rules. ConfigError naming ``where`` and the key."""
    from dolphin.engine.configcheck import PRESET_BAR_MS, ConfigValueError, validate_mapping

    try:
        return EngineConfig.from_dict(validate_mapping(EngineConfig, overrides, where,
                                                       bar_ms=PRESET_BAR_MS if bar_ms is None else bar_ms), base)
    except ConfigValueError as e:
        raise ConfigError(str(e)) from None
    except (ConfigError, TypeError) as e:
        raise ConfigError(f"{where}: {e}") from None


def preset_and_overrides(cfg: EngineConfig) -> tuple[str, dict]:
    """The preset ``cfg`` differs least from (on a tie the one named like it) and the fields that differ:
    ``with_overrides(PRESETS[preset], overrides, ...)`` gives ``cfg`` back."""
    def diff(base):
        return {f.name: getattr(cfg, f.name) for f in fields(cfg) if getattr(cfg, f.name) != getattr(base, f.name)}

    best = min(PRESETS, key=lambda k: (len(diff(PRESETS[k])), k != str(cfg.name).lower()))
    return best, diff(PRESETS[best])


BLUE = EngineConfig()
GREEN_CFG = EngineConfig(name="GREEN", direction="bidirectional", long_enabled=False)
PRESETS = {"blue": BLUE, "green": GREEN_CFG}


_load_config_unchecked = load_config


def load_config(path_or_preset: str | Path | None) -> EngineConfig:  # noqa: F811 (the gated loader)
    """A preset name ('blue', 'green') or a YAML file, refused (``LongGateError``) when its LONG leg is active
    without a passing LONG validation record for its exact LONG parameters (``dolphin.research.long_gate``):
    every loader (CLI, Dagster, runtime) goes through here, so none can trade an unvalidated LONG leg."""
    cfg = _load_config_unchecked(path_or_preset)
    from dolphin.research.long_gate import require_long_validation

    require_long_validation(cfg)
    return cfg

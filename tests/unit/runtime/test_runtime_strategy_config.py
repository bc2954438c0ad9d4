"""The runtime strategy's typed config (runtime.strategy.DolphinStrategyConfig): an engine preset plus overrides,
checked at construction by the engine's config rules (dolphin.engine.configcheck) and stored typed."""

import msgspec
import pytest

from dolphin.engine.config import BLUE, GREEN_CFG, ConfigError, load_config
from runtime.strategy import DolphinStrategyConfig

SYMS = ("BTCUSDT", "ETHUSDT")


@pytest.mark.parametrize("cfg,preset,overrides", [
    (BLUE, "blue", {}),
    (GREEN_CFG, "green", {}),
    (GREEN_CFG.with_(long_enabled=True), "green", {"long_enabled": True}),
    (BLUE.with_(name="BLUE-X", max_hold_bars=400, w_move=-0.5), "blue",
     {"name": "BLUE-X", "max_hold_bars": 400, "w_move": -0.5}),
])
def test_an_engine_config_is_its_preset_plus_the_fields_that_differ(cfg, preset, overrides):
    c = DolphinStrategyConfig.for_engine(cfg, symbols=SYMS, bar_timeout_ms=20_000)
    assert (c.preset, c.overrides, c.bar_timeout_ms) == (preset, overrides, 20_000)
    assert c.engine_config() == cfg
    back = DolphinStrategyConfig.parse(c.json())  # Nautilus's serialised form (importable configs, logs)
    assert back == c and back.engine_config() == cfg


def test_a_config_file_loaded_by_the_cli_survives_as_preset_plus_overrides(tmp_path):
    f = tmp_path / "g.yaml"
    f.write_text("preset: green\nmax_hold_bars: 6h\nmaker_fee: 1e-9\n")
    cfg = load_config(f)
    c = DolphinStrategyConfig.for_engine(cfg, symbols=SYMS)
    assert (c.preset, c.overrides) == ("green", {"max_hold_bars": 72, "maker_fee": 1e-9})
    assert c.engine_config() == cfg


def test_overrides_are_stored_typed():
    c = DolphinStrategyConfig(symbols=SYMS, bar_ms=3_600_000, preset="GREEN",
                              overrides={"maker_fee": "1e-9", "vol_window": 36.0, "max_hold_bars": "12h"})
    assert c.overrides == {"maker_fee": 1e-9, "vol_window": 36, "max_hold_bars": 12}
    assert isinstance(c.overrides["vol_window"], int) and isinstance(c.overrides["maker_fee"], float)
    assert c.engine_config() == GREEN_CFG.with_(maker_fee=1e-9, vol_window=36, max_hold_bars=12)


@pytest.mark.parametrize("kw,error", [
    ({"overrides": {"take_profit_bp": 80.0}},
     "DolphinStrategyConfig overrides (preset blue): take_profit_bp: unknown config key; did you mean "
     "'take_profit_bps'?"),
    ({"overrides": {"taker_fee": -0.0005}}, "taker_fee: must be >= 0 (got -0.0005)"),
    ({"overrides": {"vol_gate": "false"}}, "vol_gate: must be true or false"),
    ({"overrides": {"max_hold_bars": 12.5}}, "max_hold_bars: must be a whole number of bars (got 12.5)"),
    ({"overrides": {"max_hold_bars": "7m"}}, "max_hold_bars: 7m is not a whole number of 5m bars"),
    ({"overrides": {"entry_threshold": "abc"}}, "entry_threshold: must be a number (got 'abc')"),
    ({"overrides": {"rank_window": 7}}, "rank_window must be one of"),
    ({"overrides": {"entry_threshold": 0.1}}, "extreme_threshold must exceed entry_threshold"),
    ({"preset": "gren"}, "DolphinStrategyConfig: preset: unknown preset 'gren' (known: blue, green); did you mean "
                         "'green'?"),
    ({"overrides": [("taker_fee", 0.001)]}, "overrides: must be a mapping of EngineConfig fields"),
])
def test_bad_settings_are_refused_at_construction_naming_the_key(kw, error):
    with pytest.raises(ConfigError) as e:
        DolphinStrategyConfig(symbols=SYMS, **kw)
    assert error in str(e.value) and "\n" not in str(e.value)


def test_bad_settings_in_serialised_form_are_refused_too():
    with pytest.raises(msgspec.ValidationError, match="taker_fe: unknown config key; did you mean 'taker_fee'"):
        DolphinStrategyConfig.parse('{"symbols": ["BTCUSDT"], "overrides": {"taker_fe": 0.001}}')
    with pytest.raises(msgspec.ValidationError, match="Expected `str`"):
        DolphinStrategyConfig.parse('{"symbols": ["BTCUSDT"], "preset": 3}')

"""Validation of an engine config read from a file: one line naming the file, the key and the rule.

The schema is derived from the config dataclass's fields (their annotations), so a field someone adds
later is checked by the same rules without touching this module:

- ``bool`` fields take YAML booleans only (``"yes"`` / ``"false"`` as strings are refused: a quoted
  ``"false"`` would be truthy).
- ``int`` fields take whole numbers (``144`` or ``144.0``); ``12.5`` bars is refused.
- ``float`` fields take numbers; a string holding a number is accepted because YAML 1.1 (PyYAML) reads
  ``1e-9`` (no dot) as a string -- any other string is refused. NaN / infinity are refused.
- ``str`` fields take strings.
- Ranges: every number must be >= 0 (fees, slippage, take-profit, offsets, capital...), except the
  ranking weights (``w_*``); bar counts (``int`` fields) must be >= 1. The dataclass's own
  ``__post_init__`` rules (thresholds ordered, leverage caps, enums) then run, and their message is
  prefixed with the file.
- Unknown keys are refused, with the closest known key suggested.

Bar sizes: bar counts (``int`` fields) mean nothing without the bar size. A config file may say which bar
size its counts are for (``bar: 1h``; default ``5m``, the bar size the presets were calibrated on), and may
give the durations (``int`` fields named ``*_bars`` / ``*_lookback``) in time units (``max_hold_bars: 12h``,
``vol_lookback: 7d``), converted with that bar size. `dolphin backtest` / `calibrate` refuse a config whose
bar size differs from the data's (``check_bar_size``): a 5m preset on 1h data would silently turn a 12 h
maximum hold into 6 days and a 7-day vol lookback into 84 days.
"""

import difflib
import math
import typing
from dataclasses import MISSING, fields

SIGNED_PREFIXES = ("w_",)  # ranking weights: a negative weight is a documented choice (reversal)
DURATION_SUFFIXES = ("_bars", "_lookback")  # int fields that are durations (time units allowed in a file)
PRESET_BAR_MS = 300_000  # the presets' bar counts were chosen on 5m bars (spot-5m-2024)


class ConfigValueError(ValueError):
    """One user-facing line: ``<file>: <key>: <rule> (got <value>)``."""


def _field_types(cls) -> dict:
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, f.type) for f in fields(cls)}


def _fail(where: str, key: str, rule: str, value) -> None:
    raise ConfigValueError(f"{where}: {key}: {rule} (got {value!r})")


def config_bar_ms(value, where: str) -> int:
    """The ``bar:`` key of a config file (None: the presets' 5m)."""
    from dolphin.timeutil import parse_bar

    if value is None:
        return PRESET_BAR_MS
    try:
        ms = parse_bar(value)
    except ValueError:
        ms = 0
    if ms <= 0:
        _fail(where, "bar", "must be a bar size such as 5m, 1h or 1d", value)
    return ms


def _duration_bars(where, key, text: str, bar_ms: int):
    from dolphin.timeutil import bar_label, parse_bar

    try:
        ms = parse_bar(text)
    except ValueError:
        return None
    if str(text).strip().isdigit():
        return None  # a plain number is a count
    if ms % bar_ms:
        _fail(where, key, f"{text} is not a whole number of {bar_label(bar_ms)} bars", text)
    return ms // bar_ms


def coerce_value(where: str, key: str, typ, value, bar_ms: int = PRESET_BAR_MS):
    """``value`` as the field's type, or ConfigValueError naming file, key and rule."""
    origin = typing.get_origin(typ)
    if origin is typing.Union:  # Optional[X]: None allowed
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value is None:
            return None
        typ = args[0] if len(args) == 1 else typ
    if typ is bool:
        if isinstance(value, bool):
            return value
        _fail(where, key, "must be true or false (a YAML boolean, not a string or number)", value)
    if typ is int:
        if isinstance(value, bool):
            _fail(where, key, "must be a whole number, not a boolean", value)
        if isinstance(value, str) and key.endswith(DURATION_SUFFIXES):
            bars = _duration_bars(where, key, value, bar_ms)
            value = bars if bars is not None else value
        if isinstance(value, str):
            value = _number_from_string(where, key, value)
        if isinstance(value, float):
            if not math.isfinite(value) or value != math.floor(value):
                _fail(where, key, "must be a whole number of bars", value)
            value = int(value)
        if not isinstance(value, int):
            _fail(where, key, "must be a whole number", value)
        if value < 1:
            _fail(where, key, "must be >= 1", value)
        return value
    if typ is float:
        if isinstance(value, bool):
            _fail(where, key, "must be a number, not a boolean", value)
        if isinstance(value, str):
            value = _number_from_string(where, key, value)
        if not isinstance(value, (int, float)):
            _fail(where, key, "must be a number", value)
        value = float(value)
        if not math.isfinite(value):
            _fail(where, key, "must be a finite number", value)
        if value < 0 and not key.startswith(SIGNED_PREFIXES):
            _fail(where, key, "must be >= 0", value)
        return value
    if typ is str:
        if not isinstance(value, str):
            _fail(where, key, "must be a string", value)
        return value
    return value  # a type this module does not know: left to the dataclass


def _number_from_string(where, key, value: str):
    # YAML 1.1 reads 1e-9 as a string; a number written that way is still a number
    try:
        return float(value.strip())
    except ValueError:
        _fail(where, key, "must be a number", value)


def validate_mapping(cls, d: dict, where: str, *, bar_ms: int = PRESET_BAR_MS) -> dict:
    """The mapping's values coerced to the dataclass's field types; unknown keys refused."""
    types = _field_types(cls)
    out = {}
    for key, value in d.items():
        if not isinstance(key, str) or key not in types:
            close = difflib.get_close_matches(str(key), list(types), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigValueError(f"{where}: {key}: unknown config key{hint}")
        out[key] = coerce_value(where, key, types[key], value, bar_ms)
    return out


def declared_bar_ms(path_or_preset) -> int:
    """The bar size a config's bar counts are for: a preset's 5m, or a file's ``bar:`` key."""
    from pathlib import Path

    import yaml

    if path_or_preset is None or not Path(str(path_or_preset)).is_file():
        return PRESET_BAR_MS
    try:
        d = yaml.safe_load(Path(path_or_preset).read_text()) or {}
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return PRESET_BAR_MS  # load_config reports it
    return config_bar_ms(d.get("bar") if isinstance(d, dict) else None, str(path_or_preset))


def check_bar_size(cfg, config_name, cfg_bar_ms: int, data_bar_ms: int, data_name: str) -> None:
    """ConfigValueError when the config's bar counts were written for another bar size than the data's."""
    from dolphin.timeutil import bar_label

    if int(cfg_bar_ms) == int(data_bar_ms):
        return
    types = _field_types(type(cfg))
    shown = []
    for name in (n for n, t in types.items() if t is int and n.endswith(DURATION_SUFFIXES)):
        n = int(getattr(cfg, name))
        shown.append(f"{name} {n} = {_span(n * cfg_bar_ms)} meant, {_span(n * data_bar_ms)} on this data")
    raise ConfigValueError(
        f"config {config_name or 'blue'}: its bar counts are for {bar_label(cfg_bar_ms)} bars, {data_name} has "
        f"{bar_label(data_bar_ms)} bars ({'; '.join(shown)}). Use a config file with `bar: {bar_label(data_bar_ms)}` "
        f"and counts for it, or durations such as `max_hold_bars: 12h` (converted with `bar`)")


def _span(ms: int) -> str:
    d, rem = divmod(int(ms), 86_400_000)
    h, rem = divmod(rem, 3_600_000)
    m = rem // 60_000
    return f"{d}d {h:02d}h" if d else (f"{h}h {m:02d}m" if h else f"{m}m")


def defaults_are_valid(cls) -> list:
    """Fields whose default does not pass the rules above (a check for new fields, used by the tests)."""
    bad = []
    for f in fields(cls):
        if f.default is MISSING:
            continue
        try:
            coerce_value("defaults", f.name, _field_types(cls)[f.name], f.default)
        except ConfigValueError as e:
            bad.append(str(e))
    return bad

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
"""

import difflib
import math
import typing
from dataclasses import MISSING, fields

SIGNED_PREFIXES = ("w_",)  # ranking weights: a negative weight is a documented choice (reversal)


class ConfigValueError(ValueError):
    """One user-facing line: ``<file>: <key>: <rule> (got <value>)``."""


def _field_types(cls) -> dict:
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, f.type) for f in fields(cls)}


def _fail(where: str, key: str, rule: str, value) -> None:
    raise ConfigValueError(f"{where}: {key}: {rule} (got {value!r})")


def coerce_value(where: str, key: str, typ, value):
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


def validate_mapping(cls, d: dict, where: str) -> dict:
    """The mapping's values coerced to the dataclass's field types; unknown keys refused."""
    types = _field_types(cls)
    out = {}
    for key, value in d.items():
        if not isinstance(key, str) or key not in types:
            close = difflib.get_close_matches(str(key), list(types), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigValueError(f"{where}: {key}: unknown config key{hint}")
        out[key] = coerce_value(where, key, types[key], value)
    return out


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

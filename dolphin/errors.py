"""User-input errors and the argparse types / pre-flight checks that raise them.

``dolphin.cli.main`` prints any ``UserInputError`` (and the data / config errors) as one line
``dolphin: error: ...`` with exit code 1: a user mistake never ends in a Python traceback. Output paths
are checked BEFORE the work (a calibration grid is not computed only to be lost on a bad ``--out``).
"""

import argparse
import os
from pathlib import Path


MAX_MS = 253_402_300_800_000  # year 10000: beyond it no date can be printed


class UserInputError(ValueError):
    """A mistake in what the user asked for; the message names the argument / file."""


def check_output_file(path, what: str) -> Path:
    """``path`` can be written as a file: not a folder, and its first existing ancestor is a writable
    folder. Nothing is created here (a refused run leaves no trace)."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise UserInputError(f"{what} {p}: is a folder; give a file path")
    if p.exists():
        try:  # opening for append changes nothing, and is the real test (root ignores permission bits)
            with open(p, "ab"):
                pass
        except OSError as e:
            raise UserInputError(f"{what} {p}: file is not writable ({e.strerror})") from None
        return p
    anc = p.parent
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise UserInputError(f"{what} {p}: {anc} is not a folder")
    if not os.access(anc, os.W_OK | os.X_OK) or not _can_create_in(anc):
        raise UserInputError(f"{what} {p}: folder {anc} is not writable")
    return p


def _can_create_in(folder: Path) -> bool:
    # os.access says yes to root everywhere (and to read-only mounts): try it, leaving nothing behind
    import tempfile

    try:
        fd, name = tempfile.mkstemp(prefix=".dolphin-write-check-", dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(name)
    return True


def fraction_arg(*, allow_zero: bool):
    """argparse type: a fraction in (0, 1) -- or [0, 1) with ``allow_zero`` (0 = no split)."""
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        lo_ok = v >= 0 if allow_zero else v > 0
        if not (lo_ok and v < 1):
            rng = "[0, 1) (0 = no split)" if allow_zero else "(0, 1)"
            raise argparse.ArgumentTypeError(f"{text} is not in {rng}: the in-sample fraction of the days")
        return v
    return parse


def time_arg(text: str) -> str:
    """argparse type: a UTC date / date-time or unix ms (checked here, converted by the command)."""
    from dolphin.timeutil import parse_time

    try:
        ms = parse_time(text)
    except (ValueError, OverflowError, OSError):
        ms = None
    if ms is None or not 0 <= ms < MAX_MS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date: use YYYY-MM-DD, YYYY-MM-DD HH:MM (UTC) or unix milliseconds") from None
    return text


def bar_arg(text: str) -> int:
    """argparse type: a bar size ('5m', '1h', '1d' or milliseconds) -> ms."""
    from dolphin.timeutil import parse_bar

    try:
        v = parse_bar(text)
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a bar size: use e.g. 5m, 1h, 1d or milliseconds") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the bar size must be positive")
    return v

"""Where a resource's path goes when its configuration leaves it empty: under the data home, resolved when the
path is used (not at import), so one ``defs`` serves every data home."""

from pathlib import Path

from dolphin.paths import data_home


def under_home(path: str, *default) -> Path:
    return Path(path).expanduser() if path else data_home().joinpath(*default)

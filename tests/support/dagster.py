"""Shared by the Dagster tests."""

import os
from contextlib import contextmanager


@contextmanager
def dagster_env(home, unset=("DOLPHIN_WAREHOUSE",)):
    """DOLPHIN_HOME = ``home``, DAGSTER_HOME = ``home``/dagster (telemetry off), ``unset`` removed; all
    restored on exit."""
    saved = {k: os.environ.get(k) for k in ("DOLPHIN_HOME", "DAGSTER_HOME", *unset)}
    os.environ["DOLPHIN_HOME"] = str(home)
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    for k in unset:
        os.environ.pop(k, None)
    (home / "dagster").mkdir()
    (home / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def failure_text(result) -> str:
    """Every step failure's message, with its causes, of a ``dagster.materialize`` result."""
    out = []
    for e in result.all_events:
        if e.is_step_failure:
            err = e.event_specific_data.error
            while err is not None:
                out.append(err.message)
                err = err.cause
    return "\n".join(out)

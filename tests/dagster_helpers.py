"""Shared by the Dagster tests."""


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

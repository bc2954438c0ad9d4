#!/bin/sh
# Entry point of the DOLPHIN image: make sure the data home (and, for the Dagster roles, DAGSTER_HOME
# with a dagster.yaml) exists on the volume, then run the given command as PID 1's child.
set -eu

: "${DOLPHIN_HOME:=/data/dolphin}"
mkdir -p "$DOLPHIN_HOME"

if [ -n "${DAGSTER_HOME:-}" ]; then
    mkdir -p "$DAGSTER_HOME"
    if [ ! -f "$DAGSTER_HOME/dagster.yaml" ]; then
        # webserver and daemon may start together: write a private copy, then rename (atomic)
        tmp="$DAGSTER_HOME/.dagster.yaml.$$"
        cp /etc/dolphin/dagster.yaml "$tmp"
        mv -f "$tmp" "$DAGSTER_HOME/dagster.yaml"
    fi
fi

exec "$@"

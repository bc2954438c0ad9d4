"""DOLPHIN domain core: pure computation, no I/O frameworks (no Dagster, no Hazelcast)."""

__version__ = "0.1.0"

"""Shared test support: real-data loaders, fixtures and process helpers used by every tier."""

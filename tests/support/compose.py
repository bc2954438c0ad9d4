"""docker/compose.yaml as written and as `docker-compose config` resolves it (no Docker engine needed), and
readers of a service's environment: shared by the compose tests of every service."""

import os
import re
import shutil
import subprocess

import pytest
import yaml

from tests.support.paths import REPO

DOCKER = REPO / "docker"
COMPOSE = DOCKER / "compose.yaml"
BINANCE_VARS = ("BINANCE_FUTURES_TESTNET_API_KEY", "BINANCE_FUTURES_TESTNET_API_SECRET",
                "BINANCE_API_KEY", "BINANCE_API_SECRET")


def compose_raw() -> dict:
    """The compose file as written (YAML anchors/merge keys resolved, ${...} not interpolated)."""
    return yaml.safe_load(COMPOSE.read_text())


def env_of(service: dict) -> dict:
    env = service.get("environment") or {}
    if isinstance(env, list):  # list form: NAME=value or bare NAME (pass-through)
        env = dict(e.split("=", 1) if "=" in e else (e, None) for e in env)
    return env


def default_of(value: str, var: str) -> str | None:
    """The default of a whole-value reference `${VAR:-default}` (None when the value is not one)."""
    m = re.fullmatch(r"\$\{" + var + r"(?::?-([^}]*))?\}", str(value))
    return None if m is None else (m.group(1) or "")


def docker_compose() -> str:
    exe = shutil.which("docker-compose")
    if not exe:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is not installed: `make test` should have installed it (apt-get)")
        pytest.skip("docker-compose is not installed (make test installs Debian's docker-compose with apt-get)")
    return exe


def compose_config(tmp_path, **env) -> dict:
    """`docker-compose config` resolved with exactly `env` (no docker/.env, no inherited settings)."""
    exe = docker_compose()
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("DOLPHIN_", "BINANCE_", "COMPOSE_", "DOCKER_"))}
    clean.update(env)
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    r = subprocess.run([exe, "--env-file", str(env_file), "-f", str(COMPOSE), "config"],
                       capture_output=True, text=True, env=clean, timeout=120)
    assert r.returncode == 0, f"docker-compose config failed:\n{r.stderr}"
    return yaml.safe_load(r.stdout)

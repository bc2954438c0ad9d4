"""Deployment contract of docker/: the compose file, its .env.example and the project Dockerfile.

No Docker engine is needed: `docker-compose config` (Debian's docker-compose 1.29, which `make test`
installs) parses and interpolates the compose file without one, and the rest is read with PyYAML and
a small Dockerfile reader.
"""

import os
import re
import subprocess
import tomllib
from pathlib import Path

import yaml

from tests.support.compose import (BINANCE_VARS, COMPOSE, DOCKER, REPO, compose_config, compose_raw, default_of,
                                   docker_compose, env_of)

ENV_EXAMPLE = DOCKER / ".env.example"
DOCKERFILE = DOCKER / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"

SERVICES = ("hazelcast", "management-center", "dagster-webserver", "dagster-daemon", "runtime", "bridge")
PROJECT_SERVICES = ("dagster-webserver", "dagster-daemon", "runtime", "bridge", "console", "alerts")
DAGSTER_SERVICES = ("dagster-webserver", "dagster-daemon")
SECRET_NAME = re.compile(r"KEY|SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL", re.I)
VAR_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


# ------------------------------------------------------------------------------------------ helpers

def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, buf = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        buf += line
        instr, _, args = buf.strip().partition(" ")
        out.append((instr.upper(), args.strip()))
        buf = ""
    return out


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


# -------------------------------------------------------------------- docker-compose (the real tool)

def test_compose_file_validates_with_docker_compose(tmp_path):
    exe = docker_compose()
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DOLPHIN_", "BINANCE_", "COMPOSE_"))}
    r = subprocess.run([exe, "--env-file", str(env_file), "-f", str(COMPOSE), "config", "-q"],
                       capture_output=True, text=True, env=clean, timeout=120)
    assert r.returncode == 0, f"`docker-compose -f docker/compose.yaml config -q` failed:\n{r.stderr}"
    # unset variables must all have defaults: compose warns "The X variable is not set" otherwise
    assert "is not set" not in r.stderr, r.stderr


def test_compose_resolved_defaults(tmp_path):
    cfg = compose_config(tmp_path)
    svc = cfg["services"]
    assert set(SERVICES) <= set(svc), sorted(svc)
    cluster = svc["hazelcast"]["environment"]["HZ_CLUSTERNAME"]
    assert cluster
    assert svc["management-center"]["environment"]["MC_DEFAULT_CLUSTER"] == cluster
    for name in PROJECT_SERVICES:
        env = svc[name]["environment"]
        assert env["DOLPHIN_HZ_MEMBERS"] == "hazelcast:5701", name
        assert env["DOLPHIN_HZ_CLUSTER"] == cluster, name
        assert env["DOLPHIN_HOME"] == "/data/dolphin" and env["DOLPHIN_DATA"] == "/data/market", name
    # the default market data path is ../../shared/data from docker/ = shared/data beside the checkout
    bind = [v for v in svc["runtime"]["volumes"] if isinstance(v, dict) and v.get("target") == "/data/market"]
    assert bind and Path(bind[0]["source"]).resolve() == (REPO.parent / "shared" / "data").resolve()
    assert bind[0]["read_only"] is True
    cmd = svc["runtime"]["command"]
    assert (cmd.split() if isinstance(cmd, str) else cmd)[:3] == ["dolphin", "runtime", "sandbox"]
    for name in BINANCE_VARS:  # unset on the host -> empty in the container (the runtime names it missing)
        assert svc["runtime"]["environment"][name] == "", name


def test_compose_takes_cluster_members_and_keys_from_the_environment(tmp_path):
    sentinel = "test-only-not-a-key-7f3a"
    cfg = compose_config(tmp_path, DOLPHIN_HZ_CLUSTER="cluster-from-env", DOLPHIN_HZ_MEMBERS="10.9.8.7:5701,10.9.8.8:5701",
                         BINANCE_API_SECRET=sentinel, DOLPHIN_RUNTIME_MODE="live",
                         DOLPHIN_RUNTIME_ARGS="--venue production --symbols BTCUSDT")
    svc = cfg["services"]
    assert svc["hazelcast"]["environment"]["HZ_CLUSTERNAME"] == "cluster-from-env"
    assert svc["management-center"]["environment"]["MC_DEFAULT_CLUSTER"] == "cluster-from-env"
    for name in PROJECT_SERVICES:
        assert svc[name]["environment"]["DOLPHIN_HZ_CLUSTER"] == "cluster-from-env", name
        assert svc[name]["environment"]["DOLPHIN_HZ_MEMBERS"] == "10.9.8.7:5701,10.9.8.8:5701", name
    assert svc["runtime"]["environment"]["BINANCE_API_SECRET"] == sentinel
    # the key goes to the runtime only
    for name in set(svc) - {"runtime"}:
        assert sentinel not in str(svc[name]), name
    cmd = svc["runtime"]["command"]
    assert (cmd.split() if isinstance(cmd, str) else cmd) == \
        ["dolphin", "runtime", "live", "--venue", "production", "--symbols", "BTCUSDT"]


# ------------------------------------------------------------------------- compose file (as written)

def test_compose_is_compose_spec_with_the_six_services():
    c = compose_raw()
    assert "version" not in c, "Compose Specification: no top-level version (docker-compose 1.29 and v2 accept it)"
    assert set(SERVICES) <= set(c["services"]), sorted(c["services"])


def test_hazelcast_images_are_pinned_5x():
    s = compose_raw()["services"]
    assert re.fullmatch(r"hazelcast/hazelcast:5\.\d+\.\d+", s["hazelcast"]["image"]), s["hazelcast"]["image"]
    assert re.fullmatch(r"hazelcast/management-center:5\.\d+\.\d+", s["management-center"]["image"]), \
        s["management-center"]["image"]
    assert any(str(p).endswith(":5701") for p in s["hazelcast"]["ports"])
    assert any(str(p).endswith(":8080") for p in s["management-center"]["ports"])
    assert s["hazelcast"].get("healthcheck", {}).get("test"), "hazelcast needs a healthcheck"


def test_hazelcast_member_sends_near_cache_invalidations_at_once():
    # members batch invalidations (every 10 s by default): another client's write would stay invisible
    opts = str(env_of(compose_raw()["services"]["hazelcast"]).get("JAVA_OPTS", "")).split()
    assert "-Dhazelcast.map.invalidation.batch.enabled=false" in opts, opts


def test_cluster_name_comes_from_env_everywhere():
    s = compose_raw()["services"]
    refs = [s["hazelcast"]["environment"]["HZ_CLUSTERNAME"], s["management-center"]["environment"]["MC_DEFAULT_CLUSTER"]]
    refs += [env_of(s[n])["DOLPHIN_HZ_CLUSTER"] for n in PROJECT_SERVICES]
    defaults = {default_of(r, "DOLPHIN_HZ_CLUSTER") for r in refs}
    assert None not in defaults, f"every cluster name must be ${{DOLPHIN_HZ_CLUSTER:-default}}: {refs}"
    assert len(defaults) == 1 and defaults != {""}, f"one non-empty default everywhere: {defaults}"
    mc_members = s["management-center"]["environment"]["MC_DEFAULT_CLUSTER_MEMBERS"]
    assert "hazelcast" in mc_members


def test_project_services_share_the_image_data_home_and_feature_store_address():
    s = compose_raw()["services"]
    images = set()
    for name in PROJECT_SERVICES:
        svc, env = s[name], env_of(s[name])
        assert default_of(env.get("DOLPHIN_HZ_MEMBERS"), "DOLPHIN_HZ_MEMBERS") == "hazelcast:5701", name
        assert svc["build"]["dockerfile"] == "docker/Dockerfile" and svc["build"]["context"] == "..", name
        images.add(svc["image"])
        vols = svc["volumes"]
        assert "dolphin-home:/data/dolphin" in vols, name
        market = [v for v in vols if isinstance(v, dict) and v.get("target") == "/data/market"]
        assert market and market[0]["read_only"] is True and market[0]["type"] == "bind", name
        assert default_of(market[0]["source"], "DOLPHIN_MARKET_DATA") == "../../shared/data", name
        dep = svc["depends_on"]["hazelcast"]
        assert dep["condition"] == "service_healthy", name
    assert len(images) == 1, images
    assert "dolphin-home" in compose_raw()["volumes"]


def test_dagster_services_commands_and_home():
    s = compose_raw()["services"]
    assert s["dagster-webserver"]["command"] == ["dagster-webserver", "-h", "0.0.0.0", "-p", "3000", "-w",
                                                 "/app/workspace.yaml"]
    assert s["dagster-daemon"]["command"] == ["dagster-daemon", "run", "-w", "/app/workspace.yaml"]
    assert any(str(p).endswith(":3000") for p in s["dagster-webserver"]["ports"])
    for name in DAGSTER_SERVICES:
        assert env_of(s[name])["DAGSTER_HOME"].startswith("/data/dolphin/"), name


def test_no_literal_secrets_in_compose():
    text = COMPOSE.read_text()
    s = compose_raw()["services"]
    for name, svc in s.items():
        for var, value in env_of(svc).items():
            if SECRET_NAME.search(var):
                # pass-through only: ${VAR} / ${VAR:-} of the same name, or a bare name (value None)
                assert value is None or default_of(value, var) == "", \
                    f"{name}: {var} must be a ${{{var}}} pass-through, not {value!r}"
    runtime_env = env_of(s["runtime"])
    for var in BINANCE_VARS:
        assert var in runtime_env, f"runtime must pass {var} through"
    # nothing that looks like an API key / secret anywhere in the file (Binance keys: 64 mixed-case
    # letters and digits)
    for tok in re.findall(r"[A-Za-z0-9+/]{24,}", text):
        mixed = re.search(r"[a-z]", tok) and re.search(r"[A-Z]", tok) and re.search(r"[0-9]", tok)
        assert not mixed, f"a key-like string in compose.yaml: {tok[:6]}..."


def test_env_example_documents_every_variable_without_secret_values():
    compose_vars = {m.group(1) for m in VAR_REF.finditer(COMPOSE.read_text())}
    assert compose_vars, "compose.yaml takes nothing from the environment?"
    lines = ENV_EXAMPLE.read_text().splitlines()
    documented = {}
    for line in lines:
        m = re.match(r"^\s*#?\s*([A-Z][A-Z0-9_]*)=(.*)$", line)
        if m:
            documented[m.group(1)] = m.group(2).strip()
    missing = sorted(compose_vars - set(documented))
    assert not missing, f".env.example does not document: {missing}"
    for var, value in documented.items():
        if SECRET_NAME.search(var):
            assert value == "", f".env.example must not hold a value for {var}"
    # documented defaults agree with compose.yaml's defaults
    for m in VAR_REF.finditer(COMPOSE.read_text()):
        var, default = m.group(1), m.group(2)
        if default is not None and default != "" and not SECRET_NAME.search(var):
            assert documented[var] == default, f"{var}: .env.example says {documented[var]!r}, compose {default!r}"


def test_bridge_service_runs_the_scan_bridge_on_the_data_home(tmp_path):
    """`dolphin bridge` in the project image, on the same DOLPHIN_HOME volume the runtime writes scans into."""
    s = compose_raw()["services"]
    b = s["bridge"]
    assert b["command"] == ["dolphin", "bridge"]
    assert b["image"] == s["runtime"]["image"] and "dolphin-home:/data/dolphin" in b["volumes"]
    assert env_of(b)["DOLPHIN_HOME"] == env_of(s["runtime"])["DOLPHIN_HOME"] == "/data/dolphin"
    assert b["restart"] == "unless-stopped" and b["depends_on"]["hazelcast"]["condition"] == "service_healthy"
    assert not any(v in env_of(b) for v in BINANCE_VARS), "the bridge needs no exchange key"
    resolved = compose_config(tmp_path)["services"]["bridge"]
    assert resolved["environment"]["DOLPHIN_HOME"] == "/data/dolphin"
    # the command is a real CLI entry (the image's console script `dolphin`)
    from dolphin.cli import build_parser

    assert build_parser().parse_args(b["command"][1:]).func.__name__ == "cmd_bridge"


# ------------------------------------------------------------------------------------- Dockerfile

def test_dockerfile_is_python_312_slim():
    froms = [a for i, a in dockerfile_instructions() if i == "FROM"]
    assert froms, "no FROM"
    assert re.fullmatch(r"python:3\.12(\.\d+)?-slim(-\w+)?", froms[-1].split()[0]), froms
    # the image's Python is the one pyproject.toml requires
    assert pyproject()["project"]["requires-python"] == ">=3.12,<3.13"


def test_dockerfile_installs_from_pyproject_not_a_package_list():
    ins = dockerfile_instructions()
    copies = [a for i, a in ins if i in ("COPY", "ADD")]
    runs = " ".join(a for i, a in ins if i == "RUN")
    text = DOCKERFILE.read_text()
    assert any("pyproject.toml" in c.split()[0] for c in copies), "pyproject.toml is not copied"
    assert "pip install" in runs
    # dependencies read from pyproject (tomllib) and the package installed from the source tree
    assert "tomllib" in runs and "pyproject.toml" in runs and "['dependencies']" in runs
    assert re.search(r"pip install (--no-deps )?(/tmp/build|\.)(\s|$)", runs), runs
    assert "pip check" in runs
    assert not re.search(r"requirements[\w.-]*\.txt", text), "a hand-written requirements file"
    # no pinned package spelled out in the Dockerfile
    assert "==" not in text, "a package pin in the Dockerfile: pins live in pyproject.toml"
    # and no dependency named on a pip command line
    pip_cmds = re.findall(r"pip install[^&;]*", runs)
    assert pip_cmds
    for dep in pyproject()["project"]["dependencies"]:
        name = re.split(r"[=<>!~\[; ]", dep, maxsplit=1)[0]
        for cmd in pip_cmds:
            assert not re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", cmd, re.I), f"{name} in `{cmd}`"


def test_dockerfile_copies_every_package_and_the_workspace():
    ins = dockerfile_instructions()
    sources = set()
    for i, a in ins:
        if i in ("COPY", "ADD"):
            parts = [p for p in a.split() if not p.startswith("--")]
            sources.update(p.rstrip("/") for p in parts[:-1])
    for pattern in pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]:
        top = pattern.rstrip("*").rstrip(".")
        assert top in sources, f"package {top} is not copied into the image"
    assert any(i == "COPY" and a.split()[0] == "workspace.yaml" and a.split()[-1] == "/app/workspace.yaml"
               for i, a in ins), "workspace.yaml must be at /app/workspace.yaml (compose's -w path)"
    # the build context is filtered by an allow-list: every COPY source must be let through
    allowed = {ln[1:].strip().rstrip("/") for ln in DOCKERIGNORE.read_text().splitlines() if ln.startswith("!")}
    assert sources <= allowed, f".dockerignore excludes: {sorted(sources - allowed)}"
    for src in sources:
        assert (REPO / src).exists(), src


def test_dockerfile_non_root_volume_and_data_paths():
    ins = dockerfile_instructions()
    users = [a for i, a in ins if i == "USER"]
    assert users and users[-1] not in ("root", "0") and not users[-1].startswith(("root:", "0:")), users
    env = " ".join(a for i, a in ins if i == "ENV")
    assert re.search(r"\bDOLPHIN_HOME=/data/dolphin\b", env)
    assert re.search(r"\bDOLPHIN_DATA=/data/market\b", env)
    assert re.search(r"\bDAGSTER_HOME=/data/dolphin/", env)
    vols = " ".join(a for i, a in ins if i == "VOLUME")
    assert "/data/dolphin" in vols
    # the data home must exist and belong to the user before VOLUME (a new volume copies it)
    idx_volume = next(n for n, (i, a) in enumerate(ins) if i == "VOLUME")
    before = " ".join(a for i, a in ins[:idx_volume] if i == "RUN")
    assert re.search(r"chown \S*" + re.escape(users[-1].split(":")[0]) + r"\S* /data/dolphin", before), before
    for secret in BINANCE_VARS:
        assert secret not in DOCKERFILE.read_text(), f"{secret} in the Dockerfile"


def test_entrypoint_prepares_dagster_home(tmp_path):
    home = tmp_path / "home"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DOLPHIN_HOME": str(home),
           "DAGSTER_HOME": str(home / "dagster")}
    script = (DOCKER / "entrypoint.sh").read_text().replace("/etc/dolphin/dagster.yaml", str(DOCKER / "dagster.yaml"))
    ep = tmp_path / "entrypoint.sh"
    ep.write_text(script)
    r = subprocess.run(["sh", str(ep), "sh", "-c", "echo ran:$0", "ok"], capture_output=True, text=True, env=env,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ran:ok"
    cfg = yaml.safe_load((home / "dagster" / "dagster.yaml").read_text())
    assert cfg["telemetry"]["enabled"] is False
    # an existing dagster.yaml (edited on the volume) is never overwritten
    (home / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: true\n")
    assert subprocess.run(["sh", str(ep), "true"], env=env, timeout=30).returncode == 0
    assert "enabled: true" in (home / "dagster" / "dagster.yaml").read_text()
    assert not list((home / "dagster").glob(".dagster.yaml.*")), "temporary file left behind"

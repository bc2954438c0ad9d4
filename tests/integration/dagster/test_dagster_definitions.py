"""The code location as Dagster loads it: ``defs`` resolves every job, sensor, schedule, asset and asset check (a
failure names the definition), and no module of dolphin_assets imports Dagster's private ``dagster._`` modules
(they change without notice between releases; the public API is the contract)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[3] / "dolphin_assets"


def _private_dagster_uses(tree) -> list:
    """(line, text) of every ``import dagster._...`` / ``from dagster._... import`` and every ``dagster._x`` /
    ``dg._x`` attribute reached through the package's module names."""
    aliases = {"dagster"}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("dagster._"):
                    out.append((node.lineno, f"import {a.name}"))
                elif a.name == "dagster":
                    aliases.add(a.asname or "dagster")
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("dagster._"):
                out.append((node.lineno, f"from {node.module} import ..."))
            elif node.module == "dagster":
                out += [(node.lineno, f"from dagster import {a.name}") for a in node.names if a.name.startswith("_")]
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_")):
            out.append((node.lineno, f"{node.value.id}.{node.attr}"))
    return out


def test_no_module_of_dolphin_assets_imports_private_dagster():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 20, files  # the whole package was walked
    found = [f"{f.relative_to(PACKAGE.parent)}:{line}: {text}" for f in files
             for line, text in _private_dagster_uses(ast.parse(f.read_text(), str(f)))]
    assert not found, "private Dagster API used (replace with the public one):\n" + "\n".join(found)


def test_nothing_else_in_the_repository_imports_private_dagster_either():
    """The same rule for the other packages, the tests and the benchmarks (they drive Dagster too)."""
    repo = PACKAGE.parent
    files = sorted(f for d in ("dolphin", "runtime", "venue", "tests", "bench", "scripts")
                   for f in (repo / d).rglob("*.py"))
    found = [f"{f.relative_to(repo)}:{line}: {text}" for f in files
             for line, text in _private_dagster_uses(ast.parse(f.read_text(), str(f)))]
    assert not found, "private Dagster API used (replace with the public one):\n" + "\n".join(found)


def test_the_check_sees_private_imports():
    src = ("import dagster as dg\nfrom dagster._utils.backoff import backoff\nimport dagster._check\n"
           "from dagster import _seven\nx = dg._core\n")
    assert [t for _, t in _private_dagster_uses(ast.parse(src))] == [
        "from dagster._utils.backoff import ...", "import dagster._check", "from dagster import _seven", "dg._core"]
    assert _private_dagster_uses(ast.parse("import dagster as dg\nfrom dagster import asset\nx = dg.asset\n")) == []


def test_definitions_resolve_every_job_sensor_schedule_asset_and_check():
    from dolphin_assets.definitions import defs

    failed = []

    def resolve(kind, name, fn):
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - every failure is collected, then reported by name
            failed.append(f"{kind}{' ' + name if name else ''}: {type(e).__name__}: {e}"[:600])

    graph = resolve("asset graph", "", defs.resolve_asset_graph)
    resolve("repository", "", defs.get_repository_def)  # resource keys every definition needs are provided
    resolve("all jobs", "", defs.resolve_all_job_defs)  # what the UI loads (fails as a whole on any bad job)
    job_names = set()
    for job in defs.jobs or []:
        if resolve("job", job.name, lambda job=job: defs.resolve_job_def(job.name)) is not None:
            job_names.add(job.name)
    for s in defs.sensors or []:
        sensor = resolve("sensor", s.name, lambda s=s: defs.resolve_sensor_def(s.name))
        for target in (getattr(sensor, "job_name", None),) if sensor is not None and sensor.has_jobs else ():
            if target not in job_names:
                failed.append(f"sensor {s.name}: targets job {target!r}, which did not resolve")
    for s in defs.schedules or []:
        sched = resolve("schedule", s.name, lambda s=s: defs.resolve_schedule_def(s.name))
        if sched is not None and sched.job_name not in job_names:
            failed.append(f"schedule {s.name}: targets job {sched.job_name!r}, which did not resolve")
    if graph is not None:
        keys = graph.get_all_asset_keys()
        for key in sorted(keys):
            resolve("asset", key.to_user_string(), lambda key=key: defs.resolve_assets_def(key))
        checks = graph.asset_check_keys
        assert checks, "no asset check resolved"
        for ck in sorted(checks, key=str):
            if ck.asset_key not in keys:
                failed.append(f"asset check {ck.asset_key.to_user_string()}.{ck.name}: its asset is not defined")
            resolve("asset check", f"{ck.asset_key.to_user_string()}.{ck.name}",
                    lambda ck=ck: defs.get_asset_checks_def(ck))
    assert not failed, "definitions that do not resolve:\n" + "\n".join(failed)
    # what was resolved, so a definition dropped from ``defs`` shows here too
    assert {"blue_paper_day", "green_paper_day", "scan_latest_job", "exf_day", "acb_day", "mc_envelope_job"} <= job_names
    assert {s.name for s in defs.sensors} == {"scan_files_sensor", "freshness_checks_sensor", "watchdog_sensor",
                                             "store_rehydration_sensor", "alert_on_run_failure",
                                             "alert_on_asset_checks"}
    assert len(defs.schedules) == 5

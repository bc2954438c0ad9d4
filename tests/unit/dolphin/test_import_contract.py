"""The layout's claim, checked: the math and the store port never import an I/O client, an adapter, the ledger,
a process, Dagster, the runtime or the venue (the contracts in pyproject.toml ``[tool.importlinter]``).

``lint-imports`` reads the source statically (function-level imports included, indirect chains followed), so
this costs ~2 s per run, not an import of the whole tree.
"""

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
LINT = Path(sys.executable).with_name("lint-imports")  # installed by the [test] extra, next to the interpreter

# Modules of dolphin/ that the contracts do NOT restrict: the I/O packages and the processes / command wiring
# that put adapters and math together. A new module must be placed on one side: under a math package (then
# checked) or here (then it is a process, and it is said so).
NOT_PURE_PACKAGES = {"dolphin.adapters", "dolphin.ledger", "dolphin.console", "dolphin.alerts"}  # and submodules
NOT_PURE_MODULES = {"dolphin", "dolphin.book", "dolphin.cli", "dolphin.bridge", "dolphin.book.publisher",
                    "dolphin.status", "dolphin.rehydrate", "dolphin.scan_files", "dolphin.demo"}  # exactly these


def run_lint(root: Path) -> subprocess.CompletedProcess:
    assert LINT.exists(), f"{LINT} missing: install the test extra (pip install -e '.[test]')"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([str(LINT), "--no-cache", "--config", str(REPO / "pyproject.toml")], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)


def contracts() -> list:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_the_import_contracts_hold():
    r = run_lint(REPO)
    assert r.returncode == 0, f"lint-imports failed (exit {r.returncode}):\n{r.stdout}\n{r.stderr}"
    assert f"Contracts: {len(contracts())} kept, 0 broken." in r.stdout, r.stdout


def test_every_dolphin_module_is_either_checked_or_declared_not_pure():
    sources = set(contracts()[0]["source_modules"])
    assert all(set(c["source_modules"]) == sources for c in contracts()), "the contracts cover different modules"
    unplaced = []
    for f in sorted((REPO / "dolphin").rglob("*.py")):
        parts = f.relative_to(REPO).with_suffix("").parts
        mod = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if mod in NOT_PURE_MODULES or any(mod == p or mod.startswith(p + ".") for p in sources | NOT_PURE_PACKAGES):
            continue
        unplaced.append(mod)
    assert not unplaced, (f"{unplaced}: add each to the math modules of the contracts (pyproject.toml) or, if it "
                          f"does I/O or wires processes, to NOT_PURE_MODULES here")


def test_the_contracts_catch_direct_indirect_and_function_level_violations(tmp_path):
    """A copy of the code with forbidden imports added must fail, naming each one."""
    for pkg in ("dolphin", "dolphin_assets", "runtime", "venue"):
        shutil.copytree(REPO / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))

    def add(rel, text):
        p = tmp_path / rel
        p.write_text(p.read_text() + "\n" + text + "\n")

    add("dolphin/metrics/fmt.py", "import sqlite3  # noqa")  # stdlib client, module level
    add("dolphin/engine/kernel.py", "def _fetch():\n    import requests  # noqa\n")  # inside a function
    add("dolphin/scanner/core.py", "def _open():\n    from dolphin.adapters.store_factory import open_store  # noqa\n")
    add("dolphin/acb.py", "from dolphin.ledger import CapitalLedger  # noqa")
    add("dolphin/esof.py", "import dagster  # noqa")
    add("dolphin/exf/indicators.py", "from urllib.request import urlopen  # noqa")  # submodule of a forbidden root
    r = run_lint(tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert f"Contracts: 0 kept, {len(contracts())} broken." in out, out
    for line in ("dolphin.metrics is not allowed to import sqlite3",
                 "dolphin.engine is not allowed to import requests",
                 "dolphin.scanner is not allowed to import dolphin.adapters",
                 "dolphin.acb is not allowed to import dolphin.ledger",
                 "dolphin.esof is not allowed to import dagster",
                 "dolphin.exf is not allowed to import urllib",
                 # indirect: the daily runner reaches sqlite3 only through dolphin.metrics
                 "dolphin.daily is not allowed to import sqlite3"):
        assert line in out, f"{line!r} not reported:\n{out}"

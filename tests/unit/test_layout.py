"""README's layout section is the tree's (scripts/layout.py), and the tests mirror the packages by tier."""

import subprocess
import sys

import pytest

from tests.support.paths import REPO


def _layout():
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import layout
    finally:
        sys.path.remove(str(REPO / "scripts"))
    return layout


def test_readme_layout_section_is_generated_from_the_tree():
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "layout.py"), "--check"],
                       capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_section_follows_the_tree_and_marks_the_contracts_pure_packages(tmp_path):
    """Not vacuous: a package added to a (copied-shape) tree shows up, `[pure]` comes from the forbidden contract,
    and a package without a docstring is refused by name."""
    layout = _layout()
    core = tmp_path / "dolphin"
    (core / "engine").mkdir(parents=True)
    (core / "__init__.py").write_text('"""The core."""\n')
    (core / "engine" / "__init__.py").write_text('"""Engine maths. More text."""\n')
    (core / "engine" / "kernel.py").write_text("")
    (tmp_path / "pyproject.toml").write_text(
        '[[tool.importlinter.contracts]]\nname = "x"\ntype = "forbidden"\n'
        'source_modules = ["dolphin.engine"]\nforbidden_modules = ["sqlite3"]\n')
    (tmp_path / "tests" / "unit" / "dolphin" / "engine").mkdir(parents=True)
    (tmp_path / "tests" / "unit" / "dolphin" / "engine" / "test_kernel.py").write_text("")
    text = layout.generate(tmp_path)
    assert "  engine/" in text and "[pure] Engine maths" in text and "kernel" in text
    assert "unit/dolphin/engine/" in text and "1 test file" in text
    (core / "probe").mkdir()
    (core / "probe" / "__init__.py").write_text("")
    with pytest.raises(SystemExit, match="dolphin/probe/__init__.py: no docstring"):
        layout.generate(tmp_path)


def test_every_test_file_lives_in_a_tier_folder():
    stray = sorted(p.name for p in (REPO / "tests").glob("test_*.py"))
    assert not stray, f"test files outside tests/unit|integration|system: {stray}"

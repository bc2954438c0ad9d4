"""README's "Layout" section, generated from the tree so it cannot drift.

    python scripts/layout.py          # print the section
    python scripts/layout.py --write  # rewrite it in README.md between the layout markers (`make layout`)
    python scripts/layout.py --check  # exit 1 with a diff when README.md differs (tests/unit/test_layout.py)

Each package is one line: its name and the first sentence of its ``__init__`` docstring, then its modules. A package
without a docstring is an error: the layout should say what every package is for. Packages that the import contract
in pyproject.toml ([tool.importlinter], forbidden contracts) keeps free of I/O are marked ``[pure]``."""

import ast
import difflib
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOTS = ("dolphin", "dolphin_assets", "runtime", "venue")
BEGIN = "<!-- layout:begin -->"
END = "<!-- layout:end -->"
NAME_W = 30
WIDTH = 118


def _first_sentence(doc: str, room: int) -> str:
    text = " ".join(doc.strip().split())
    m = re.search(r"(?<=\.)\s", text)
    s = text[: m.start()] if m else text
    s = s.rstrip(".")
    if len(s) > room:
        s = s[: room - 1].rsplit(" ", 1)[0] + "…"
    return s


def _docstring(path: Path) -> str | None:
    return ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))


def _pure_packages(repo: Path) -> set[str]:
    f = repo / "pyproject.toml"
    if not f.is_file():
        return set()
    cfg = tomllib.loads(f.read_text()).get("tool", {}).get("importlinter", {})
    pure = set()
    for c in cfg.get("contracts", []):
        if c.get("type") == "forbidden":
            pure.update(c.get("source_modules", []))
    return pure


def _wrap(prefix: str, words: list[str]) -> list[str]:
    lines, cur = [], ""
    for w in words:
        nxt = f"{cur}, {w}" if cur else w
        if len(prefix) + len(nxt) > WIDTH and cur:
            lines.append(prefix + cur + ",")
            cur = w
        else:
            cur = nxt
    if cur:
        lines.append(prefix + cur)
    return lines


def _package(repo: Path, pkg: Path, depth: int, pure: set[str], errors: list[str]) -> list[str]:
    rel = pkg.relative_to(repo)
    dotted = ".".join(rel.parts)
    doc = _docstring(pkg / "__init__.py")
    if not doc:
        errors.append(f"{rel}/__init__.py: no docstring (say what the package is for)")
        doc = "?"
    mark = "[pure] " if dotted in pure else ""
    name = "  " * depth + pkg.name + "/"
    out = [f"{name:<{NAME_W}}{mark}{_first_sentence(doc, WIDTH - NAME_W - len(mark))}"]
    mods = sorted(p.stem for p in pkg.glob("*.py") if p.name != "__init__.py")
    if mark:
        out += _wrap(" " * NAME_W + "  ", mods)
    else:  # a mixed package: its pure modules first, marked
        pure_mods = [m for m in mods if f"{dotted}.{m}" in pure]
        if pure_mods:
            out += _wrap(" " * NAME_W + "  [pure] ", pure_mods)
        rest = [m for m in mods if m not in pure_mods]
        if rest:
            out += _wrap(" " * NAME_W + "  ", rest)
    for sub in sorted(p for p in pkg.iterdir() if (p / "__init__.py").is_file()):
        out += _package(repo, sub, depth + 1, pure, errors)
    return out


def _tests(repo: Path) -> list[str]:
    tests = repo / "tests"
    out = [f"{'tests/':<{NAME_W}}pytest, by tier (marker = folder); shared fixtures: conftest.py, support/"]
    for tier in ("unit", "integration", "system"):
        if not (tests / tier).is_dir():
            continue
        for d in sorted([tests / tier, *[p for p in (tests / tier).rglob("*") if p.is_dir() and p.name != "__pycache__"]]):
            n = len(list(d.glob("test_*.py")))
            if n:
                rel = d.relative_to(tests).as_posix() + "/"
                out.append(f"{'  ' + rel:<{NAME_W}}{n} test file{'s' if n > 1 else ''}")
    return out


def generate(repo: Path = REPO) -> str:
    pure, errors = _pure_packages(repo), []
    lines = []
    for root in ROOTS:
        if (repo / root / "__init__.py").is_file():
            lines += _package(repo, repo / root, 0, pure, errors)
    lines += _tests(repo)
    bench = sorted(p.stem for p in (repo / "bench").glob("*.py"))
    lines.append(f"{'bench/':<{NAME_W}}benchmarks (`make bench`): " + ", ".join(bench))
    lines.append(f"{'scripts/':<{NAME_W}}developer scripts: " + ", ".join(sorted(p.stem for p in (repo / "scripts").glob("*.py"))))
    lines.append(f"{'docker/':<{NAME_W}}compose.yaml (every service), Dockerfile, Dagster instance on PostgreSQL")
    if errors:
        raise SystemExit("layout: " + "; ".join(errors))
    return "\n".join([BEGIN, "```", *lines, "```", END])


def _split(readme: str) -> tuple[str, str, str]:
    i, j = readme.find(BEGIN), readme.find(END)
    if i < 0 or j < i:
        raise SystemExit(f"README.md: no layout markers ({BEGIN!r} ... {END!r})")
    return readme[:i], readme[i: j + len(END)], readme[j + len(END):]


def main(argv: list[str]) -> int:
    section = generate()
    readme_path = REPO / "README.md"
    if "--write" in argv:
        head, _, tail = _split(readme_path.read_text(encoding="utf-8"))
        readme_path.write_text(head + section + tail, encoding="utf-8")
        return 0
    if "--check" in argv:
        _, current, _ = _split(readme_path.read_text(encoding="utf-8"))
        if current != section:
            sys.stdout.writelines(difflib.unified_diff(current.splitlines(True), section.splitlines(True),
                                                       "README.md (layout)", "the tree", n=1))
            print("\nREADME.md's layout section differs from the tree: run `make layout`")
            return 1
        return 0
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

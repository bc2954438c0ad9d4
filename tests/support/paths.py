"""Where things are: the repository root and the test fixtures (independent of the test file's depth)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"

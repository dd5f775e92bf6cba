"""README.md's code checks block ("Tests": ruff and strict mypy), run as written
(tests/readme_blocks.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.readme_blocks import FIRST_LINES, ROOT, block, env_for, run

pytestmark = pytest.mark.e2e


def test_code_checks(tmp_path: Path) -> None:
    run(block(FIRST_LINES[11]), ROOT, env_for(tmp_path), tmp_path / "checks.log", 300)

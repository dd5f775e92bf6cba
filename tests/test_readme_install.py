"""README.md's "Running it for real" blocks, run as written (tests/readme_blocks.py):
installing livecart as an application with `uv tool install`, then its help commands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.readme_blocks import FIRST_LINES, ROOT, block, env_for, run

pytestmark = pytest.mark.e2e


def test_install_as_an_application_and_the_help_commands(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    env = env_for(tmp_path, UV_TOOL_DIR=str(tmp_path / "tools"), UV_TOOL_BIN_DIR=str(bin_dir))
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    out = run(block(FIRST_LINES[4]), ROOT, env, tmp_path / "install.log", 300)
    assert "livecart 0.1.0" in out
    out = run(block(FIRST_LINES[5]), tmp_path, env_for(tmp_path), tmp_path / "help.log", 120)
    assert "LIVECART_REDIS_URL" in out and "orders" in out
    assert re.search(r"^eyJ[\w-]+\.[\w-]+\.[\w-]+$", out, re.M), out[-2000:]

"""The built wheel is a complete application: it installs into a fresh venv (and with
`uv tool install`) as a `livecart` command, adds no generic top-level package to
site-packages, and its `serve --demo` serves the web demo. A web demo file missing from an
installation answers 404 naming the file, never `unavailable`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.procs import stop_process

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
READY = re.compile(r"livecart ready on (http://127\.0\.0\.1:\d+)")


def uv() -> list[str]:
    """uv as the README runs it (`python3 -m uv`), or a uv binary on PATH."""
    found = shutil.which("uv")
    if found:
        return [found]
    return ["python3", "-m", "uv"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LIVECART_", "VIRTUAL_ENV", "PYTHONPATH", "UV_PROJECT"))}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with only the built wheel (and its dependencies) installed."""
    work = tmp_path_factory.mktemp("wheel")
    subprocess.run([*uv(), "build", "--wheel", "--out-dir", str(work / "dist"), str(ROOT)],
                   check=True, capture_output=True, env=clean_env(), timeout=300)
    wheels = list((work / "dist").glob("livecart-*.whl"))
    assert len(wheels) == 1, wheels
    venv = work / "venv"
    subprocess.run([*uv(), "venv", "--python", sys.executable, str(venv)], check=True,
                   capture_output=True, env=clean_env(), timeout=120)
    subprocess.run([*uv(), "pip", "install", "--python", str(venv / "bin" / "python"),
                    str(wheels[0])], check=True, capture_output=True, env=clean_env(),
                   timeout=300)
    return venv


def site_packages(venv: Path) -> Path:
    found = list(venv.glob("lib/python*/site-packages"))
    assert len(found) == 1
    return found[0]


@pytest.fixture
def served(installed: Path, tmp_path: Path) -> Iterator[str]:
    # cwd outside the checkout: nothing may come from the source tree
    proc = subprocess.Popen(
        [str(installed / "bin" / "livecart"), "serve", "--demo", "--ephemeral", "--port", "0"],
        cwd=tmp_path, env=clean_env(LIVECART_LOG_LEVEL="warning", LIVECART_DEMO_STREAM="0"),
        text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 30
        base = None
        while time.monotonic() < deadline and base is None:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            m = READY.search(line)
            base = m.group(1) if m else None
        assert base, "".join(lines)
        yield base
    finally:
        stop_process(proc)


def test_the_wheel_adds_no_generic_top_level_package(installed: Path) -> None:
    top = {p.name for p in site_packages(installed).iterdir()}
    assert "server" not in top and "loadtest" not in top and "web_demo" not in top
    app = site_packages(installed) / "livecart"
    assert (app / "server" / "valkey" / "lua" / "reserve.lua").is_file()
    assert (app / "web_demo" / "index.html").is_file()
    assert (app / "web_demo" / "static" / "app.css").is_file()
    # the generic names are importable only inside the livecart process
    probe = subprocess.run([str(installed / "bin" / "python"), "-c", "import server"],
                           capture_output=True, text=True, cwd="/", env=clean_env())
    assert probe.returncode != 0 and "No module named 'server'" in probe.stderr
    version = subprocess.run([str(installed / "bin" / "livecart"), "--version"],
                             capture_output=True, text=True, env=clean_env(), check=True)
    assert version.stdout.strip() == "livecart 0.1.0"


def test_the_installed_demo_serves_its_pages_and_static_files(served: str) -> None:
    home = httpx.get(served + "/", timeout=10)
    assert home.status_code == 200 and "<html" in home.text.lower()
    assert httpx.get(served + "/demo/watch", timeout=10).status_code == 200
    assert httpx.get(served + "/demo/creator", timeout=10).status_code == 200
    css = httpx.get(served + "/static/app.css", timeout=10)
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    js = httpx.get(served + "/static/livecart.js", timeout=10)
    assert js.status_code == 200
    # the seed ran its Lua scripts: both demo sessions exist
    ids = {s["id"] for s in httpx.get(served + "/api/sessions", timeout=10).json()["sessions"]}
    assert {"sess_demo_live", "sess_demo_video"} <= ids


def test_a_missing_demo_file_is_a_404_naming_it_not_unavailable(installed: Path,
                                                               tmp_path: Path) -> None:
    # a copy of the installed application without its web demo files, run with the
    # venv's dependencies
    sp = tmp_path / "broken"
    shutil.copytree(site_packages(installed) / "livecart", sp / "livecart")
    (sp / "livecart" / "web_demo" / "index.html").unlink()
    shutil.rmtree(sp / "livecart" / "web_demo" / "static")
    code = (f"import sys; sys.path.insert(0, {str(sp)!r}); sys.argv = ['livecart', 'serve', "
            "'--demo', '--ephemeral', '--port', '0']; import livecart; sys.exit(livecart.main())")
    proc = subprocess.Popen([str(installed / "bin" / "python"), "-c", code], cwd=tmp_path,
                            env=clean_env(LIVECART_LOG_LEVEL="warning"), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    try:
        base = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and base is None:
            line = proc.stdout.readline()
            if not line:
                break
            m = READY.search(line)
            base = m.group(1) if m else None
        assert base
        for path, missing in (("/", "index.html"), ("/static/app.css", "static")):
            r = httpx.get(base + path, timeout=10)
            assert r.status_code == 404, (path, r.text)
            err = r.json()["error"]
            assert err["code"] == "not_found" and missing in err["message"]
            assert "web demo is not installed" in err["message"]
    finally:
        stop_process(proc)


def test_uv_tool_install_gives_a_livecart_command(tmp_path: Path) -> None:
    env = clean_env(UV_TOOL_DIR=str(tmp_path / "tools"), UV_TOOL_BIN_DIR=str(tmp_path / "bin"))
    subprocess.run([*uv(), "tool", "install", str(ROOT)], check=True, capture_output=True,
                   env=env, timeout=300, cwd=tmp_path)
    out = subprocess.run([str(tmp_path / "bin" / "livecart"), "env"], capture_output=True,
                         text=True, env=env, check=True)
    assert "LIVECART_REDIS_URL" in out.stdout

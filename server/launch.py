"""The `livecart` command's entry point, installed as the module `livecart`.

In a built wheel everything lives under one directory, `site-packages/livecart/`
(`server/`, `loadtest/`, `web_demo/` and this file as `__init__.py`), so the wheel adds
no generic top-level package (`server`, `loadtest`) to site-packages. The code imports
itself as `server.…`; `main()` puts that directory first on `sys.path` of the `livecart`
process only, then runs the CLI. In a checkout (editable install) the packages are
already importable from the project root and nothing changes.
"""

from __future__ import annotations

import sys
from pathlib import Path


def package_root() -> Path | None:
    """The directory holding `server/` when running from a built wheel, else None."""
    here = Path(__file__).resolve().parent
    wheel = (here / "server" / "runtime" / "cli.py").is_file() and here.name == "livecart"
    return here if wheel else None


def main() -> int:
    root = package_root()
    if root is not None and str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from server.runtime.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())

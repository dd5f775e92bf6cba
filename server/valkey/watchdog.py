"""`python -m server.valkey.watchdog PARENT CHILD`: SIGTERM the child when the parent is gone.

Only used where the kernel cannot do it for us (no PR_SET_PDEATHSIG outside Linux).
"""

from __future__ import annotations

import os
import signal
import sys
import time


def main(parent: int, child: int) -> None:
    while True:
        try:
            os.kill(child, 0)
        except OSError:
            return
        if os.getppid() != parent:  # reparented: the parent is gone
            os.kill(child, signal.SIGTERM)
            return
        time.sleep(0.5)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))

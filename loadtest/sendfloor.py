"""The kernel floor of fan-out on this machine: CPU per `send()` of one ~270-byte frame to
each of N loopback TCP sockets (a child process reads them all with epoll).

    python -m loadtest.sendfloor 5000

Every server that writes one frame per viewer per event pays at least this, whatever
its language; only putting several events in one frame (livecart's array batches) goes
below it. Bounded: 20 rounds, 30 s at most.
"""

from __future__ import annotations

import os
import resource
import select
import socket
import sys
import time


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    rounds = 20
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    frame = b"\x81\x7e\x01\x0e" + b"x" * 270
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4096)
    port = srv.getsockname()[1]
    pid = os.fork()
    if pid == 0:  # the reader
        conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
        ep = select.epoll()
        by_fd = {}
        for c in conns:
            c.setblocking(False)
            ep.register(c.fileno(), select.EPOLLIN)
            by_fd[c.fileno()] = c
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for fd, _ in ep.poll(1):
                try:
                    if not by_fd[fd].recv(65536):
                        os._exit(0)
                except BlockingIOError:
                    pass
        os._exit(0)
    socks = []
    for _ in range(n):
        c, _ = srv.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.setblocking(False)
        socks.append(c)
    time.sleep(0.5)
    for batch in (1, 5):
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        for _ in range(rounds):
            data = frame * batch
            for c in socks:
                c.send(data)
            time.sleep(0.05)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        sends = rounds * n
        print(f"N={n} events/frame={batch}: {1e6 * cpu / sends:.2f} µs CPU per send() "
              f"(sys {1e6 * (r1.ru_stime - r0.ru_stime) / sends:.2f}), "
              f"{1e6 * cpu / sends / batch:.2f} µs per event")
    for c in socks:
        c.close()
    os.waitpid(pid, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())

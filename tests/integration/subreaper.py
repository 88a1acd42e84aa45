"""Run a command as a child subreaper that leaves orphans unreaped until stdin closes.

``python -m tests.integration.subreaper CMD...``: runs CMD, prints ``exit <status>``, then
keeps every orphaned descendant (the service ``hotline up`` detached) as its own child without
reaping it, so a killed service stays a zombie, as under an init that does not reap, until
the test closes this process's stdin."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

PR_SET_CHILD_SUBREAPER = 36


def main() -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print(f"prctl failed: {os.strerror(ctypes.get_errno())}", flush=True)
        return 1
    status = subprocess.call(sys.argv[1:])
    print(f"exit {status}", flush=True)
    sys.stdin.read()
    while True:
        try:
            os.wait()
        except ChildProcessError:
            return 0


if __name__ == "__main__":
    sys.exit(main())

"""The prompt converter process (speech.tts.converter) ends with the service that started it,
even after ``kill -9``: an orphaned converter would live on, holding the killed service's
output open."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from hotline.liveness import process_info

ROOT = Path(__file__).resolve().parents[2]
SERVICE = """
import os, sys
from speech.tts import converter
print(converter().submit(os.getpid).result(timeout=60), flush=True)
sys.stdin.read()
"""


def test_the_converter_dies_with_a_killed_service() -> None:
    service = subprocess.Popen([sys.executable, "-c", SERVICE], cwd=ROOT, text=True,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    worker = None
    try:
        assert service.stdout is not None
        worker = int(service.stdout.readline())
        info = process_info(worker)
        assert info is not None and not info.dead and info.pid != service.pid
        service.send_signal(signal.SIGKILL)
        service.wait(10)
        deadline = time.monotonic() + 10
        while (info := process_info(worker)) is not None and not info.dead:
            assert time.monotonic() < deadline, f"converter {worker} outlived its service"
            time.sleep(0.05)  # polling the kernel's process table, bounded
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
        if worker is not None and (info := process_info(worker)) is not None and not info.dead:
            os.kill(worker, signal.SIGKILL)

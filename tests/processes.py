"""Several local processes started together (a jax.distributed group on localhost), for the multi-process tests."""

from __future__ import annotations

import socket
import subprocess


def free_port() -> int:
    """A localhost TCP port nothing listens on now: the coordinator address of a jax.distributed group."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_together(commands: list[list[str]], env: dict[str, str], marker: str, timeout: float = 300) -> list[str]:
    """Start every command at once (a jax.distributed group waits for all its members), wait for each, and
    return each one's first output line that starts with `marker`. A process that fails fails the test with
    the tail of its output; the others are then killed rather than left waiting for it."""
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for cmd in commands]
    try:
        lines = []
        for proc in procs:
            out, _ = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, out[-3000:]
            lines.append(next(ln for ln in out.splitlines() if ln.startswith(marker)))
        return lines
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()

"""`roomserver run` as a child process, to kill it (-9), stop it (SIGTERM) and restart it.

The child is the real command line (`python -m processor.cli run`) configured through the
environment, as a deployment runs it. Its log goes to a file that failure messages quote.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from processor.config import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]


def service_env(settings: Settings) -> dict[str, str]:
    """The environment variables that configure `roomserver run` with `settings`."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "ROOMSERVER_INPUT_TOPIC": settings.input_topic,
        "ROOMSERVER_OUTPUT_TOPIC": settings.output_topic,
        "ROOMSERVER_DEAD_LETTER_TOPIC": settings.dead_letter_topic,
        "ROOMSERVER_INPUT_PARTITIONS": str(settings.input_partitions),
        "ROOMSERVER_CONSUMER_GROUP": settings.consumer_group,
        "DATABASE_URL": settings.database_url,
        "ROOMSERVER_BATCH_SIZE": str(settings.batch_size),
        "ROOMSERVER_STALL_SECONDS": str(settings.stall_seconds),
        "ROOMSERVER_SERVER_NAME": settings.server_name,
        "ROOMSERVER_INSTANCE_ID": settings.instance_id,
        "ROOMSERVER_SESSION_TIMEOUT_MS": str(settings.session_timeout_ms),
    }


class ServiceProcess:
    """One `roomserver run` child process."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.log_path = log_path
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("ROOMSERVER_", "KAFKA_")) and key != "DATABASE_URL"
        }
        env.update(service_env(settings))
        env["PYTHONUNBUFFERED"] = "1"
        with open(log_path, "wb") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "processor.cli", "run"],
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        return self._proc.pid

    def exit_code(self) -> int | None:
        """The exit status if the process has ended, else None."""
        return self._proc.poll()

    def kill(self) -> None:
        """kill -9: no cleanup of any kind runs in the child."""
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
        self._proc.wait(30)

    def pause(self) -> None:
        """SIGSTOP: the process freezes mid-whatever (a long GC pause, a stalled VM)."""
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._proc.send_signal(signal.SIGCONT)

    def terminate(self, timeout: float) -> int:
        """SIGTERM, then the exit status (raises `subprocess.TimeoutExpired` if it hangs)."""
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
        return self._proc.wait(timeout)

    def wait(self, timeout: float) -> int:
        """The exit status once the process ends on its own (raises
        `subprocess.TimeoutExpired` if it is still running after `timeout` seconds)."""
        return self._proc.wait(timeout)

    def log(self, last: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-last:]

    def close(self) -> None:
        """Make sure the child is gone (test teardown)."""
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.send_signal(signal.SIGCONT)
            self._proc.wait(30)


#: Bound on each wait for the service to make progress, finish or exit.
WAIT_S = 60.0


def wait_for(
    condition: Callable[[], bool], proc: ServiceProcess, what: str, timeout: float = WAIT_S
) -> None:
    """Poll `condition` until it holds; fail with the service's log if it exits or times out."""
    deadline = time.monotonic() + timeout
    while not condition():
        code = proc.exit_code()
        if code is not None:
            pytest.fail(f"the service exited ({code}) while waiting for {what}:\n{proc.log()}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout} s:\n{proc.log()}")
        time.sleep(0.005)

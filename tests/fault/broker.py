"""A private Kafka broker for one test, which can be stopped and started again with its data.

`deploy/local/kafka.sh start` formats fresh storage each time, so it starts the broker the
first time (free ports, a private directory) and stops it at the end; `restart` stops it the
same way (SIGTERM, as `kafka.sh stop` does) and starts the same JVM command again on the
existing data and configuration, the way an operator restarts a broker.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.fixtures.services import (
    DEPLOY_LOCAL,
    free_port,
    run_local_script,
    run_local_script_quiet,
)

KAFKA_VERSION = "4.1.2"
READY_TIMEOUT_S = 120.0


def _libs() -> Path:
    cache = os.environ.get("ROOMSERVER_CACHE_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "roomserver"
    )
    version = os.environ.get("ROOMSERVER_KAFKA_VERSION", KAFKA_VERSION)
    return Path(cache) / f"kafka-{version}" / "libs"


class PrivateBroker:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.env = {
            "ROOMSERVER_KAFKA_PORT": str(free_port()),
            "ROOMSERVER_KAFKA_CONTROLLER_PORT": str(free_port()),
            "ROOMSERVER_KAFKA_DIR": str(run_dir),
            "ROOMSERVER_KAFKA_HEAP": "512m",
        }
        self.bootstrap_servers = ""
        self._restarted: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        self.bootstrap_servers = run_local_script("kafka.sh", "start", self.env)
        return self.bootstrap_servers

    def _pid(self) -> int | None:
        try:
            return int((self.run_dir / "kafka.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def stop_process(self) -> None:
        """SIGTERM the broker and wait for it to exit (a controlled shutdown)."""
        pid = self._pid()
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)

    def start_again(self) -> None:
        """Start the broker on the data it had (no format), as kafka.sh launches it."""
        log_dir = self.run_dir / "logs"
        java_opts = [
            "-Xms256m", f"-Xmx{self.env['ROOMSERVER_KAFKA_HEAP']}",
            "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.run_dir / 'log4j2.xml'}",
            f"-Dkafka.logs.dir={log_dir}",
        ]
        with open(log_dir / "kafka-restart.out", "wb") as out:
            proc = subprocess.Popen(
                ["java", *java_opts, "-cp", f"{_libs()}/*", "kafka.Kafka",
                 str(self.run_dir / "server.properties")],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._restarted = proc
        (self.run_dir / "kafka.pid").write_text(f"{proc.pid}\n")
        self._wait_ready(proc)

    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        probe = [
            "java", "-cp", f"{_libs()}/*", str(DEPLOY_LOCAL / "KafkaReady.java"),
            self.bootstrap_servers, "10000",
        ]
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the restarted broker exited ({proc.returncode})")
            ready = subprocess.run(probe, capture_output=True, timeout=60, check=False)
            if ready.returncode == 0:
                return
            time.sleep(0.5)
        raise RuntimeError(f"the restarted broker did not answer within {READY_TIMEOUT_S}s")

    def close(self) -> None:
        """Kill it (its data is thrown away, so no controlled shutdown) and remove its files."""
        pid = self._pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self._restarted is not None:
            self._restarted.wait(60)
        run_local_script_quiet("kafka.sh", "stop", self.env)  # waits for the first JVM to go
        shutil.rmtree(self.run_dir, ignore_errors=True)

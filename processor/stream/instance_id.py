"""The consumer's static group membership ID (Kafka's `group.instance.id`, KIP-345).

Why: a member that dies without leaving the group (kill -9, OOM, a node lost) holds its
partitions until its session times out; a restarted process that joins as a new member waits
for that too. With a static ID the restarted process *is* the dead member: the coordinator
hands it the same partitions at once, with no wait and no rebalance of the other instances.

The ID must be unique among the running instances of a group (a second process with the
same ID makes the coordinator fence the first) and the same across one instance's restarts.
`ROOMSERVER_INSTANCE_ID` sets it (in Kubernetes, the pod name of a StatefulSet). By default
it is the host name and a
*slot*: the lowest number whose lock file (in the temporary directory, per consumer group)
no other process holds. A process holds its slot's lock until it ends, however it ends (the
kernel drops the lock of a killed process), so processes on one host get distinct slots and
a restarted process takes its predecessor's free slot again. `dynamic` turns static
membership off.

The cost: a static member that stops does not leave the group (aiokafka sends no LeaveGroup
for one), so the partitions of an instance stopped for good move to the others only after
the session timeout (`ROOMSERVER_SESSION_TIMEOUT_MS`, 10 s).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from processor.config import Settings

DYNAMIC = "dynamic"

#: Processes of one group on one host, at most, with derived IDs.
MAX_SLOTS = 256


@dataclass
class InstanceId:
    """A claimed ID; `release` gives the slot back (process exit does too)."""

    value: str
    _lock: IO[bytes] | None = None

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def claim_instance_id(settings: Settings, lock_dir: Path | None = None) -> InstanceId | None:
    """The ID for this process's consumer, or None for dynamic membership."""
    if settings.instance_id == DYNAMIC:
        return None
    if settings.instance_id:
        return InstanceId(settings.instance_id)
    host = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname()) or "host"
    group = hashlib.sha256(settings.consumer_group.encode()).hexdigest()[:16]
    directory = lock_dir or Path(tempfile.gettempdir())
    for slot in range(MAX_SLOTS):
        path = directory / f"roomserver-{group}-{slot}.lock"
        lock = open(path, "ab")  # noqa: SIM115 - held open until `release`
        try:
            # flock belongs to the open file: a second open in this very process conflicts
            # too, so services sharing a process get distinct slots as well.
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            continue
        os.set_inheritable(lock.fileno(), False)
        return InstanceId(f"{host}-{slot}", lock)
    # Every slot taken (hundreds of processes of one group on one host): dynamic membership
    # is still correct, only slower to recover.
    return None

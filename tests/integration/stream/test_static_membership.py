"""Static group membership (`processor.stream.instance_id`): an instance killed with -9 and
restarted with the same `ROOMSERVER_INSTANCE_ID` takes its partitions back at once, without
a rebalance of the other instances and without waiting for the dead member's session to
time out; its relays then publish what the dead process left in the outbox and what
arrives after.

The session timeout is set to five minutes, far beyond the test's waits (each a guard
against a hang, `WAIT_S`): without static membership the restarted process would join as a
new member, and the group would wait for the dead one before giving anybody its partitions.
What the test asserts is the order of events: instance B's assignment never changes after
A's restart (no rebalance: the group generation stays), the restarted A resumes exactly A's
partitions, and the outputs are exactly once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from pathlib import Path

from tests.fault.exactly_once import produce_by_room
from tests.fault.scenario import Progress, make_scenario
from tests.fault.service_process import ServiceProcess, wait_for
from tests.fixtures.kafka import NewTopicFactory

_CONSUMING = re.compile(r"consuming \S+ partitions \[([\d,]*)\]")


def _assignments(proc: ServiceProcess) -> list[str]:
    """Each assignment the instance logged, in order ("0,2")."""
    return _CONSUMING.findall(proc.log_path.read_text(errors="replace"))


def test_restart_after_kill_9_takes_the_partitions_back_at_once(
    kafka_bootstrap_servers: str,
    database_url: str,
    new_topic: NewTopicFactory,
    tmp_path: Path,
) -> None:
    scenario = make_scenario(
        kafka_bootstrap_servers, database_url, new_topic, tmp_path,
        rooms=6, events=1200, seed=43, batch_size=20, produce=False,
    )
    settings = dataclasses.replace(scenario.settings, session_timeout_ms=300_000)
    inputs = scenario.inputs
    first, second = inputs[:700], inputs[700:]
    progress = Progress(database_url, settings.input_topic)
    started: list[ServiceProcess] = []

    def start(instance_id: str, log_name: str) -> ServiceProcess:
        proc = ServiceProcess(
            dataclasses.replace(settings, instance_id=instance_id), tmp_path / log_name
        )
        started.append(proc)
        return proc

    try:
        # B first, so that it leads the group: a restarted follower gets its assignment
        # back from the coordinator as it was (a rejoining leader would make the group
        # rebalance, which static membership also survives, but less visibly).
        b = start("b", "b.log")
        wait_for(lambda: _assignments(b) == ["0,1,2"], b, "B owning every partition")
        a = start("a", "a.log")
        wait_for(lambda: bool(_assignments(a)), a, "A's partitions")
        wait_for(lambda: len(_assignments(b)) == 2, b, "B's share after A joined")
        a_partitions = _assignments(a)[-1]
        b_assignments = _assignments(b)
        assert sorted(a_partitions.split(",") + b_assignments[-1].split(",")) == ["0", "1", "2"]

        asyncio.run(produce_by_room(kafka_bootstrap_servers, settings.input_topic, first))
        wait_for(progress.reached(300), a, "commits before the kill")
        a.kill()
        restarted = start("a", "a2.log")
        asyncio.run(produce_by_room(kafka_bootstrap_servers, settings.input_topic, second))
        wait_for(lambda: progress.done(len(inputs)), restarted,
                 "all input committed and relayed after the restart")

        assert _assignments(restarted) == [a_partitions], restarted.log()
        assert _assignments(b) == b_assignments, "B was rebalanced: " + b.log()
        assert restarted.terminate(60) == 0, restarted.log()
        assert b.terminate(60) == 0, b.log()
    finally:
        progress.close()
        for proc in started:
            proc.close()
    scenario.check()

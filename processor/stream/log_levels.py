"""aiokafka's log output cut down to what an operator needs (unless `--verbose`).

At INFO, aiokafka narrates every start: "Updating subscribed topics to: ...", "Discovered
coordinator", "(Re-)joining group", "Joined group", each relay producer's coordinator...
The roomserver says what matters itself, in one line ("consuming roomserver.input
partitions [0,1,2] as group roomserver"), so aiokafka's loggers show warnings and errors only.

Two of those are not problems either: right after a broker starts (or a group is first
used) the group coordinator is not ready yet, and the consumer logs
"GroupCoordinatorNotAvailableError" at ERROR and "Marking the coordinator dead" at WARNING
before it retries and succeeds. They are dropped; a coordinator that stays away shows as
a consumer that never logs "consuming ..." and as a stall in /health.
"""

from __future__ import annotations

import logging

#: Fragments of aiokafka's messages about a coordinator that is not ready yet.
TRANSIENT_COORDINATOR_MESSAGES = (
    "CoordinatorNotAvailable",
    "NotCoordinator",
    "Marking the coordinator dead",
)


class _TransientCoordinatorErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(fragment in message for fragment in TRANSIENT_COORDINATOR_MESSAGES)


_FILTER = _TransientCoordinatorErrors()


def quiet_kafka_logs(verbose: bool = False) -> None:
    """Set aiokafka's loggers to WARNING and drop transient coordinator errors; with
    `verbose`, leave everything (the root level decides)."""
    if verbose:
        return
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    for name in ("aiokafka.consumer.group_coordinator", "aiokafka.producer.sender"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)

"""Container health check: GET /health on the metrics port; exit 0 when it answers 200.

The image's HEALTHCHECK runs this with the image's own Python (the slim base has no curl).
/health answers 503 when input waits and nothing was processed for ROOMSERVER_STALL_SECONDS,
so a stalled consumer turns the container unhealthy. With ROOMSERVER_METRICS_PORT unset or 0
there is no endpoint to ask: the check passes and says so, because the commands that never
serve one (produce, tail, generate, ingest) would otherwise be reported unhealthy for doing
their job.

Exit status: 0 healthy, 1 unhealthy (Docker's HEALTHCHECK convention).
"""

from __future__ import annotations

import http.client
import os
import sys

#: Seconds to wait for the answer; under the HEALTHCHECK's own --timeout.
TIMEOUT_SECONDS = 4.0


def check(port: int, host: str = "127.0.0.1") -> tuple[bool, str]:
    """(healthy, what to print) for the /health endpoint at `host:port`."""
    connection = http.client.HTTPConnection(host, port, timeout=TIMEOUT_SECONDS)
    try:
        connection.request("GET", "/health")
        response = connection.getresponse()
        body = response.read().decode("utf-8", "replace").strip()
    except OSError as e:
        return False, f"/health on port {port}: {e}"
    finally:
        connection.close()
    return response.status == 200, f"/health {response.status}: {body}"


def main() -> int:
    setting = os.environ.get("ROOMSERVER_METRICS_PORT", "").strip() or "0"
    try:
        port = int(setting)
    except ValueError:
        print(f"ROOMSERVER_METRICS_PORT={setting!r} is not a port number")
        return 1
    if port == 0:
        print("ROOMSERVER_METRICS_PORT is 0: no /health endpoint to check")
        return 0
    healthy, message = check(port)
    print(message)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())

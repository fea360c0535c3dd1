"""`schemas` imports on its own: producers and consumers depend on it without the
roomserver (docs/architecture.md §2). Checked in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
import schemas, schemas.codecs, schemas.dead_letter, schemas.errors, schemas.export
import schemas.input, schemas.output, schemas.pdu, schemas.query, schemas.client
leaked = sorted(m for m in sys.modules if m == "processor" or m.startswith("processor."))
assert not leaked, leaked
"""


def test_schemas_import_without_processor() -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr

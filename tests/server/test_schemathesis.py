"""Schemathesis fuzzes the example services from their own /docs.json: no request, valid or
not, may get a 5xx or a response that breaks the document (status, content type, body schema,
headers), no schema-valid request may be refused and no schema-invalid one accepted.

Binary bodies (images, .npy, CSV, Parquet) are real files written by schemathesis_hooks.py: no
JSON schema can say "a valid Parquet file", so random bytes would be schema-valid yet refused.
What the schemas cannot state exactly is kept out of the examples, not out of the run: an
unchecked multi-dimensional NumpyNdarray shape (numpy refuses ragged lists, which no JSON schema
can exclude), so the doubler enforces its sample's shape.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from live_server import Served

from .example_services import EXAMPLES

HOOKS = Path(__file__).with_name("schemathesis_hooks.py")

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
# Every check: no 5xx, every answer as documented, no schema-valid request refused and no
# schema-invalid one accepted.
CHECKS = "all"


# Each example runs under `dosirak serve`, as users run services: the whole request path (the
# guarded protocol included) is fuzzed, and the model's numeric warnings (an overflow in a matmul
# of values near 1e308) are logged as in production instead of turned into errors by this
# test process's warning filters.
TARGET = """
import sys
sys.path.insert(0, {directory!r})
from example_services import EXAMPLES
svc = EXAMPLES[{name!r}]()
"""


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_no_server_errors_and_no_spec_violations(name: str, tmp_path: Path) -> None:
    target = tmp_path / "target.py"
    target.write_text(TARGET.format(directory=str(HOOKS.parent), name=name))
    with Served([f"{target}:svc"], cwd=tmp_path) as server:
        url = server.url
        result = subprocess.run(
            [str(SCHEMATHESIS), "run", f"{url}/docs.json", "--checks", CHECKS,
             "--max-examples", "40", "--seed", "20261122", "--no-color"],
            capture_output=True, text=True, timeout=300, cwd=tmp_path,  # its cache lands there
            env={**os.environ, "SCHEMATHESIS_HOOKS": HOOKS.stem,
                 "PYTHONPATH": os.pathsep.join(filter(None, (str(HOOKS.parent),
                                                            os.environ.get("PYTHONPATH"))))})
        errors = [line for line in server.lines if " ERROR " in line]
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert not errors, "\n".join(errors[:20])
    assert " passed" in result.stdout and "generated" in result.stdout

"""Schemathesis fuzzes four example services from their own /docs.json: no request, valid or
not, may get a 5xx or a response that breaks the document (status, content type, body schema,
headers)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from live_server import serve

from .example_services import EXAMPLES

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance,response_headers_conformance")


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_no_server_errors_and_no_spec_violations(name: str, tmp_path: Path) -> None:
    with serve(EXAMPLES[name]()) as url:
        result = subprocess.run(
            [str(SCHEMATHESIS), "run", f"{url}/docs.json", "--checks", CHECKS,
             "--max-examples", "40", "--seed", "20261122", "--no-color"],
            capture_output=True, text=True, timeout=300, cwd=tmp_path)  # its cache lands there
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "generated" in result.stdout

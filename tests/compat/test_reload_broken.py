"""Issue 17, bug 5: with ``--reload``, a request sent while the edited service fails to import
is answered 503 at once with the import error's summary (it hung until the file was fixed)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from live_server import Served

GOOD = '''
import dosirak as bentoml
from dosirak.io import JSON

svc = bentoml.Service("reloading")


@svc.api(input=JSON(), output=JSON())
def version(body):
    return {"version": VERSION}


VERSION = %d
'''


def test_requests_during_a_broken_edit_get_503_with_the_error(tmp_path: Path) -> None:
    source = tmp_path / "service.py"
    source.write_text(GOOD % 1)
    with Served([f"{source}:svc", "--reload"], cwd=tmp_path) as server:
        assert server.post("/version", {})[2] == {"version": 1}
        mark = len(server.lines)
        source.write_text("import dosirak\nraise RuntimeError('the edit is broken')\n")
        server.wait_for(r"the service cannot start: .*the edit is broken", start=mark)
        start = time.monotonic()
        status, headers, body = server.request("POST", "/version", b"{}",
                                               {"content-type": "application/json"},
                                               timeout=10)
        assert time.monotonic() - start < 5
        assert status == 503, body
        assert "retry-after" in headers
        assert "the edit is broken" in json.loads(body)["error"]
        assert server.get("/readyz")[0] == 503
        # The next good edit serves again.
        source.write_text(GOOD % 2)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status, _, answer = server.post("/version", {})
            if status == 200:
                break
            time.sleep(0.1)
        assert answer == {"version": 2}
        assert server.stop() == 0

"""``@web_static_content('./static')``: the files are saved into the bento and served at ``/``,
with the APIs beside them and Swagger UI moved to ``/docs``."""

from __future__ import annotations

import json
from pathlib import Path

from legacy.seed import SEED_PACKER, SEED_SERVICE, renamed, run_python, write_project
from live_server import Served


def test_static_content_is_served_at_the_root_beside_the_apis(tmp_path: Path) -> None:
    service = renamed(SEED_SERVICE).replace(
        "from dosirak import env, artifacts, api, BentoService",
        "from dosirak import env, artifacts, api, BentoService, web_static_content").replace(
        "@env(infer_pip_packages=True)", "@web_static_content('./static')\n"
        "@env(infer_pip_packages=True)")
    project = write_project(tmp_path / "ui", service, renamed(SEED_PACKER))
    (project / "static" / "js").mkdir(parents=True)
    (project / "static" / "index.html").write_text("<h1>Iris UI</h1>")
    (project / "static" / "js" / "app.js").write_text("console.log('iris')")
    done = run_python(project, "bento_packer.py")
    assert done.returncode == 0, done.stderr
    (project / "static" / "index.html").write_text("changed after the save")
    with Served(["IrisClassifier:latest"], cwd=project) as server:
        assert server.get("/") == (200, b"<h1>Iris UI</h1>")  # the saved copy, not the folder
        assert server.get("/js/app.js") == (200, b"console.log('iris')")
        status, page = server.get("/docs")
        assert status == 200 and b"swagger" in page.lower()
        assert json.loads(server.get("/docs.json")[1])["paths"]["/predict"]
        status, _, answer = server.post("/predict", [[5.1, 3.5, 1.4, 0.2]])
        assert (status, answer) == (200, [0])
        assert server.get("/missing.html")[0] == 404

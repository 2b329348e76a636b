"""The generated Dockerfile: quoting, the stages, the named blocks, refusals (no engine needed;
the images built from it are tested in test_container_images.py)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

import dosirak
from conftest import HOSTILE_ENV, HOSTILE_PACKAGE, run_cli
from dosirak.deploy import plan
from dosirak.deploy.context import write_context
from dosirak.deploy.dockerfile import DockerfileSpec, quoted, render
from dosirak.exceptions import InvalidArgument

INSTRUCTIONS = {"FROM", "ENV", "RUN", "COPY", "LABEL", "USER", "WORKDIR", "EXPOSE",
                "HEALTHCHECK", "STOPSIGNAL", "ENTRYPOINT"}


def spec(**changes: object) -> DockerfileSpec:
    values: dict[str, object] = {"bento_tag": "iris:v1", "bento_digest": "d" * 64,
                                 "dosirak_version": "0.1.0", "base_image": "python:3.11-slim"}
    values.update(changes)
    return DockerfileSpec(**values)  # type: ignore[arg-type]


def unquote(word: str) -> str:
    """Docker's reading of a double-quoted word (moby's shell lexer: inside double quotes a
    backslash escapes only '"', '$' and itself; '$' starts a variable)."""
    assert word[0] == word[-1] == '"'
    out, i, body = [], 0, word[1:-1]
    while i < len(body):
        char = body[i]
        if char == "$":
            raise AssertionError(f"unescaped $ would expand: {word}")
        if char == '"':
            raise AssertionError(f"unescaped quote ends the word early: {word}")
        if char == "\\" and i + 1 < len(body) and body[i + 1] in '"$\\':
            out.append(body[i + 1])
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out)


def test_every_line_is_an_instruction_and_every_run_is_exec_form() -> None:
    text = render(spec(system_packages=["libgomp1", "sl; rm -rf /"],
                       envs=list(HOSTILE_ENV.items())))
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        assert instruction in INSTRUCTIONS, line
        if instruction in ("RUN", "ENTRYPOINT"):
            assert isinstance(json.loads(rest), list), line  # no shell form anywhere
    run = next(line for line in text.splitlines() if "system-packages.sh\"" in line)
    assert json.loads(run[4:])[2:] == ["libgomp1", "sl; rm -rf /"]


@pytest.mark.parametrize("value", [*HOSTILE_ENV.values(), "", "\\", "a\\", '"', "$", "\\$"])
def test_env_values_are_one_word_that_docker_reads_back_verbatim(value: str) -> None:
    word = quoted(value, "env X")
    assert unquote(word) == value
    assert not word.endswith("\\")  # never a line continuation
    line = next(line for line in render(spec(envs=[("X", value)])).splitlines()
                if line.startswith("ENV X="))
    assert unquote(line.removeprefix("ENV X=")) == value


@pytest.mark.parametrize(("changes", "message"), [
    ({"envs": [("X", "two\nlines")]}, "line break"),
    ({"envs": [("1X", "v")]}, "not valid"),
    ({"envs": [("A B", "v")]}, "not valid"),
    ({"envs": [("DOSIRAK_HOME", "/tmp")]}, "set by the image itself"),
    ({"system_packages": ["--allow-unauthenticated"]}, "leading '-'"),
    ({"system_packages": ["sl\nRUN id"]}, "line break"),
    ({"base_image": "python:3.11 AS x\nRUN id"}, "not an image reference"),
    ({"labels": {"k": "v\r\nRUN id"}}, "line break"),
])
def test_values_a_dockerfile_cannot_carry_are_refused(changes: dict[str, object],
                                                      message: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        render(spec(**changes))


def test_template_blocks_extend_the_generated_file_and_values_stay_data() -> None:
    template = ('{% extends bento_base_template %}\n'
                '{% block SETUP_BENTO_COMPONENTS %}{{ super() }}\nRUN ["true"]{% endblock %}\n'
                '{% block SETUP_BENTO_ENTRYPOINT %}# no entrypoint{% endblock %}')
    text = render(spec(template=template, envs=[("JINJA", "{{ 7 * 7 }}")]))
    assert 'RUN ["true"]' in text
    assert "ENTRYPOINT" not in text and "# no entrypoint" in text
    assert 'ENV JINJA="{{ 7 * 7 }}"' in text  # a value is never read as template syntax
    assert text.index("COPY home/") < text.index('RUN ["true"]')


@pytest.mark.parametrize(("template", "message"), [
    ("{% extends bento_base_template %}{% block NOPE %}x{% endblock %}", "unknown blocks NOPE"),
    ("FROM scratch", "must start with `{% extends bento_base_template %}`"),
    ("{% extends bento_base_template %}{% block SETUP_BENTO_USER %}{{ x.y }}{% endblock %}",
     "cannot be rendered"),
    ("{% extends bento_base_template %}{% block SETUP_BENTO_USER %}"
     "{{ ''.__class__.__mro__ }}{% endblock %}", "cannot be rendered"),
])
def test_bad_templates_are_refused_in_one_line(template: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(message)) as error:
        render(spec(template=template))
    assert "\n" not in str(error.value)


def test_no_vendor_installs_from_the_index_inside_the_build() -> None:
    vendored = render(spec())
    online = render(spec(vendor=False, pip_options=["--index-url", "https://example.org/s"]))
    assert '"--no-index"' in vendored and '"--no-index"' not in online
    assert '"--index-url", "https://example.org/s"' in online


def test_plan_of_a_real_bento_reads_its_environment(bento_home: str) -> None:
    the_plan = plan(dosirak.bentos.get(bento_home))
    text = the_plan.dockerfile
    assert text.count("FROM ") == 3 and "FROM python:3.11-slim AS base" in text
    assert json.dumps(HOSTILE_PACKAGE) in text
    assert "dosirak==0.1.0" in the_plan.requirements
    assert all("==" in line for line in the_plan.pinned) and "scikit-learn" in " ".join(
        the_plan.pinned)
    assert not any(line.startswith("dosirak") for line in the_plan.pinned)


def test_output_writes_a_context_that_holds_the_bento_models_and_wheels(
        bento_home: str, tmp_path: Path) -> None:
    out = tmp_path / "ctx"
    result = run_cli("containerize", bento_home, "--output", str(out),
                     home=Path(os.environ["DOSIRAK_HOME"]))
    assert "wrote the build context" in result.stdout
    name, version = bento_home.split(":")
    assert (out / "home" / "bentos" / name / version / "bento.yaml").is_file()
    assert len(list((out / "home" / "models" / "iris_clf").iterdir())) == 1
    wheels = {path.name.split("-")[0].lower() for path in (out / "env/python/wheels").iterdir()}
    assert {"dosirak", "numpy", "scikit_learn", "scipy", "uvicorn"} <= wheels
    assert (out / "env" / "setup_script").stat().st_mode & 0o111
    assert (out / "Dockerfile").read_text().startswith("# Generated by dosirak")
    with pytest.raises(InvalidArgument, match="not empty"):
        write_context(plan(dosirak.bentos.get(bento_home)), out)


def test_dry_run_prints_the_dockerfile_and_the_exact_command(bento_home: str,
                                                            container_engines: None) -> None:
    result = run_cli("containerize", bento_home, "--dry-run", "--backend", "podman",
                     "-t", "a:1", "--build-arg", "K=v w", "--platform", "linux/amd64",
                     home=Path(os.environ["DOSIRAK_HOME"]))
    assert "FROM python:3.11-slim AS base" in result.stdout
    command = result.stdout.strip().splitlines()[-1]
    assert command.startswith("# ") and "podman build --format docker --layers" in command
    assert "-t a:1 --build-arg 'K=v w' --platform linux/amd64 CONTEXT" in command

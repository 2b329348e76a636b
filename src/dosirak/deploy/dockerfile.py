"""The Dockerfile of a bento's image, with every value from the bentofile quoted.

    >>> text = render(DockerfileSpec(bento_tag="iris_classifier:abc", ...))

Three stages: ``base`` (the base image, system packages, the user), ``python-packages`` (a venv
filled from the context's wheels with ``--no-index``: no network; only the venv leaves this stage,
so the wheels add no layer to the image) and the final image (venv, bento and models, setup
script, labels, user, port, health check, entrypoint).

Quoting: a value reaches the Dockerfile either inside a JSON array (the exec form of ``RUN``,
``HEALTHCHECK`` and ``ENTRYPOINT``: no shell, no variable expansion; a shell script given the
values as arguments uses them only as ``"$@"``), or as a double-quoted word of ``ENV`` and
``LABEL``, where ``\\``, ``"`` and ``$`` are escaped (the only characters special there). Values
that a Dockerfile line cannot hold (line breaks, NUL) are refused.

``docker.dockerfile_template`` is a Jinja2 template that extends ``bento_base_template`` and
overrides its blocks (BentoML's names): ``SETUP_BENTO_BASE_IMAGE``, ``SETUP_BENTO_USER`` (base
stage), ``SETUP_BENTO_ENVARS``, ``SETUP_BENTO_COMPONENTS``, ``SETUP_BENTO_ENTRYPOINT`` (final
stage); ``{{ super() }}`` keeps the generated lines.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from dosirak.exceptions import InvalidArgument

PORT = 3000  # where the image serves (a BentoML 0.x service's image: 5000, as 0.x's did)
UID = 1034  # numeric, so that Kubernetes' runAsNonRoot can check it without /etc/passwd
USER = "dosirak"
ROOT = "/opt/dosirak"
VENV = f"{ROOT}/venv"
HOME = f"{ROOT}/home"  # DOSIRAK_HOME in the image: the bento and its models, read-only
BUILD = f"{ROOT}/build"
PYTHON = f"{VENV}/bin/python"
BLOCKS = ("SETUP_BENTO_BASE_IMAGE", "SETUP_BENTO_USER", "SETUP_BENTO_ENVARS",
          "SETUP_BENTO_COMPONENTS", "SETUP_BENTO_ENTRYPOINT")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RESERVED_ENV = {"PATH", "DOSIRAK_HOME", "DOSIRAK_BENTO"}


@dataclass
class DockerfileSpec:
    """What the Dockerfile is made from; paths are relative to the build context."""

    bento_tag: str
    bento_digest: str
    dosirak_version: str
    base_image: str
    system_packages: list[str] = field(default_factory=list)
    envs: list[tuple[str, str]] = field(default_factory=list)
    setup_script: str | None = None  # context path of the script
    setup_script_shebang: bool = False
    vendor: bool = True
    pip_options: list[str] = field(default_factory=list)  # index options for --no-vendor
    labels: dict[str, str] = field(default_factory=dict)
    template: str | None = None  # the docker.dockerfile_template text
    port: int = PORT  # the image's PORT and EXPOSE


def json_array(args: Sequence[str]) -> str:
    """The exec form of ``RUN``/``CMD``/``ENTRYPOINT``: a JSON array, no shell."""
    return json.dumps([str(arg) for arg in args])


def quoted(value: str, what: str) -> str:
    """``value`` as one double-quoted Dockerfile word, taken verbatim by ENV and LABEL."""
    if any(char in value for char in "\n\r\0"):
        raise InvalidArgument(f"{what} = {value!r} holds a line break or NUL, which a "
                              "Dockerfile cannot carry; put the value in a file of the bento "
                              "and read it at run time")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def check_env_name(name: str) -> str:
    if not _ENV_NAME.fullmatch(name):
        raise InvalidArgument(f"environment variable name {name!r} is not valid; use letters, "
                              "digits and '_', not starting with a digit (e.g. MODEL_DIR)")
    if name in _RESERVED_ENV:
        raise InvalidArgument(f"environment variable {name} is set by the image itself "
                              "(dosirak needs it to find its venv and the bento); choose "
                              "another name")
    return name


def check_system_package(name: str) -> str:
    if not name.strip() or name.startswith("-") or any(c in name for c in "\n\r\0"):
        raise InvalidArgument(f"docker.system_packages entry {name!r} is not a package name "
                              "(empty, a line break, or a leading '-' that apt-get would read "
                              "as an option); write Debian package names such as 'libgomp1'")
    return name


def blocks(spec: DockerfileSpec) -> dict[str, str]:
    """The generated lines of each named block, plus the fixed stage lines between them."""
    pip_install = ["install", "--no-cache-dir", "--disable-pip-version-check",
                   "--no-warn-script-location", "--find-links", f"{ROOT}/python/wheels"]
    pip_install += ["--no-index"] if spec.vendor else spec.pip_options
    pip_install += ["-r", f"{ROOT}/python/requirements.txt"]

    base = [f"FROM {_image_reference(spec.base_image)} AS base",
            "ENV LANG=C.UTF-8 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1"]
    if spec.system_packages:
        packages = [check_system_package(name) for name in spec.system_packages]
        base += [f"COPY env/system-packages.sh {BUILD}/system-packages.sh",
                 f"RUN {json_array(['/bin/sh', f'{BUILD}/system-packages.sh', *packages])}"]
    user = [f"RUN {json_array(['/bin/sh', '-c', _ADD_USER])}"]
    python_stage = [
        "FROM base AS python-packages",
        f"COPY env/python/ {ROOT}/python/",
        # The base's pip installs into a venv that has none: no pip in the image.
        f"RUN {json_array(['python3', '-m', 'venv', '--without-pip', VENV])}",
        f"RUN {json_array(['python3', '-m', 'pip', '--python', PYTHON, *pip_install])}",
    ]
    envars = [f"ENV PATH={quoted(f'{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'PATH')}"]  # noqa: E501
    envars.append(f"ENV DOSIRAK_HOME={HOME} DOSIRAK_BENTO={quoted(spec.bento_tag, 'bento tag')} "
                  f"PORT={spec.port} DOSIRAK_HOST=0.0.0.0")
    for name, value in spec.envs:  # after the defaults: a bentofile may set PORT, DOSIRAK_HOST
        envars.append(f"ENV {check_env_name(name)}={quoted(value, f'env {name}')}")
    components = [
        "FROM base",  # stage line, kept out of the user's blocks
        f"COPY --from=python-packages {VENV} {VENV}",
        f"COPY home/ {HOME}/",
        # Compiled once here: the non-root user cannot write __pycache__ next to the sources.
        f"RUN {json_array([PYTHON, '-m', 'compileall', '-q', HOME])}",
        # The stores' own folders belong to the user (bookkeeping such as leases and drafts);
        # each stored version stays root's, read-only to the server.
        f"RUN {json_array(['chown', f'{UID}:{UID}', HOME, f'{HOME}/bentos', f'{HOME}/models'])}",
    ]
    if spec.setup_script:
        script = f"{BUILD}/setup_script"
        command = [script] if spec.setup_script_shebang else ["/bin/sh", script]
        components += [f"COPY {spec.setup_script} {script}", f"RUN {json_array(command)}"]
    labels = {
        "org.opencontainers.image.title": spec.bento_tag.partition(":")[0],
        "org.opencontainers.image.version": spec.bento_tag.partition(":")[2],
        "org.opencontainers.image.description": f"dosirak bento {spec.bento_tag}",
        "org.opencontainers.image.base.name": spec.base_image,
        "dev.dosirak.bento.tag": spec.bento_tag,
        "dev.dosirak.bento.digest": spec.bento_digest,
        "dev.dosirak.version": spec.dosirak_version,
        **spec.labels,
    }
    entry = [
        "LABEL " + " ".join(f"{quoted(key, 'label')}={quoted(value, f'label {key}')}"
                            for key, value in labels.items()),
        f"USER {UID}:{UID}",
        f"WORKDIR /home/{USER}",
        f"EXPOSE {spec.port}",
        "HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 "
        f"CMD {json_array([PYTHON, '-m', 'dosirak.deploy.healthcheck'])}",
        "STOPSIGNAL SIGTERM",
        # Exec form: the entrypoint is PID 1 and gets docker stop's SIGTERM itself.
        f"ENTRYPOINT {json_array([PYTHON, '-m', 'dosirak.deploy.entrypoint'])}",
    ]
    return {"SETUP_BENTO_BASE_IMAGE": "\n".join(base), "SETUP_BENTO_USER": "\n".join(user),
            "python_stage": "\n".join(python_stage), "components_stage": components[0],
            "SETUP_BENTO_ENVARS": "\n".join(envars),
            "SETUP_BENTO_COMPONENTS": "\n".join(components[1:]),
            "SETUP_BENTO_ENTRYPOINT": "\n".join(entry)}


_ADD_USER = (f"groupadd --system --gid {UID} {USER} && useradd --system --uid {UID} --gid {UID} "
             f"--create-home --home-dir /home/{USER} --shell /usr/sbin/nologin {USER}")

# The base template: each block's text comes in as a variable, so nothing from the bentofile is
# ever read as template syntax.
_BASE_TEMPLATE = """\
{% block SETUP_BENTO_BASE_IMAGE %}{{ b.SETUP_BENTO_BASE_IMAGE }}{% endblock %}
{% block SETUP_BENTO_USER %}{{ b.SETUP_BENTO_USER }}{% endblock %}

{{ b.python_stage }}

{{ b.components_stage }}
{% block SETUP_BENTO_ENVARS %}{{ b.SETUP_BENTO_ENVARS }}{% endblock %}
{% block SETUP_BENTO_COMPONENTS %}{{ b.SETUP_BENTO_COMPONENTS }}{% endblock %}
{% block SETUP_BENTO_ENTRYPOINT %}{{ b.SETUP_BENTO_ENTRYPOINT }}{% endblock %}
"""


def render(spec: DockerfileSpec) -> str:
    """The whole Dockerfile text."""
    parts = blocks(spec)
    header = (f"# Generated by dosirak {spec.dosirak_version} for the bento {spec.bento_tag}.\n"
              f"# Build context: written by `dosirak containerize`; see its --output.\n")
    if spec.template is None:
        order = ("SETUP_BENTO_BASE_IMAGE", "SETUP_BENTO_USER", "", "python_stage", "",
                 "components_stage", "SETUP_BENTO_ENVARS", "SETUP_BENTO_COMPONENTS",
                 "SETUP_BENTO_ENTRYPOINT")
        return header + "\n".join(parts[key] if key else "" for key in order) + "\n"
    return header + _render_template(spec.template, parts).strip("\n") + "\n"


def _render_template(template: str, parts: dict[str, str]) -> str:
    import jinja2
    from jinja2.sandbox import SandboxedEnvironment

    environment = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False,
                                       keep_trailing_newline=True)
    try:
        base = environment.from_string(_BASE_TEMPLATE, globals={"b": parts})
        user = environment.from_string(template)
        if "bento_base_template" not in template:
            raise InvalidArgument("docker.dockerfile_template must start with "
                                  "`{% extends bento_base_template %}` and override blocks ("
                                  + ", ".join(BLOCKS) + ")")
        unknown = set(user.blocks) - set(BLOCKS)
        if unknown:
            raise InvalidArgument(f"docker.dockerfile_template overrides unknown blocks "
                                  f"{', '.join(sorted(unknown))}; the blocks are "
                                  + ", ".join(BLOCKS))
        return user.render(bento_base_template=base, b=parts)
    except jinja2.TemplateError as error:
        line = getattr(error, "lineno", None)
        where = f" at line {line}" if line else ""
        raise InvalidArgument(f"docker.dockerfile_template cannot be rendered{where}: "
                              f"{error}") from None


def _image_reference(image: str) -> str:
    # FROM takes one word; a reference has no spaces or quotes (registry/name:tag@digest).
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]*", image):
        raise InvalidArgument(f"docker.base_image {image!r} is not an image reference; write "
                              "e.g. 'python:3.11-slim' or 'registry.example.com/team/py:3.11'")
    return image

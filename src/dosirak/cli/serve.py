"""``dosirak serve TARGET``: serve a service over HTTP."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click


def _absolute(path: str | None) -> str | None:
    return None if path is None else str(Path(path).absolute())


@click.command(context_settings={"show_default": True})
@click.argument("target", default=".")
@click.option("--host", default=None, help="Address to listen on [default: 127.0.0.1, or the "
              "configuration's api_server.host]; 0.0.0.0 for every interface.")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="TCP port [default: 3000, or api_server.port]; 0 picks a free one.")
@click.option("--workers", "--api-workers", "workers", type=click.IntRange(min=1), default=None,
              help="API worker processes [default: api_server.workers, 1].")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Seconds a request may take before it is answered 504 "
              "[default: api_server.timeout, 60].")
@click.option("--backlog", type=click.IntRange(min=1), default=None,
              help="Connections the kernel queues before they are accepted "
              "[default: api_server.backlog, 2048].")
@click.option("--working-dir", type=click.Path(file_okay=False, exists=True), default=None,
              help="Directory to serve TARGET from (its modules import from there) "
              "[default: the current directory].")
@click.option("--reload", is_flag=True, help="Restart the workers when the service's sources "
              "change (development).")
@click.option("--development", is_flag=True, help="Serve from this one process, every runner "
              "in it.")
@click.option("--production", is_flag=True, help="Accepted for BentoML 1.x scripts: dosirak "
              "always serves for production (several workers, graceful stop) unless "
              "--development is given.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              envvar="DOSIRAK_CONFIG", show_envvar=True,
              help="Serving configuration (YAML); DOSIRAK_CONFIG_OPTIONS overrides its keys.")
@click.option("--ssl-certfile", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Serve HTTPS with this PEM certificate (chain).")
@click.option("--ssl-keyfile", type=click.Path(dir_okay=False, exists=True), default=None,
              help="The PEM private key of --ssl-certfile.")
@click.option("--ssl-keyfile-password", default=None, help="Password of an encrypted "
              "--ssl-keyfile.")
@click.option("--ssl-ca-certs", type=click.Path(dir_okay=False, exists=True), default=None,
              help="CA bundle to verify client certificates with (with --ssl-cert-reqs).")
@click.option("--ssl-cert-reqs", type=click.IntRange(0, 2), default=None,
              help="Client certificates: 0 not asked, 1 verified when sent, 2 required.")
@click.option("--ssl-ciphers", default=None, help="OpenSSL cipher list [default: TLSv1].")
def serve(target: str, host: str | None, port: int | None, workers: int | None,
          timeout: float | None, backlog: int | None, working_dir: str | None, reload: bool,
          development: bool, production: bool, config_file: str | None,
          ssl_certfile: str | None, ssl_keyfile: str | None, ssl_keyfile_password: str | None,
          ssl_ca_certs: str | None, ssl_cert_reqs: int | None,
          ssl_ciphers: str | None) -> None:
    """Serve the service TARGET over HTTP until SIGTERM or Ctrl-C.

    TARGET is module:svc (importable from the current directory), path/to/file.py:svc, a
    directory holding service.py (or a bentofile.yaml naming the service), or the tag of a
    built bento (name, name:latest, name:version) when no such path or module exists. Without
    ':svc' the one Service the module defines is served.

    \b
    Examples:
      dosirak serve service.py:svc
      dosirak serve iris_classifier:latest
      dosirak serve service:svc --reload
      dosirak serve examples/iris --workers 2 --port 8080
      dosirak serve service:svc --ssl-certfile cert.pem --ssl-keyfile key.pem
    """
    from dosirak.serve import serve as run

    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise click.UsageError("--ssl-certfile and --ssl-keyfile go together: give both (the "
                               "certificate and its private key) to serve HTTPS")
    options: dict[str, Any] = {
        "api_server.timeout": timeout, "api_server.backlog": backlog,
        "api_server.ssl.certfile": _absolute(ssl_certfile),
        "api_server.ssl.keyfile": _absolute(ssl_keyfile),
        "api_server.ssl.keyfile_password": ssl_keyfile_password,
        "api_server.ssl.ca_certs": _absolute(ssl_ca_certs),
        "api_server.ssl.cert_reqs": ssl_cert_reqs, "api_server.ssl.ciphers": ssl_ciphers,
    }
    if working_dir is not None:
        # Paths on the command line keep meaning what they meant where the user typed them.
        config_file = _absolute(config_file)
        os.chdir(working_dir)
    sys.exit(run(target, host=host, port=port, workers=workers, reload=reload,
                 development=development, config_file=config_file, options=options))

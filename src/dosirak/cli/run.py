"""``dosirak run TARGET API --input JSON``: one call of an API, no HTTP server, result on stdout."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from dosirak.exceptions import InvalidArgument


@click.command("run")
@click.argument("target")
@click.argument("api")
@click.option("--input", "input_text", help="The request body as text (JSON for most APIs).")
@click.option("--input-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Read the request body from a file (.json .csv .parquet .npy .txt .png ...).")
@click.option("--content-type", help="The body's media type (default: from the file's "
              "extension, else JSON when the API reads JSON).")
@click.option("--accept", help="The media type of the answer, e.g. application/x-npy.")
@click.option("--output", "output_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the answer to this file instead of stdout.")
def run(target: str, api: str, input_text: str | None, input_file: Path | None,
        content_type: str | None, accept: str | None, output_file: Path | None) -> None:
    """Call API of TARGET once and print the answer, as the HTTP API would send it.

    TARGET is module:svc, path/to/file.py:svc, a directory with service.py, a bento tag, or a
    generic service config (.yaml, .yml, .json). Exit status 1 when the API fails (the failure
    body is printed all the same).

        dosirak run service:svc classify --input '[[5.1, 3.5, 1.4, 0.2]]'
    """
    from dosirak.offline.run import input_media_type, run_once
    from dosirak.offline.target import load_target

    if (input_text is None) == (input_file is None):
        raise InvalidArgument("give the request body with exactly one of --input TEXT or "
                              "--input-file PATH")
    if input_file is not None:
        try:
            body = input_file.read_bytes()
        except OSError as error:
            raise InvalidArgument(f"cannot read --input-file {input_file}: "
                                  f"{error.strerror or error}") from None
    else:
        body = (input_text or "").encode("utf-8")
    svc = load_target(target)
    media_type = content_type or input_media_type(svc, api, input_file)
    answer = run_once(svc, api, body, media_type, accept)
    if output_file is not None:
        output_file.write_bytes(answer.body)
    elif _is_text(answer.content_type):
        click.echo(answer.body.decode("utf-8"))
    elif sys.stdout.isatty():
        raise InvalidArgument(f"the answer is {answer.content_type} (binary): write it to a "
                              "file with --output PATH")
    else:
        sys.stdout.buffer.write(answer.body)
        sys.stdout.buffer.flush()
    if not answer.ok:
        click.echo(f"error: {api} failed with status {answer.status}", err=True)
        sys.exit(1)


def _is_text(content_type: str) -> bool:
    return content_type.startswith(("application/json", "text/"))

"""``dosirak containerize`` (an OCI image of a bento) and ``dosirak deploy kubernetes|compose``
(manifests that run it)."""

from __future__ import annotations

import shlex
from pathlib import Path

import click


def _pairs(_context: object, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r} is not KEY=VALUE", param=param)
        pairs[key] = text
    return pairs


@click.command()
@click.argument("tag")
@click.option("-t", "--image-tag", "image_tags", multiple=True, metavar="IMAGE",
              help="Name and tag of the image; repeat for more [default: the bento's "
                   "name:version].")
@click.option("--backend", type=click.Choice(["auto", "docker", "podman", "buildah"]),
              default="auto", show_default=True,
              help="The engine; auto: docker if its daemon answers, else podman, else buildah.")
@click.option("--output", type=click.Path(file_okay=False), default=None,
              help="Write the build context (Dockerfile, bento, models, wheels) into this new "
                   "directory and build nothing.")
@click.option("--build-arg", "build_args", multiple=True, callback=_pairs, metavar="K=V",
              help="A build argument for the engine; repeat for more.")
@click.option("--platform", default=None, metavar="OS/ARCH",
              help="Target platform, e.g. linux/arm64 [default: this machine's].")
@click.option("--dry-run", is_flag=True,
              help="Print the Dockerfile and the exact engine command; build nothing.")
@click.option("--no-vendor", is_flag=True,
              help="Install the requirements from the package index inside the build, instead "
                   "of wheels fetched on this machine (the build then needs the network).")
def containerize(tag: str, image_tags: tuple[str, ...], backend: str, output: str | None,
                 build_args: dict[str, str], platform: str | None, dry_run: bool,
                 no_vendor: bool) -> None:
    """Build an OCI image of the bento TAG (name, name:latest or name:version).

    \b
    Examples:
      dosirak containerize iris_classifier:latest -t iris-classifier
      dosirak containerize iris_classifier --backend podman --platform linux/arm64
      dosirak containerize iris_classifier --output build/iris   # context only
    """
    from dosirak.deploy import containerize as run

    def report(line: str) -> None:
        click.echo(line, err=True)

    result = run(tag, tags=image_tags, backend=backend, output=output, build_args=build_args,
                 platform=platform, dry_run=dry_run, vendor=not no_vendor, report=report,
                 build_output=report)
    if dry_run:
        click.echo(result.plan.dockerfile, nl=False)
        assert result.command is not None
        click.echo(f"# {result.backend.name if result.backend else ''} command:")
        click.echo(f"# {shlex.join(result.command)}")
    elif result.context is not None:
        click.echo(f"wrote the build context of {result.plan.bento.tag} to {result.context}; "
                   f"build it with: docker build -t {shlex.quote(result.tags[0])} "
                   f"{shlex.quote(str(result.context))}")
    else:
        assert result.backend is not None
        port = result.plan.spec.port
        click.echo(f"built {', '.join(result.tags)} ({result.image_id}) with "
                   f"{result.backend.name}; run it with: {Path(result.backend.executable).name} "
                   f"run --rm -p {port}:{port} {shlex.quote(result.tags[0])}")


@click.group()
def deploy() -> None:
    """Manifests that run a bento's image: Kubernetes (no operator) or compose (one machine)."""


def _graceful_timeout(config_file: str | None) -> float:
    from dosirak.config import load_config

    return load_config(config_file).api_server.graceful_timeout


_CONFIG_OPTION = click.option(
    "--config", "config_file", type=click.Path(dir_okay=False), default=None,
    envvar="DOSIRAK_CONFIG", help="The serving configuration the image runs with (its "
    "graceful_timeout sets the grace period) [default: dosirak's defaults].")


@deploy.command()
@click.argument("tag")
@click.option("--image", required=True, help="The image to run (as pushed to a registry).")
@click.option("--name", default=None, help="Name of the objects [default: the bento's name].")
@click.option("--replicas", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--min-replicas", type=click.IntRange(min=1), default=None,
              help="Autoscaling floor [default: --replicas].")
@click.option("--max-replicas", type=click.IntRange(min=1), default=None,
              help="Autoscaling ceiling [default: --min-replicas].")
@click.option("--target-cpu", type=click.IntRange(1, 100), default=70, show_default=True,
              help="Average CPU use (% of the request) the autoscaler aims at.")
@click.option("--cpu", default="500m", show_default=True, help="CPU request per pod.")
@click.option("--memory", default="512Mi", show_default=True,
              help="Memory request and limit per pod.")
@click.option("--namespace", default=None)
@click.option("--output", type=click.Path(file_okay=False), default=None,
              help="Write one file per object into this directory [default: stdout].")
@_CONFIG_OPTION
def kubernetes(tag: str, image: str, name: str | None, replicas: int, min_replicas: int | None,
               max_replicas: int | None, target_cpu: int, cpu: str, memory: str,
               namespace: str | None, output: str | None, config_file: str | None) -> None:
    """Deployment, Service, HorizontalPodAutoscaler and PodDisruptionBudget for TAG's IMAGE.

    \b
    Example:
      dosirak deploy kubernetes iris_classifier --image registry.example.com/iris:1 \\
          --min-replicas 2 --max-replicas 10 --output k8s/ && kubectl apply -f k8s/
    """
    from dosirak import bentos
    from dosirak.deploy import kubernetes as k8s

    bento = bentos.get(tag)
    options = k8s.KubernetesOptions(
        name=name or k8s.default_name(str(bento.tag)), image=image, bento_tag=str(bento.tag),
        replicas=replicas, min_replicas=min_replicas, max_replicas=max_replicas,
        target_cpu=target_cpu, cpu=cpu, memory=memory, namespace=namespace,
        graceful_timeout=_graceful_timeout(config_file))
    documents = k8s.manifests(options)
    if output is None:
        click.echo(k8s.dump_all(documents), nl=False)
        return
    for path in k8s.write_manifests(documents, Path(output)):
        click.echo(f"wrote {path}", err=True)


@deploy.command()
@click.argument("tag")
@click.option("--image", required=True, help="The image to run.")
@click.option("--name", default=None, help="The compose service [default: the bento's name].")
@click.option("--port", type=click.IntRange(1, 65535), default=3000, show_default=True,
              help="Port published on the host.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Host address the port is published on (0.0.0.0: every interface).")
@click.option("--memory", default=None, help="Memory limit, e.g. 1g.")
@click.option("--output", type=click.Path(dir_okay=False), default=None,
              help="Write the compose file here [default: stdout].")
@_CONFIG_OPTION
def compose(tag: str, image: str, name: str | None, port: int, host: str, memory: str | None,
            output: str | None, config_file: str | None) -> None:
    """A compose file that runs TAG's IMAGE on this machine (docker compose up -d)."""
    from dosirak import bentos
    from dosirak.deploy.compose import ComposeOptions, compose_file
    from dosirak.deploy.kubernetes import default_name

    bento = bentos.get(tag)
    text = compose_file(ComposeOptions(
        name=name or default_name(str(bento.tag)), image=image, bento_tag=str(bento.tag),
        port=port, host=host, graceful_timeout=_graceful_timeout(config_file), memory=memory))
    if output is None:
        click.echo(text, nl=False)
    else:
        Path(output).write_text(text, "utf-8")
        click.echo(f"wrote {output}", err=True)

"""``dosirak serve`` flags BentoML 1.x users type: ``--production``, ``--api-workers``,
``--timeout``, ``--working-dir``, ``--backlog`` and TLS (``--ssl-*``, with a certificate
authority, server and client certificates this test makes)."""

from __future__ import annotations

import datetime
import ipaddress
import json
import shutil
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest

from live_server import Served

from .serving import write_service

SERVICE = '''
import os
import time

import dosirak as bentoml
from dosirak.io import JSON

svc = bentoml.Service("flags")


@svc.api(input=JSON(), output=JSON())
def pid(body):
    return {"pid": os.getpid()}


@svc.api(input=JSON(), output=JSON())
async def slow(body):
    import asyncio

    await asyncio.sleep(body["seconds"])
    return {"slept": body["seconds"]}
'''


def test_production_api_workers_timeout_working_dir_backlog(tmp_path: Path) -> None:
    project = tmp_path / "project"
    write_service(project, SERVICE)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with Served(["service:svc", "--production", "--api-workers", "2", "--timeout", "1",
                 "--working-dir", str(project), "--backlog", "77"], cwd=elsewhere) as server:
        assert len(server.children()) == 2  # --api-workers is --workers
        assert server.post("/pid", {})[0] == 200  # service:svc found in --working-dir
        status, _, body = server.post("/slow", {"seconds": 3})
        assert status == 504 and "timeout of 1 s" in body["error"]
        assert server.post("/slow", {"seconds": 0.01})[0] == 200
        if shutil.which("ss"):
            listing = subprocess.run(["ss", "-ltnH", f"sport = :{server.port}"],
                                     capture_output=True, text=True, check=True).stdout
            assert listing.split()[2] == "77", listing  # Send-Q of a listener: its backlog


def _certificates(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def issue(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
              signer: ec.EllipticCurvePrivateKey, ca: bool, san: bool) -> x509.Certificate:
        builder = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(issuer)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return builder.sign(signer, hashes.SHA256())

    files = {}
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = issue("dosirak test CA", ca_key, name("dosirak test CA"), ca_key, True, False)
    for role, san in (("server", True), ("client", False)):
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = issue(f"dosirak test {role}", key, ca.subject, ca_key, False, san)
        files[f"{role}_cert"] = directory / f"{role}.pem"
        files[f"{role}_cert"].write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        files[f"{role}_key"] = directory / f"{role}-key.pem"
        files[f"{role}_key"].write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        files[f"{role}_key"].chmod(0o600)
    files["ca"] = directory / "ca.pem"
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return files


@pytest.mark.parametrize("mutual", [False, True])
def test_tls_with_a_certificate_the_test_makes(tmp_path: Path, mutual: bool) -> None:
    files = _certificates(tmp_path)
    write_service(tmp_path / "svc", SERVICE)
    args = ["service.py:svc", "--ssl-certfile", str(files["server_cert"]),
            "--ssl-keyfile", str(files["server_key"])]
    if mutual:
        args += ["--ssl-ca-certs", str(files["ca"]), "--ssl-cert-reqs", "2"]
    with Served(args, cwd=tmp_path / "svc", wait=False) as server:
        url = server.wait_for(r"is ready at (https://\S+?)[ ;(]", timeout=60).group(1)
        trusted = ssl.create_default_context(cafile=str(files["ca"]))
        if mutual:
            trusted.load_cert_chain(files["client_cert"], files["client_key"])
        answer = httpx.post(f"{url}/pid", json={}, verify=trusted, timeout=10)
        assert answer.status_code == 200 and "pid" in answer.json()
        # Without the CA, the certificate is not trusted; plain HTTP is not spoken.
        with pytest.raises(httpx.ConnectError):
            httpx.post(f"{url}/pid", json={}, timeout=10)
        with pytest.raises(httpx.HTTPError):
            httpx.post(url.replace("https://", "http://") + "/pid", json={}, timeout=10)
        if mutual:  # no client certificate: refused
            with pytest.raises(httpx.HTTPError):
                httpx.post(f"{url}/pid", json={}, timeout=10,
                           verify=ssl.create_default_context(cafile=str(files["ca"])))
    assert json.dumps(answer.json())


def test_certfile_without_keyfile_is_a_usage_error(tmp_path: Path) -> None:
    files = _certificates(tmp_path)
    result = subprocess.run([str(Path(__import__("sys").executable).parent / "dosirak"),
                             "serve", "x:svc", "--ssl-certfile", str(files["server_cert"])],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "go together" in result.stderr

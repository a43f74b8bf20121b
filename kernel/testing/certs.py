"""Throwaway TLS certificates for tests, made with the ``openssl`` command.

``make_test_certs(directory)`` writes a CA, a server certificate for ``127.0.0.1`` and
``localhost`` and a client certificate, both signed by that CA, and returns their paths.
Private keys are written mode 0600. Only the standard library is used; a missing ``openssl``
raises ``CertError`` (tests skip on it with ``openssl_available()``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CertError", "TestCerts", "make_test_certs", "openssl_available"]


class CertError(RuntimeError):
    """The test certificates could not be made."""


@dataclass(frozen=True)
class TestCerts:
    """Paths of PEM files: the CA, a server cert/key (127.0.0.1, localhost), a client cert/key."""

    __test__ = False  # not a pytest test class

    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    directory: str


def openssl_available() -> bool:
    """Whether the ``openssl`` command is on PATH."""
    return shutil.which("openssl") is not None


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise CertError("the openssl command is not on PATH; install it (apt-get install openssl)")
    result = subprocess.run([openssl, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise CertError(f"openssl {' '.join(args[:2])} failed: {result.stderr.strip()}")


def _key(cwd: Path, name: str) -> None:
    """An EC P-256 private key (fast to make, accepted by grpc, etcd and Redis), mode 0600."""
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-out", name, cwd=cwd)
    os.chmod(cwd / name, 0o600)


def _signed(cwd: Path, name: str, subject: str, extensions: str) -> None:
    _key(cwd, f"{name}.key")
    _openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=cwd)
    (cwd / f"{name}.ext").write_text(extensions)
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-sha256", "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=cwd,
    )  # fmt: skip


def make_test_certs(directory: str | os.PathLike[str]) -> TestCerts:
    """Write a test CA and server and client certificates signed by it into ``directory``."""
    cwd = Path(directory)
    cwd.mkdir(parents=True, exist_ok=True)
    _key(cwd, "ca.key")
    _openssl(
        "req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=microray test CA", "-days", "2",
        "-sha256", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", "ca.pem", cwd=cwd,
    )  # fmt: skip
    both = "extendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n"
    # Server certs also serve as client certs between etcd peers, hence both usages.
    _signed(cwd, "server", "/CN=localhost", f"subjectAltName=IP:127.0.0.1,DNS:localhost\n{both}")
    _signed(cwd, "client", "/CN=microray-client", "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n")
    return TestCerts(
        ca=str(cwd / "ca.pem"),
        server_cert=str(cwd / "server.pem"),
        server_key=str(cwd / "server.key"),
        client_cert=str(cwd / "client.pem"),
        client_key=str(cwd / "client.key"),
        directory=str(cwd),
    )

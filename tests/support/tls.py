"""A throw-away certificate authority and server certificate, made with `openssl`.

The CA is marked as one (basicConstraints CA:TRUE, keyCertSign) and the server
certificate carries subjectAltName DNS:localhost and IP:127.0.0.1 with
serverAuth and the key identifiers, so Python's strict verification (the
default from 3.13 on, VERIFY_X509_STRICT) accepts it as well.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.needs import need_tool


@dataclass(frozen=True)
class Certificates:
    ca: Path
    cert: Path
    key: Path
    other_ca: Path  # a CA that signed nothing here: verification against it must fail


def _openssl(openssl: str, *args: str, cwd: Path) -> None:
    done = subprocess.run([openssl, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)}: {done.stderr.strip()}")


def _make_ca(openssl: str, directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    _openssl(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
             "-days", "2", "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert),
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-addext", "subjectKeyIdentifier=hash", cwd=directory)
    return cert, key


def make_certificates(directory: Path, hostname: str = "localhost") -> Certificates:
    openssl = need_tool("openssl", "apt-get install openssl (.ci/install-security-tools.sh)")
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = _make_ca(openssl, directory, "warren-test-ca")
    other_ca, _ = _make_ca(openssl, directory, "unrelated-ca")
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    _openssl(openssl, "req", "-newkey", "rsa:2048", "-nodes", "-sha256", "-subj",
             f"/CN={hostname}", "-keyout", str(key), "-out", str(csr), cwd=directory)
    extensions = directory / "server.ext"
    extensions.write_text(
        f"subjectAltName = DNS:{hostname}, IP:127.0.0.1\n"
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature, keyEncipherment\n"
        "extendedKeyUsage = serverAuth\n"
        "subjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid, issuer\n")
    _openssl(openssl, "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
             "-CAcreateserial", "-days", "2", "-sha256", "-extfile", str(extensions),
             "-out", str(cert), cwd=directory)
    for path in (key, ca_key):
        path.chmod(0o600)
    return Certificates(ca=ca, cert=cert, key=key, other_ca=other_ca)


def tls_config(port: int, certs: Certificates) -> str:
    """rabbitmq.conf lines for a TLS listener (no client certificates asked for)."""
    return (f"listeners.ssl.default = 127.0.0.1:{port}\n"
            f"ssl_options.cacertfile = {certs.ca}\n"
            f"ssl_options.certfile = {certs.cert}\n"
            f"ssl_options.keyfile = {certs.key}\n"
            "ssl_options.verify = verify_none\n"
            "ssl_options.fail_if_no_peer_cert = false\n")

"""Certificates and keys of a dev cluster (a CA, the admin identity, the service-account key)."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=3650)


@dataclass(frozen=True)
class Pki:
    """Paths of the PEM files one dev cluster uses (all in its `pki/` directory)."""

    directory: Path

    @property
    def ca_crt(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def admin_crt(self) -> Path:
        """Client cert of `admin` (group system:masters); also the servers' serving cert."""
        return self.directory / "admin.crt"

    @property
    def admin_key(self) -> Path:
        return self.directory / "admin.key"

    @property
    def sa_key(self) -> Path:
        """RSA key that signs and verifies service-account tokens."""
        return self.directory / "sa.key"

    def exists(self) -> bool:
        """Whether every file is already there (certificates are reused across restarts)."""
        files = (self.ca_crt, self.ca_key, self.admin_crt, self.admin_key, self.sa_key)
        return all(p.is_file() for p in files)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _certificate(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey,
                 now: dt.datetime, *, ca: bool) -> x509.CertificateBuilder:
    """What every certificate of the dev cluster has: its names and key, a fresh serial, the
    validity from ``now``, and whether it is a CA (critical); the caller adds the usages."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )


def create_pki(directory: Path, cluster: str) -> Pki:
    """Create the CA, the admin pair and the service-account key, unless already present.

    Args:
        directory: where the PEM files go (created 0700).
        cluster: the cluster's name, used in the CA's common name.

    Returns:
        The paths of the files.
    """
    pki = Pki(directory)
    if pki.exists():
        return pki
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"ansflow-dev-cluster-{cluster}-ca")
    ca_cert = (
        _certificate(ca_name, ca_name, ca_key.public_key(), now, ca=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    admin_key = ec.generate_private_key(ec.SECP256R1())
    admin_cert = (
        _certificate(_name("admin", "system:masters"), ca_name, admin_key.public_key(), now,
                     ca=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.DNSName("kubernetes"),
                    x509.DNSName("kubernetes.default"),
                    x509.DNSName("kubernetes.default.svc"),
                    x509.DNSName("kubernetes.default.svc.cluster.local"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
                ]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    # Service-account tokens: RS256 is what every client expects, so an RSA key here.
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_private(pki.ca_key, _key_pem(ca_key))
    _write_private(pki.admin_key, _key_pem(admin_key))
    _write_private(pki.sa_key, _key_pem(sa_key))
    pki.ca_crt.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pki.admin_crt.write_bytes(admin_cert.public_bytes(serialization.Encoding.PEM))
    return pki


def admin_kubeconfig(pki: Pki, server: str, cluster: str, namespace: str = "default") -> str:
    """The admin kubeconfig (certificates inlined) as YAML text.

    Args:
        pki: the cluster's certificate files.
        server: the API server URL (https://127.0.0.1:PORT).
        cluster: the cluster's name; cluster, user and context are named after it.
        namespace: the context's default namespace.

    Returns:
        The kubeconfig YAML. It holds the admin private key: write it 0600.
    """

    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    name = f"ansflow-{cluster}"
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": name,
                "cluster": {"server": server, "certificate-authority-data": b64(pki.ca_crt)},
            }
        ],
        "users": [
            {
                "name": f"{name}-admin",
                "user": {
                    "client-certificate-data": b64(pki.admin_crt),
                    "client-key-data": b64(pki.admin_key),
                },
            }
        ],
        "contexts": [
            {
                "name": name,
                "context": {"cluster": name, "user": f"{name}-admin", "namespace": namespace},
            }
        ],
        "current-context": name,
    }
    return yaml.safe_dump(doc, sort_keys=False)


def write_private_text(path: Path, text: str) -> None:
    """Write a file readable only by its owner (kubeconfigs, keys)."""
    _write_private(path, text.encode())


def issue_leaf(pki: Pki, crt: Path, key: Path, cn: str, org: str | None, *,
               server: bool = False, ips: tuple[str, ...] = ()) -> None:
    """A key and a certificate signed by the cluster's CA: a client certificate, or with
    ``server`` a serving one for ``ips`` (the real node's kubelet: the API server checks it
    against the CA, ``--kubelet-certificate-authority``)."""
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(pki.ca_crt.read_bytes())
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        _certificate(_name(cn, org), ca_cert.subject, leaf_key.public_key(), now, ca=False)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost")]
            + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    _write_private(key, _key_pem(leaf_key))
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

"""A small X.509 certificate authority for one QKD network (pyca/cryptography).

ETSI GS QKD 014 V1.1.1 §5 requires mutual TLS between SAE and KME: the KME learns the
calling SAE's ID from its client certificate. This module issues the certificates:

* one self-signed network CA (``ca.pem``, ``ca.key``);
* one certificate per node (KME): ``serverAuth`` and ``clientAuth`` (nodes also call each
  other over mutual TLS for key relay), subject ``CN=<node id>, OU=KME``, with the host
  names and IP addresses it serves on as subjectAltName;
* one certificate per SAE: ``clientAuth`` only, subject ``CN=<SAE id>, OU=SAE``.

The identity a server reads from a peer certificate is ``(CN, OU)``; see
:func:`identity_from_der`. Keys are ECDSA P-256 (fast handshakes; accepted by every TLS 1.2/
1.3 stack). Private keys are written with mode 0600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from qkdnet.errors import ParameterError

__all__ = [
    "CA_CERT",
    "CA_KEY",
    "CertPaths",
    "Identity",
    "NetworkPki",
    "Role",
    "create_ca",
    "identity_from_der",
    "identity_from_pem",
    "issue_certificate",
    "issue_network",
]

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
_ONE_DAY = dt.timedelta(days=1)


class Role(StrEnum):
    """What a certificate's holder is: a key management entity (node) or an application."""

    KME = "KME"
    SAE = "SAE"


@dataclass(frozen=True)
class Identity:
    """The identity read from a verified peer certificate: its ID and its role."""

    id: str
    role: Role


@dataclass(frozen=True)
class CertPaths:
    """Where one holder's credentials were written (PEM files)."""

    cert: Path
    key: Path
    ca: Path


def _check_id(field: str, value: str) -> None:
    # IDs go into a CN and into URL paths: keep them printable, short and without '/'.
    if not value or len(value) > 64 or "/" in value or not value.isprintable():
        raise ParameterError(
            field, f"must be 1..64 printable characters without '/', got {value!r}"
        )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def create_ca(
    directory: str | os.PathLike[str], name: str = "qkdnet network CA", valid_days: int = 3650
) -> CertPaths:
    """Create a self-signed network CA in ``directory`` (``ca.pem``, ``ca.key``).

    ``valid_days`` is the validity in days. An existing CA in the directory is kept and
    returned unchanged, so re-running ``qkdnet serve`` keeps every issued certificate valid.
    """
    if valid_days < 1:
        raise ParameterError("valid_days", f"must be >= 1 day, got {valid_days}")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = out / CA_CERT, out / CA_KEY
    if cert_path.exists() and key_path.exists():
        return CertPaths(cert_path, key_path, cert_path)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "qkdnet"),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _ONE_DAY)
        .not_valid_after(now + dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(key_path, key)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return CertPaths(cert_path, key_path, cert_path)


def _load_ca(ca_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate((ca_dir / CA_CERT).read_bytes())
        key = serialization.load_pem_private_key((ca_dir / CA_KEY).read_bytes(), password=None)
    except FileNotFoundError as exc:
        raise ParameterError(
            "ca_dir", f"no CA in {ca_dir} (create one with `qkdnet certs init-ca {ca_dir}`)"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ParameterError("ca_dir", f"{ca_dir / CA_KEY} is not an EC private key")
    return cert, key


def issue_certificate(
    ca_dir: str | os.PathLike[str],
    holder_id: str,
    role: Role | str,
    out_dir: str | os.PathLike[str] | None = None,
    hosts: Sequence[str] = ("127.0.0.1", "localhost"),
    valid_days: int = 825,
) -> CertPaths:
    """Issue a certificate for a node (``role="KME"``) or an application (``role="SAE"``).

    Writes ``<out_dir>/<holder_id>.pem`` and ``.key`` (default ``out_dir``: ``ca_dir``).
    ``hosts`` (DNS names or IP addresses) become the subjectAltName of a node certificate;
    ``valid_days`` is in days. Raises :class:`ParameterError` for a bad ID or role.
    """
    _check_id("holder_id", holder_id)
    try:
        role = Role(role)
    except ValueError as exc:
        raise ParameterError("role", f"must be KME or SAE, got {role!r}") from exc
    ca_path = Path(ca_dir)
    ca_cert, ca_key = _load_ca(ca_path)
    out = Path(out_dir) if out_dir is not None else ca_path
    out.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, holder_id),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role.value),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "qkdnet"),
        ]
    )
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if role is Role.KME:
        usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _ONE_DAY)
        .not_valid_after(now + dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if role is Role.KME:
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    cert_path, key_path = out / f"{holder_id}.pem", out / f"{holder_id}.key"
    _write_key(key_path, key)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return CertPaths(cert_path, key_path, ca_path / CA_CERT)


def _identity(cert: x509.Certificate) -> Identity:
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    ous = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    if len(cns) != 1 or len(ous) != 1:
        raise ParameterError("certificate", "needs exactly one CN and one OU (KME or SAE)")
    try:
        role = Role(str(ous[0].value))
    except ValueError as exc:
        raise ParameterError("certificate", f"OU must be KME or SAE, got {ous[0].value!r}") from exc
    return Identity(str(cns[0].value), role)


@lru_cache(maxsize=4096)
def identity_from_der(der: bytes) -> Identity:
    """The ``(id, role)`` of a DER certificate that TLS has already verified against the CA.

    Cached: a server parses each client certificate once, not once per request.
    """
    return _identity(x509.load_der_x509_certificate(der))


def identity_from_pem(pem: bytes) -> Identity:
    """The ``(id, role)`` of a PEM certificate (used by tools, not for authorisation)."""
    return _identity(x509.load_pem_x509_certificate(pem))


@dataclass(frozen=True)
class NetworkPki:
    """Credentials of a whole network: the CA and one :class:`CertPaths` per node and SAE."""

    ca: Path
    nodes: dict[str, CertPaths]
    saes: dict[str, CertPaths]


def issue_network(
    directory: str | os.PathLike[str],
    nodes: dict[str, Sequence[str]],
    saes: Sequence[str],
) -> NetworkPki:
    """A CA in ``directory`` plus certificates for ``nodes`` (ID → host names/IPs) under
    ``nodes/`` and for ``saes`` under ``saes/``; existing certificates are kept."""
    root = Path(directory)
    ca = create_ca(root)
    node_paths: dict[str, CertPaths] = {}
    for node_id, hosts in nodes.items():
        existing = CertPaths(root / "nodes" / f"{node_id}.pem", root / "nodes" / f"{node_id}.key",
                             ca.cert)
        node_paths[node_id] = (
            existing if existing.cert.exists() and existing.key.exists()
            else issue_certificate(root, node_id, Role.KME, root / "nodes", hosts=hosts)
        )
    sae_paths: dict[str, CertPaths] = {}
    for sae_id in saes:
        existing = CertPaths(root / "saes" / f"{sae_id}.pem", root / "saes" / f"{sae_id}.key",
                             ca.cert)
        sae_paths[sae_id] = (
            existing if existing.cert.exists() and existing.key.exists()
            else issue_certificate(root, sae_id, Role.SAE, root / "saes")
        )
    return NetworkPki(ca.cert, node_paths, sae_paths)

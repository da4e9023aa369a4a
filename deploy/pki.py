"""Certificates and keys for a federated deployment (no Flower imports).

The coordinator owns a certificate authority (CA) and the SuperLink's TLS certificate; each hospital
owns an ECDSA P-384 key pair whose public half (OpenSSH format) the coordinator registers with the
SuperLink. Every secret is written owner-only (files 0600, folders 0700) and never logged.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
SERVER_CERT = "server.pem"
SERVER_KEY = "server.key"
DEFAULT_SERVER_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
SITE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class CertificateFiles:
    """A PEM certificate and its private key on disk."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class SiteKeyFiles:
    """A hospital's OpenSSH private key and ``.pub`` public key on disk."""

    private: Path
    public: Path


def make_ca(out_dir: Path, common_name: str = "ACL-ECG federation CA", days: int = 3650,
            overwrite: bool = False) -> CertificateFiles:
    """Create a self-signed CA (``ca.crt``, ``ca.key``) in ``out_dir``."""
    files = CertificateFiles(out_dir / CA_CERT, out_dir / CA_KEY)
    _refuse_existing([files.cert, files.key], overwrite)
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True,
                          crl_sign=True, encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA384())
    )
    _write_private(files.key, _pem_private_key(key))
    _write_private(files.cert, cert.public_bytes(serialization.Encoding.PEM))
    return files


def make_server_certificate(ca_dir: Path, out_dir: Path,
                            hosts: tuple[str, ...] = DEFAULT_SERVER_HOSTS, days: int = 825,
                            overwrite: bool = False) -> CertificateFiles:
    """Issue the SuperLink's TLS certificate (``server.pem``, ``server.key``) signed by the CA.

    ``hosts`` become subject alternative names: IP addresses as ``IP:``, anything else as ``DNS:``.
    """
    if not hosts:
        raise ValueError("the server certificate needs at least one host name or IP address")
    files = CertificateFiles(out_dir / SERVER_CERT, out_dir / SERVER_KEY)
    _refuse_existing([files.cert, files.key], overwrite)
    ca_cert, ca_key = load_ca(ca_dir)
    key = ec.generate_private_key(ec.SECP384R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([_general_name(h) for h in hosts]),
                       critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA384())
    )
    _write_private(files.key, _pem_private_key(key))
    _write_private(files.cert, cert.public_bytes(serialization.Encoding.PEM))
    return files


def make_site_key(out_dir: Path, site: str, overwrite: bool = False) -> SiteKeyFiles:
    """Create a hospital's ECDSA P-384 key pair: ``SITE`` (OpenSSH private) and ``SITE.pub``."""
    check_site_name(site)
    files = SiteKeyFiles(out_dir / site, out_dir / f"{site}.pub")
    _refuse_existing([files.private, files.public], overwrite)
    key = ec.generate_private_key(ec.SECP384R1())
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH)
    _write_private(files.private, private)
    _write_private(files.public, public + f" {site}\n".encode())
    return files


def load_ca(ca_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Read the CA certificate and key written by :func:`make_ca`."""
    cert_path, key_path = ca_dir / CA_CERT, ca_dir / CA_KEY
    for path in (cert_path, key_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: CA file not found (run `aclecg deploy make-ca` first)")
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_path}: not an elliptic-curve private key")
    return cert, key


def load_site_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    """Read and check a hospital's OpenSSH public key (ECDSA, as Flower requires)."""
    try:
        key = serialization.load_ssh_public_key(path.read_bytes())
    except (ValueError, OSError, UnsupportedAlgorithm) as err:
        raise ValueError(f"{path}: not an OpenSSH public key ({err})") from err
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError(f"{path}: expected an ECDSA public key, got {type(key).__name__}")
    return key


def check_site_name(site: str) -> None:
    """Raise ValueError unless ``site`` is a safe file and node name."""
    if not SITE_NAME.match(site):
        raise ValueError(
            f"site name {site!r} must be 1-64 characters of letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _pem_private_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _refuse_existing(paths: list[Path], overwrite: bool) -> None:
    if overwrite:
        return
    existing = [str(p) for p in paths if p.exists()]
    if existing:
        raise FileExistsError(f"refusing to overwrite {', '.join(existing)} (pass overwrite)")


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` as 0600, creating missing parent folders as 0700."""
    _make_private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _make_private_dir(path: Path) -> None:
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    for created in missing:
        created.chmod(0o700)

"""The lab's certificate authority: the `pagerduty` client speaks only HTTPS, so the lab's receiver serves
TLS with a certificate from a CA that the lab generates and that only the lab's clients trust.

The CA is name-constrained to 127.0.0.0/8, ::1 and localhost: even if its key leaked, it could not vouch
for any other name, so trusting it (in one client's SSL context, never system-wide) risks nothing else.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from iotex_ops.paging.errors import PagingError

CA_DAYS = 3650
SERVER_DAYS = 365
# a server certificate this close to its end is re-issued when the CA is loaded
RENEW_BEFORE = dt.timedelta(days=30)
SERVER_NAMES = ("localhost",)
SERVER_IPS = ("127.0.0.1", "::1")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write(path: Path, data: bytes, mode: int) -> None:
    # written under a temporary name created with its final mode, then renamed: no moment where a key is
    # readable by others, and no half-written file if we crash
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


@dataclass(frozen=True)
class LabCA:
    """Files of the lab CA in `dir`: ca.pem (public), ca.key (0600), server.pem, server.key (0600)."""

    dir: Path

    @property
    def ca_file(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def ca_key_file(self) -> Path:
        return self.dir / "ca.key"

    @property
    def cert_file(self) -> Path:
        return self.dir / "server.pem"

    @property
    def key_file(self) -> Path:
        return self.dir / "server.key"

    @classmethod
    def create(cls, dir: str | os.PathLike[str]) -> LabCA:
        """Create the CA and a server certificate in `dir`, or load them if present (idempotent); a server
        certificate that is missing, near its end or not from this CA is issued again."""
        ca = cls(Path(dir))
        ca.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            if ca.ca_file.exists() != ca.ca_key_file.exists():
                raise PagingError(f"lab CA in {ca.dir} is incomplete (one of ca.pem, ca.key is missing); remove the directory")
            if not ca.ca_file.exists():
                ca._new_ca()
            ca_cert, ca_key = ca._load_ca()
            if not ca._server_ok(ca_cert):
                ca._new_server(ca_cert, ca_key)
        except (ValueError, OSError) as exc:
            raise PagingError(f"lab CA in {ca.dir}: {exc}") from None
        return ca

    def _new_ca(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "iotex-ops lab CA")])
        now = _now()
        permitted: list[x509.GeneralName] = [x509.DNSName(n) for n in SERVER_NAMES]
        permitted += [x509.IPAddress(ipaddress.ip_network("127.0.0.0/8")), x509.IPAddress(ipaddress.ip_network("::1/128"))]
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )  # key_cert_sign, crl_sign
            .add_extension(x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        _write(self.ca_key_file, _key_pem(key), 0o600)
        _write(self.ca_file, cert.public_bytes(serialization.Encoding.PEM), 0o644)

    def _load_ca(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        cert = x509.load_pem_x509_certificate(self.ca_file.read_bytes())
        key = serialization.load_pem_private_key(self.ca_key_file.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("ca.key is not an EC key")
        return cert, key

    def _server_ok(self, ca_cert: x509.Certificate) -> bool:
        if not (self.cert_file.exists() and self.key_file.exists()):
            return False
        cert = x509.load_pem_x509_certificate(self.cert_file.read_bytes())
        return cert.issuer == ca_cert.subject and cert.not_valid_after_utc - _now() > RENEW_BEFORE

    def _new_server(self, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in SERVER_NAMES]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in SERVER_IPS]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=SERVER_DAYS))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
            )  # digital_signature
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        _write(self.key_file, _key_pem(key), 0o600)
        _write(self.cert_file, cert.public_bytes(serialization.Encoding.PEM), 0o644)

    def server_ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx

    def client_ssl_context(self) -> ssl.SSLContext:
        return client_ssl_context(self.ca_file)


def client_ssl_context(ca_file: str | os.PathLike[str] | None) -> ssl.SSLContext:
    """A verifying client context: trusting only `ca_file` when given, else the system's CAs."""
    if ca_file is None:
        return ssl.create_default_context()
    path = Path(ca_file).expanduser()
    if not path.is_file():
        raise PagingError(f"CA file {path} does not exist")
    try:
        return ssl.create_default_context(cafile=str(path))
    except ssl.SSLError as exc:
        raise PagingError(f"CA file {path} is not a PEM certificate: {exc.reason}") from None

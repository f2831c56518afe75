"""Throwaway certificates and configured (TLS, authorization, metrics) Sundial servers.

``Pki(dir)`` makes a CA and signs server and client certificates with it (files written as
PEM).  ``ConfiguredSundial`` runs ``sundial server start --config FILE`` with a file written
by ``write_config`` and waits until a client (with TLS when configured) can connect.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from temporalio.client import Client
from temporalio.service import TLSConfig

from conftest import START_TIMEOUT_S, SundialProcess, storage_toml


@dataclass
class CertFiles:
    cert: Path
    key: Path

    def read(self) -> tuple[bytes, bytes]:
        return self.cert.read_bytes(), self.key.read_bytes()


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


class Pki:
    """A CA in ``dir`` (``<name>-ca.pem``) that signs certificates on request."""

    def __init__(self, dir: Path, name: str = "test") -> None:
        self.dir = Path(dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(f"{name} CA"))
            .issuer_name(_name(f"{name} CA"))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True,
                    content_commitment=False, key_encipherment=False, data_encipherment=False,
                    key_agreement=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        self.ca_path = self.dir / f"{name}-ca.pem"
        self.ca_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, cn: str, *, server: bool, file_stem: str | None = None) -> CertFiles:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        else:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
            )
        cert = builder.sign(self.key, hashes.SHA256())
        stem = file_stem or f"{self.name}-{cn}"
        files = CertFiles(self.dir / f"{stem}.pem", self.dir / f"{stem}.key")
        files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, files.key)
        return files


def tls_config(ca: Path, client: CertFiles | None) -> TLSConfig:
    """The SDK's TLS options: trust ``ca``, present ``client`` (if any)."""
    if client is None:
        return TLSConfig(server_root_ca_cert=ca.read_bytes())
    cert, key = client.read()
    return TLSConfig(server_root_ca_cert=ca.read_bytes(), client_cert=cert, client_private_key=key)


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(
    path: Path,
    *,
    port: int,
    db: Path,
    tls: dict | None = None,
    grants: list[dict] | None = None,
    namespaces: list[dict] | None = None,
    metrics_port: int | None = None,
    http_port: int | None = None,
    retention_scan: str | None = None,
    shutdown_grace: str | None = None,
    log_level: str = "info",
) -> Path:
    """Writes a ``sundial.toml``; ``tls`` holds ``cert``/``key``/``client_ca``/``client_auth``."""
    lines = ["[server]", f'listen = "127.0.0.1:{port}"']
    if metrics_port:
        lines.append(f'metrics_listen = "127.0.0.1:{metrics_port}"')
    if http_port:
        lines.append(f'http_listen = "127.0.0.1:{http_port}"')
    if retention_scan:
        lines.append(f"retention_scan_interval = {_toml_str(retention_scan)}")
    if shutdown_grace:
        lines.append(f"shutdown_grace = {_toml_str(shutdown_grace)}")
    lines += ["", "[storage]", storage_toml(db), "", "[log]", f"level = {_toml_str(log_level)}"]
    if tls:
        lines += ["", "[tls]"] + [f"{k} = {_toml_str(str(v))}" for k, v in tls.items()]
    for grant in grants or []:
        lines += ["", "[[authorization.grant]]", f"identity = {_toml_str(grant['identity'])}"]
        lines.append("namespaces = [" + ", ".join(_toml_str(n) for n in grant["namespaces"]) + "]")
        lines.append(f"admin = {'true' if grant.get('admin') else 'false'}")
    for ns in namespaces or []:
        lines += ["", "[[namespaces]]", f"name = {_toml_str(ns['name'])}"]
        if "retention" in ns:
            lines.append(f"retention = {_toml_str(ns['retention'])}")
    path.write_text("\n".join(lines) + "\n")
    return path


class ConfiguredSundial(SundialProcess):
    """``sundial server start --config FILE``; ready when ``ready_tls`` (or plain) connects."""

    def __init__(self, config: Path, *, port: int, db: Path, ready_tls: TLSConfig | None = None,
                 ready_namespace: str = "default", **kwargs) -> None:
        super().__init__(db, port=port, **kwargs)
        self.config = Path(config)
        self.ready_tls = ready_tls
        self.ready_namespace = ready_namespace

    def command(self) -> list[str]:
        return [self.binary, "server", "start", "--config", str(self.config)]

    async def connect(self, tls: TLSConfig | None | bool = None, namespace: str | None = None) -> Client:
        return await Client.connect(
            self.address,
            namespace=namespace or self.ready_namespace,
            tls=(self.ready_tls or False) if tls is None else tls,
        )

    async def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        last_err: BaseException | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with code {self.proc.returncode} during startup; "
                    f"log tail ({self.log_path}):\n{self.log_tail()}"
                )
            try:
                await asyncio.wait_for(self.connect(), timeout=3)
                return
            except Exception as err:  # noqa: BLE001 - any failure means "not yet"
                last_err = err
            await asyncio.sleep(0.2)
        self.kill()
        raise RuntimeError(
            f"server at {self.address} not ready after {timeout}s (last error: {last_err!r}); "
            f"log tail ({self.log_path}):\n{self.log_tail()}"
        )

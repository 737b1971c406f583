"""A private certificate authority for the TLS tests: no clock, nothing from the network."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A private CA and a certificate it signs for localhost / 127.0.0.1: (CA PEM, server
    certificate PEM, server key PEM)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    start = datetime(2020, 1, 1, tzinfo=UTC)  # valid from long ago to far ahead: no clock in the test
    end = datetime(2100, 1, 1, tzinfo=UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gatecheck test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(1).not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


def tls_server(handler: type, certificate: Path, key: Path) -> Any:
    """A threading HTTP server on a loopback port the system picks, speaking TLS with
    ``certificate`` and ``key``, already serving ``handler``; the caller shuts it down."""
    import http.server
    import ssl
    import threading

    from gatecheck.demo.metrics import STOP_POLL_S

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, args=(STOP_POLL_S,), daemon=True).start()
    return server

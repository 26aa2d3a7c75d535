"""TLS for every gRPC door of the lab: labd's server credentials, and the channels of lab-agent and labctl.

Rules, the same on both sides: TLS when a certificate (labd) or a CA (clients) is given; plaintext only to or on a
loopback address, or with an explicit --insecure. Files are checked when read, so a wrong path, a key that does not
match its certificate, an expired certificate or a file that is not PEM is one line at start-up, not a handshake
failure later. cryptography is imported only when a file is checked: every extra that dials or serves has it.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # grpc is imported where it is used: labctl's offline commands never load it
    import grpc


class TlsError(Exception):
    """A TLS set-up problem the user can fix; the message is one line: what is wrong and what to do."""


def host_of(address: str) -> str:
    """The host part of HOST:PORT ([v6]:PORT too), lower case, without brackets."""
    host = address.rsplit(":", 1)[0] if ":" in address else address
    return host.strip("[]").lower()


def is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost: traffic that never leaves the machine (every address of a
    comma-separated list)."""
    if "," in address:
        return all(is_loopback(a.strip()) for a in address.split(","))
    host = host_of(address)
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read(path: Path, flag: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise TlsError(f"cannot read {flag} {path} ({e.strerror}); check the path and its permissions") from None
    if not data.strip():
        raise TlsError(f"{flag} {path} is empty; give a PEM file")
    return data


def _certificates(data: bytes, path: Path, flag: str, now_s: float) -> list[Any]:
    from cryptography import x509

    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise TlsError(f"{flag} {path} holds no PEM certificate; give the certificate in PEM form "
                       "(-----BEGIN CERTIFICATE-----)") from None
    leaf = certs[0]
    if leaf.not_valid_after_utc.timestamp() < now_s:
        raise TlsError(f"{flag} {path} expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; renew it")
    if leaf.not_valid_before_utc.timestamp() > now_s + 300:
        raise TlsError(f"{flag} {path} is not valid before {leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC; "
                       "check this machine's clock or the certificate")
    return list(certs)


def _key_pair(cert_path: Path, key_path: Path, cert_flag: str, key_flag: str,
              now_s: float) -> tuple[bytes, bytes]:
    """(key PEM, certificate chain PEM), checked: both parse, the key is not encrypted and matches the certificate."""
    from cryptography.hazmat.primitives import serialization

    cert_pem, key_pem = _read(cert_path, cert_flag), _read(key_path, key_flag)
    leaf = _certificates(cert_pem, cert_path, cert_flag, now_s)[0]
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise TlsError(f"{key_flag} {key_path} is encrypted; give an unencrypted key, readable only by "
                       "this program's user") from None
    except ValueError:
        raise TlsError(f"{key_flag} {key_path} holds no PEM private key; give the key of {cert_flag} in "
                       "PEM form") from None
    spki = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != leaf.public_key().public_bytes(*spki):
        raise TlsError(f"{key_flag} {key_path} is not the key of {cert_flag} {cert_path}; give the matching pair")
    return key_pem, cert_pem


def _ca(path: Path, flag: str, now_s: float) -> bytes:
    data = _read(path, flag)
    _certificates(data, path, flag, now_s)
    return data


@dataclass(frozen=True)
class ServerTls:
    """labd's --tls-cert/--tls-key, and --tls-client-ca for mutual TLS."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def credentials(self, now_s: float | None = None) -> grpc.ServerCredentials:
        now = time.time() if now_s is None else now_s
        key_pem, cert_pem = _key_pair(self.cert, self.key, "--tls-cert", "--tls-key", now)
        client_ca = _ca(self.client_ca, "--tls-client-ca", now) if self.client_ca else None
        import grpc

        return grpc.ssl_server_credentials([(key_pem, cert_pem)], root_certificates=client_ca,
                                           require_client_auth=client_ca is not None)

    def describe(self) -> str:
        from cryptography import x509

        leaf = x509.load_pem_x509_certificates(Path(self.cert).read_bytes())[0]
        mode = "mutual TLS, client certificates signed by --tls-client-ca" if self.client_ca else "TLS"
        return f"{mode}; certificate {leaf.subject.rfc4514_string()} valid until " \
               f"{leaf.not_valid_after_utc:%Y-%m-%d} UTC"


def server_tls(cert: Path | None, key: Path | None, client_ca: Path | None) -> ServerTls | None:
    """labd's TLS settings from its flags, or None for plaintext; the flags must come as a pair."""
    if cert is None and key is None:
        if client_ca is not None:
            raise TlsError("--tls-client-ca needs --tls-cert and --tls-key (the lab's own certificate and key)")
        return None
    if cert is None or key is None:
        raise TlsError("--tls-cert and --tls-key go together: give the lab's certificate and its private key")
    return ServerTls(Path(cert), Path(key), Path(client_ca) if client_ca else None)


@dataclass(frozen=True)
class ClientTls:
    """How lab-agent and labctl dial: --ca (the CA the lab's certificate must chain to), --tls-cert/--tls-key when
    the lab asks for client certificates, --insecure to allow plaintext to a lab that is not on this machine."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    insecure: bool = False

    @property
    def enabled(self) -> bool:
        return self.ca is not None

    def channel_credentials(self) -> grpc.ChannelCredentials:
        import grpc

        now = time.time()
        if self.ca is None:
            raise TlsError("TLS needs --ca FILE: the CA certificate (or the lab's self-signed certificate)")
        ca = _ca(self.ca, "--ca", now)
        if (self.cert is None) != (self.key is None):
            raise TlsError("--tls-cert and --tls-key go together: give this client's certificate and its key")
        if self.cert is not None and self.key is not None:
            key_pem, cert_pem = _key_pair(self.cert, self.key, "--tls-cert", "--tls-key", now)
            return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key_pem,
                                                certificate_chain=cert_pem)
        return grpc.ssl_channel_credentials(root_certificates=ca)

    def check_address(self, address: str) -> None:
        """Refuse to send tokens in plaintext off this machine unless --insecure says so."""
        if self.ca is None and (self.cert is not None or self.key is not None):
            raise TlsError("--tls-cert/--tls-key need --ca FILE too: the CA the lab's certificate chains to")
        replica_target(address)  # several replicas: IP addresses of one family, or one DNS name
        if self.ca is None and not self.insecure and not is_loopback(address):
            raise TlsError(f"the lab at {address} is not on this machine and no --ca was given: pass --ca FILE "
                           "(the lab's CA certificate) to speak TLS, or --insecure to send tokens in plaintext")

    def channel(self, address: str, options: Sequence[tuple[str, Any]] = ()) -> grpc.Channel:
        import grpc

        self.check_address(address)
        target, extra = replica_target(address)
        if self.enabled:
            return grpc.secure_channel(target, self.channel_credentials(), options=[*options, *extra])
        return grpc.insecure_channel(target, options=[*options, *extra])


ROUND_ROBIN = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})


def replica_target(address: str) -> tuple[str, list[tuple[str, Any]]]:
    """The gRPC target for a lab address, and the channel options it needs. Several labd replicas are given as
    HOST:PORT,HOST:PORT… (IP addresses; for host names, one DNS name with an A record per replica, dns:///NAME:PORT):
    calls are spread over the replicas that answer (gRPC's round_robin), and a session cut by a replica that dies is
    opened again on another."""
    parts = [a.strip() for a in address.split(",") if a.strip()]
    if len(parts) <= 1:
        extra = [("grpc.service_config", ROUND_ROBIN)] if address.startswith("dns:") else []
        return address, extra
    families = set()
    for part in parts:
        try:
            families.add(ipaddress.ip_address(host_of(part)).version)
        except ValueError:
            raise TlsError(f"--lab {address}: several replicas are given by IP address (HOST:PORT,HOST:PORT); for "
                           f"host names give one DNS name with an address per replica (dns:///NAME:PORT)") from None
    if len(families) > 1:
        raise TlsError(f"--lab {address}: give the replicas' addresses all IPv4 or all IPv6")
    scheme = "ipv4" if families == {4} else "ipv6"
    return f"{scheme}:{','.join(parts)}", [("grpc.service_config", ROUND_ROBIN)]


def explain_unreachable(details: str, tls: bool) -> str:
    """What a failed connection's gRPC details most likely mean, as advice; "" when they say nothing about TLS.

    gRPC reports a TLS failure as UNAVAILABLE with the handshake's details; the usual causes are a lab that speaks
    TLS dialled in plaintext (or the reverse), and a certificate that does not chain to --ca or names another host.
    """
    text = details.lower()
    if tls:
        if "hostname verification" in text or "peer name" in text or "subject alternative" in text:
            return "the lab's certificate does not name this address; dial a name or IP the certificate lists"
        if "certificate_verify_failed" in text or "certificate verify failed" in text:
            return "the lab's certificate does not chain to --ca; check that --ca is the lab's CA"
        if "wrong_version_number" in text or "packet_length_too_long" in text:
            return "the lab speaks plaintext, not TLS; drop --ca, or configure labd with --tls-cert and --tls-key"
        if "socket closed" in text or "connection reset" in text:
            return ("the lab closed the TLS connection: it may require a client certificate signed by its "
                    "--tls-client-ca; pass --tls-cert and --tls-key")
        if "handshake" in text or "ssl" in text or "tls" in text:
            return "the TLS handshake failed; check --ca, and --tls-cert/--tls-key if the lab requires them"
        return ""
    if "socket closed" in text or "connection reset" in text:
        return "the lab may speak TLS only: pass --ca FILE (the lab's CA certificate)"
    return ""

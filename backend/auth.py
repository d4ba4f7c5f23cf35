"""CURVE keys for remote use: generation, loading, and the authenticator that checks clients.

Layout of a key folder (made by ``python -m backend keys DIR``)::

    DIR/server.key                   server public key   → copy to every artist machine
    DIR/server.key_secret            server secret key   (stays on the GPU box)
    DIR/authorized_clients/NAME.key  public keys of clients allowed to connect
    DIR/clients/NAME.key_secret      a client's key pair → copy to that artist's machine
"""

from __future__ import annotations

import shutil
from pathlib import Path

import zmq
import zmq.auth


class AuthKeyError(RuntimeError):
    pass


def generate_keys(directory: Path, client_name: str = "blender") -> dict[str, Path]:
    """Create the server key pair (once) and a client key pair authorised to connect."""
    if not client_name.replace("-", "").replace("_", "").isalnum():
        raise AuthKeyError(f"client name {client_name!r} must be letters, digits, '-' or '_'")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "authorized_clients").mkdir(exist_ok=True)
    (directory / "clients").mkdir(exist_ok=True)
    if not (directory / "server.key_secret").exists():
        zmq.auth.create_certificates(str(directory), "server")
    client_secret = directory / "clients" / f"{client_name}.key_secret"
    if client_secret.exists():
        raise AuthKeyError(f"a client named {client_name!r} already exists in {directory}")
    public, secret = zmq.auth.create_certificates(str(directory / "clients"), client_name)
    shutil.copy(public, directory / "authorized_clients" / f"{client_name}.key")
    Path(secret).chmod(0o600)
    (directory / "server.key_secret").chmod(0o600)
    return {"server_public": directory / "server.key", "client_secret": Path(secret)}


def load_server_keys(directory: Path) -> tuple[bytes, bytes]:
    path = directory / "server.key_secret"
    if not path.exists():
        raise AuthKeyError(f"no server key in {directory}; create one with `python -m backend keys {directory}`")
    public, secret = zmq.auth.load_certificate(str(path))
    if secret is None:
        raise AuthKeyError(f"{path} holds no secret key")
    return public, secret


def load_client_keys(client_secret_file: Path, server_public_file: Path) -> tuple[bytes, bytes, bytes]:
    """(client public, client secret, server public) for a client socket."""
    for path in (client_secret_file, server_public_file):
        if not Path(path).exists():
            raise AuthKeyError(f"key file {path} does not exist")
    public, secret = zmq.auth.load_certificate(str(client_secret_file))
    if secret is None:
        raise AuthKeyError(f"{client_secret_file} is a public key; the client needs its *.key_secret file")
    server_public, _ = zmq.auth.load_certificate(str(server_public_file))
    return public, secret, server_public


def start_authenticator(context: zmq.Context, directory: Path):
    """A ZAP handler that admits only clients whose public key is in ``authorized_clients``."""
    from zmq.auth.thread import ThreadAuthenticator

    allowed = directory / "authorized_clients"
    if not allowed.is_dir():
        raise AuthKeyError(f"{allowed} is missing; create keys with `python -m backend keys {directory}`")
    authenticator = ThreadAuthenticator(context)
    authenticator.start()
    authenticator.configure_curve(domain="*", location=str(allowed))
    return authenticator


def configure_client_socket(socket: zmq.Socket, client_secret_file: Path, server_public_file: Path) -> None:
    public, secret, server_public = load_client_keys(client_secret_file, server_public_file)
    socket.curve_publickey = public
    socket.curve_secretkey = secret
    socket.curve_serverkey = server_public

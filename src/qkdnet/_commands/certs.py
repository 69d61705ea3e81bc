"""``qkdnet certs``: the network CA and the node (KME) and application (SAE) certificates."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from qkdnet.api.certs import create_ca, identity_from_pem, issue_certificate

certs_app = typer.Typer(
    help="Certificates for mutual TLS: a network CA, node (KME) and SAE certificates.",
    no_args_is_help=True,
)


@certs_app.command("init-ca")
def init_ca(
    directory: Annotated[Path, typer.Argument(help="Directory for ca.pem and ca.key.")],
    name: Annotated[str, typer.Option(help="The CA's common name.")] = "qkdnet network CA",
    valid_days: Annotated[int, typer.Option(help="Validity, days.")] = 3650,
) -> None:
    """Create the network CA (kept if it already exists)."""
    paths = create_ca(directory, name=name, valid_days=valid_days)
    Console().print(f"CA certificate: {paths.cert}\nCA private key: {paths.key}")


@certs_app.command("issue")
def issue(
    ca_dir: Annotated[Path, typer.Argument(help="Directory holding the CA (ca.pem, ca.key).")],
    holder_id: Annotated[str, typer.Argument(help="The node ID or SAE ID (becomes the CN).")],
    role: Annotated[str, typer.Option(help="SAE (application) or KME (node).")] = "SAE",
    out: Annotated[Path | None, typer.Option(help="Output directory (default: CA dir).")] = None,
    host: Annotated[
        list[str] | None, typer.Option(help="Host name/IP of a node (repeatable).")
    ] = None,
    valid_days: Annotated[int, typer.Option(help="Validity, days.")] = 825,
) -> None:
    """Issue a certificate and private key for a node or an SAE."""
    hosts = host or ["127.0.0.1", "localhost"]
    paths = issue_certificate(ca_dir, holder_id, role.upper(), out, hosts=hosts,
                              valid_days=valid_days)
    Console().print(f"certificate: {paths.cert}\nprivate key: {paths.key}\nCA: {paths.ca}")


@certs_app.command("show")
def show(cert: Annotated[Path, typer.Argument(help="A PEM certificate.")]) -> None:
    """Print the ID and role that a KME reads from this certificate."""
    identity = identity_from_pem(cert.read_bytes())
    Console().print(f"{identity.role.value} {identity.id}")


def register(app: typer.Typer) -> None:
    """Add ``qkdnet certs`` to the CLI."""
    app.add_typer(certs_app, name="certs")

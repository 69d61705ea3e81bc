"""``qkdnet keys status|get|get-by-id``: an SAE's ETSI GS QKD 014 calls from the shell.

Credentials come either from ``--as FILE`` (the ``<sae>.json`` that ``qkdnet serve`` writes:
KME URL, certificate, key, CA) or from ``--kme``, ``--cert``, ``--key`` and ``--ca``.
Output is JSON in the standard's own format (keys in Base64, sizes in bits).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from qkdnet.api.client import DeliveredKey, KmeClient
from qkdnet.errors import ParameterError

keys_app = typer.Typer(help="Fetch keys from a KME over ETSI GS QKD 014 (mutual TLS).",
                       no_args_is_help=True)

AsOpt = Annotated[Path | None, typer.Option("--as", help="SAE credentials JSON from qkdnet serve.")]
KmeOpt = Annotated[str | None, typer.Option(help="KME base URL, e.g. https://127.0.0.1:8443.")]
CertOpt = Annotated[Path | None, typer.Option(help="The SAE's certificate (PEM).")]
KeyOpt = Annotated[Path | None, typer.Option(help="The SAE's private key (PEM).")]
CaOpt = Annotated[Path | None, typer.Option(help="The network CA certificate (PEM).")]


def _client(
    creds: Path | None, kme: str | None, cert: Path | None, key: Path | None, ca: Path | None
) -> KmeClient:
    if creds is not None:
        try:
            data: dict[str, Any] = json.loads(creds.read_text())
        except (OSError, ValueError) as exc:
            raise ParameterError("--as", f"cannot read SAE credentials {creds}: {exc}") from exc
        kme = kme or data["kme_url"]
        cert = cert or Path(data["cert"])
        key = key or Path(data["key"])
        ca = ca or Path(data["ca"])
    if kme is None or cert is None or key is None or ca is None:
        raise ParameterError("--as", "give --as FILE, or all of --kme, --cert, --key and --ca")
    return KmeClient(kme, cert, key, ca)


def _print_keys(keys: list[DeliveredKey]) -> None:
    container = {"keys": [{"key_ID": str(k.key_id), "key": base64.b64encode(k.key).decode()}
                          for k in keys]}
    typer.echo(json.dumps(container, indent=2))


@keys_app.command("status")
def status(
    slave_sae_id: Annotated[str, typer.Argument(help="The slave SAE.")],
    as_: AsOpt = None, kme: KmeOpt = None, cert: CertOpt = None, key: KeyOpt = None,
    ca: CaOpt = None,
) -> None:
    """ETSI 014 Get status: the key pool shared with SLAVE_SAE_ID."""
    with _client(as_, kme, cert, key, ca) as client:
        typer.echo(client.status(slave_sae_id).model_dump_json(indent=2, exclude_none=True))


@keys_app.command("get")
def get(
    slave_sae_id: Annotated[str, typer.Argument(help="The slave SAE.")],
    number: Annotated[int, typer.Option(help="How many keys.")] = 1,
    size: Annotated[int | None, typer.Option(help="Key size, bits (multiple of 8).")] = None,
    additional_slave: Annotated[
        list[str] | None, typer.Option(help="Another slave SAE (multicast; repeatable).")
    ] = None,
    as_: AsOpt = None, kme: KmeOpt = None, cert: CertOpt = None, key: KeyOpt = None,
    ca: CaOpt = None,
) -> None:
    """ETSI 014 Get key (enc_keys): new keys shared with SLAVE_SAE_ID."""
    with _client(as_, kme, cert, key, ca) as client:
        _print_keys(client.get_key(slave_sae_id, number, size, additional_slave or ()))


@keys_app.command("get-by-id")
def get_by_id(
    master_sae_id: Annotated[str, typer.Argument(help="The master SAE that made the keys.")],
    key_ids: Annotated[list[str], typer.Argument(help="One or more key IDs (UUIDs).")],
    as_: AsOpt = None, kme: KmeOpt = None, cert: CertOpt = None, key: KeyOpt = None,
    ca: CaOpt = None,
) -> None:
    """ETSI 014 Get key with key IDs (dec_keys): the keys MASTER_SAE_ID made for us."""
    with _client(as_, kme, cert, key, ca) as client:
        _print_keys(client.get_key_with_ids(master_sae_id, key_ids))


def register(app: typer.Typer) -> None:
    """Add ``qkdnet keys`` to the CLI."""
    app.add_typer(keys_app, name="keys")

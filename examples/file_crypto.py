"""Encrypt a file at one SAE and decrypt it at another, with keys from ETSI GS QKD 014.

Two applications (SAEs) on two distant nodes of a ``qkdnet serve`` network: the sender is
the *master* (it calls ``enc_keys`` on its own KME), the receiver the *slave* (it calls
``dec_keys`` on its KME with the key IDs written in the file's header). The keys reach the
receiver's KME by relay across trusted nodes. Two modes:

* ``aes``: AES-256-GCM (NIST SP 800-38D) under one 256-bit key; 96-bit random nonce; the
  header is authenticated as associated data.
* ``otp``: one-time pad (Vernam): as many key bits as the file has, XORed in; plus one
  256-bit key for an HMAC-SHA256 tag over header and ciphertext (the pad alone would be
  malleable). Every key is used once and is erased by both KMEs once delivered.

Usage (credentials files come from ``qkdnet serve``)::

    python examples/file_crypto.py encrypt --as serve-x/saes/sae-a.json --to sae-c \
        --mode otp secret.pdf secret.qkd
    python examples/file_crypto.py decrypt --as serve-x/saes/sae-c.json secret.qkd out.pdf
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import sys
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from qkdnet.api.client import KmeClient

MAGIC = b"QKDNET-FILE-1\n"


def _client(creds_path: Path) -> tuple[KmeClient, str]:
    creds = json.loads(creds_path.read_text())
    return KmeClient(creds["kme_url"], creds["cert"], creds["key"], creds["ca"]), creds["sae_id"]


def _xor(data: bytes, pad: bytes) -> bytes:
    return (np.frombuffer(data, np.uint8) ^ np.frombuffer(pad, np.uint8)).tobytes()


def encrypt(creds: Path, slave: str, mode: str, src: Path, dst: Path) -> dict[str, object]:
    """Encrypt ``src`` into ``dst`` for SAE ``slave``; returns the header written."""
    plaintext = src.read_bytes()
    client, me = _client(creds)
    with client:
        status = client.status(slave)
        if mode == "aes":
            [key] = client.get_key(slave, 1, 256)
            nonce = os.urandom(12)
            header = {"mode": "aes", "master": me, "key_IDs": [str(key.key_id)],
                      "nonce": nonce.hex()}
            hbytes = json.dumps(header, sort_keys=True).encode()
            body = AESGCM(key.key).encrypt(nonce, plaintext, hbytes)
        elif mode == "otp":
            chunk = status.max_key_size // 8  # bytes per key
            need = -(-len(plaintext) // chunk) if plaintext else 0
            keys = []
            while len(keys) < need:
                n = min(status.max_key_per_request, need - len(keys))
                keys += client.get_key(slave, n, status.max_key_size)
            [mac_key] = client.get_key(slave, 1, 256)
            pad = b"".join(k.key for k in keys)[: len(plaintext)]
            header = {"mode": "otp", "master": me, "length": len(plaintext),
                      "key_IDs": [str(k.key_id) for k in keys], "mac_key_ID": str(mac_key.key_id)}
            hbytes = json.dumps(header, sort_keys=True).encode()
            ciphertext = _xor(plaintext, pad)
            body = ciphertext + hmac.new(mac_key.key, hbytes + ciphertext, hashlib.sha256).digest()
        else:
            raise SystemExit(f"unknown mode {mode!r} (aes or otp)")
    dst.write_bytes(MAGIC + hbytes + b"\n" + body)
    return header


def decrypt(creds: Path, src: Path, dst: Path) -> dict[str, object]:
    """Decrypt ``src`` (written by :func:`encrypt`) into ``dst``; returns its header."""
    raw = src.read_bytes()
    if not raw.startswith(MAGIC):
        raise SystemExit("not a qkdnet-encrypted file")
    hbytes, _, body = raw[len(MAGIC):].partition(b"\n")
    header = json.loads(hbytes)
    client, _ = _client(creds)
    with client:
        ids = header["key_IDs"]
        keys = []
        for i in range(0, len(ids), 128):
            keys += client.get_key_with_ids(header["master"], ids[i:i + 128])
        if header["mode"] == "aes":
            plaintext = AESGCM(keys[0].key).decrypt(bytes.fromhex(header["nonce"]), body, hbytes)
        else:
            [mac_key] = client.get_key_with_ids(header["master"], [header["mac_key_ID"]])
            ciphertext, tag = body[:-32], body[-32:]
            expected = hmac.new(mac_key.key, hbytes + ciphertext, hashlib.sha256).digest()
            if not hmac.compare_digest(tag, expected):
                raise SystemExit("authentication failed: the file was altered")
            pad = b"".join(k.key for k in keys)[: header["length"]]
            plaintext = _xor(ciphertext, pad)
    dst.write_bytes(plaintext)
    return header


def main(argv: list[str] | None = None) -> int:
    """Command line: ``encrypt --as CREDS --to SAE --mode aes|otp IN OUT`` or
    ``decrypt --as CREDS IN OUT``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    enc = sub.add_parser("encrypt")
    enc.add_argument("--as", dest="creds", type=Path, required=True)
    enc.add_argument("--to", dest="slave", required=True)
    enc.add_argument("--mode", choices=("aes", "otp"), default="aes")
    enc.add_argument("src", type=Path)
    enc.add_argument("dst", type=Path)
    dec = sub.add_parser("decrypt")
    dec.add_argument("--as", dest="creds", type=Path, required=True)
    dec.add_argument("src", type=Path)
    dec.add_argument("dst", type=Path)
    args = parser.parse_args(argv)
    if args.cmd == "encrypt":
        header = encrypt(args.creds, args.slave, args.mode, args.src, args.dst)
    else:
        header = decrypt(args.creds, args.src, args.dst)
    print(f"{args.cmd}ed {args.src} -> {args.dst} ({header['mode']}, "
          f"{len(header['key_IDs'])} key(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())

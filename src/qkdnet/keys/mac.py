"""Information-theoretic message authentication for Kx (key-manager to key-manager) messages.

A Wegman–Carter MAC (Wegman & Carter, JCSS 22, 265, 1981): a polynomial universal hash over
the prime field GF(p), p = 2**127 - 1, evaluated at a secret point ``r``, then one-time
padded with a fresh secret ``s``: ``tag = (poly_r(message) + s) mod p``. ``r`` may serve
several messages of one exchange as long as each tag gets its own fresh ``s``. The
probability that a forger who saw one tag makes another message pass is at most
``(L + 1) / p`` for a message of ``L`` 15-byte blocks (the polynomial has degree ``L + 1``),
about 2**-120 for messages below a megabyte.

Both keys come from QKD link key, so the guarantee holds against an unbounded adversary.
The post-processing package had no Wegman–Carter hash when this module was written; this
small one keeps the key layer self-contained (it is ~30 lines). It is pure Python integer
arithmetic: Kx messages are short (a few hundred bytes), so speed does not matter here.
"""

from __future__ import annotations

import hmac

from qkdnet.errors import AuthenticationError, ParameterError

#: The field prime 2**127 - 1 (a Mersenne prime).
MAC_PRIME = (1 << 127) - 1
#: Bytes of link key for the hash point ``r`` (128 bits, reduced mod p).
MAC_HASH_KEY_BYTES = 16
#: Bytes of link key for one one-time pad ``s`` of a tag.
MAC_PAD_BYTES = 16
#: Bytes of one tag.
MAC_TAG_BYTES = 16
_BLOCK = 15  # 120-bit blocks are always < p, so every block is a field element


def poly_hash(message: bytes, r: int) -> int:
    """Polynomial hash of ``message`` at point ``r`` in GF(2**127 - 1) (Horner's rule).

    Blocks are 15 bytes, little-endian, each with a 0x01 byte appended (so trailing zero
    bytes change the hash); the message length in bytes is the last coefficient.
    """
    r %= MAC_PRIME
    acc = 0
    for i in range(0, len(message), _BLOCK):
        block = int.from_bytes(message[i : i + _BLOCK] + b"\x01", "little")
        acc = (acc + block) * r % MAC_PRIME
    acc = (acc + len(message)) * r % MAC_PRIME
    return acc


def mac_tag(message: bytes, hash_key: bytes, pad: bytes) -> bytes:
    """Wegman–Carter tag (16 bytes) of ``message``: 16-byte hash key, fresh 16-byte pad."""
    if len(hash_key) != MAC_HASH_KEY_BYTES or len(pad) != MAC_PAD_BYTES:
        raise ParameterError("hash_key", "hash key and pad must be 16 bytes each")
    r = int.from_bytes(hash_key, "little")
    s = int.from_bytes(pad, "little")
    return ((poly_hash(message, r) + s) % MAC_PRIME).to_bytes(MAC_TAG_BYTES, "little")


def mac_verify(message: bytes, tag: bytes, hash_key: bytes, pad: bytes) -> None:
    """Raise :class:`AuthenticationError` unless ``tag`` fits ``message`` (constant time)."""
    if not hmac.compare_digest(mac_tag(message, hash_key, pad), tag):
        raise AuthenticationError()

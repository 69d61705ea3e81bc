"""Error verification: do Alice's and Bob's reconciled keys agree? (hazmat layer)

After reconciliation Bob's key may still differ from Alice's in a few bits that no parity
check caught. Both compare a short universal hash of their keys (Carter & Wegman, JCSS 18,
143, 1979): Alice draws a random hash key r, sends r and her tag h_r(K_A); Bob computes
h_r(K_B) and the block is discarded unless the tags agree. The tags are public, so their
bits count as leaked information and are subtracted in privacy amplification.

The hash is polynomial evaluation over GF(2^64): the key is cut into L 64-bit blocks,
followed by one block holding its length in bits, b_1 .. b_{L+1}, and

    h_r(K) = b_1 r^{L+1} + b_2 r^L + ... + b_{L+1} r      (in GF(2^64)).

For two different keys of n bits, h_r(K_A) - h_r(K_B) is a nonzero polynomial of degree
<= L + 1 in r, so they collide for at most L + 1 of the 2^64 values of r:
Pr[collision] <= (ceil(n/64) + 1) / 2^64, the ε-almost-universal bound of polynomial
hashing (den Boer 1993; Bierbrauer et al., CRYPTO '93; Stinson, "Universal hashing and
authentication codes", 1994). With t = tag_bits/64 independent hash keys the tags collide
with probability at most that bound to the power t: this is ε_cor, the probability that the
block passes verification although the keys differ (the ε-correctness of Lim, Curty,
Walenta, Xu & Zbinden, PRA 89, 022307, 2014).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

import numpy as np

from qkdnet.errors import ParameterError, VerificationFailed
from qkdnet.postprocessing._gf2 import poly_hash

__all__ = [
    "VerificationResult",
    "verification_epsilon",
    "verification_hash",
    "verify_keys",
]

WORD_BITS = 64


@dataclass(frozen=True)
class VerificationResult:
    """Outcome of a successful verification.

    ``leaked_bits``: tag bits disclosed on the public channel (= ``tag_bits``).
    ``epsilon_cor``: upper bound on the probability that differing keys pass.
    ``seed``: the hash keys used (public), one uint64 per 64 tag bits.
    ``tag``: Alice's tag as sent (bytes, ``tag_bits // 8`` long).
    """

    leaked_bits: int
    epsilon_cor: float
    tag_bits: int
    seed: np.ndarray
    tag: bytes


def _check_bits(name: str, bits: np.ndarray) -> np.ndarray:
    arr = np.asarray(bits)
    if arr.ndim != 1:
        raise ParameterError(name, f"must be a 1-D array of bits, got shape {arr.shape}")
    if arr.size and (arr.dtype.kind not in "biu" or int(arr.max()) > 1 or int(arr.min()) < 0):
        raise ParameterError(name, "must hold only 0 and 1 (one bit per element)")
    return arr.astype(np.uint8, copy=False)


def _check_tag_bits(tag_bits: int) -> int:
    if not isinstance(tag_bits, int | np.integer) or tag_bits < WORD_BITS or tag_bits % WORD_BITS:
        raise ParameterError("tag_bits", f"must be a positive multiple of 64, got {tag_bits!r}")
    return int(tag_bits)


def _blocks(bits: np.ndarray) -> np.ndarray:
    """The key as little-endian 64-bit blocks, zero-padded, followed by its length in bits."""
    n = bits.size
    words = -(-n // WORD_BITS)
    packed = np.zeros(words * 8 + 8, dtype=np.uint8)
    packed[: -(-n // 8)] = np.packbits(bits, bitorder="little")
    out = packed.view("<u8").astype(np.uint64, copy=True)
    out[-1] = np.uint64(n)  # length block: keys of different lengths never collide for free
    return out


def verification_epsilon(n_bits: int, tag_bits: int = 64) -> float:
    """ε_cor = ((ceil(n/64) + 1) / 2^64)^(tag_bits/64) for an n-bit key (dimensionless)."""
    if n_bits < 0:
        raise ParameterError("n_bits", f"must be >= 0, got {n_bits}")
    t = _check_tag_bits(tag_bits) // WORD_BITS
    per_word = (-(-n_bits // WORD_BITS) + 1) / 2.0**64
    return float(per_word**t)


def verification_hash(bits: np.ndarray, seed: np.ndarray) -> bytes:
    """Tag of a key (uint8 0/1 bits) under hash keys ``seed`` (uint64 array): 8 bytes each.

    Polynomial hash over GF(2^64), field polynomial z^64 + z^4 + z^3 + z + 1, blocks
    little-endian (see the module docstring for the construction and its bound).
    """
    arr = _check_bits("bits", bits)
    keys = np.asarray(seed, dtype=np.uint64).ravel()
    if keys.size == 0:
        raise ParameterError("seed", "needs at least one 64-bit hash key")
    blocks = _blocks(arr)
    tags = np.array([poly_hash(blocks, np.uint64(k)) for k in keys], dtype="<u8")
    return tags.tobytes()


def verify_keys(
    alice_bits: np.ndarray,
    bob_bits: np.ndarray,
    rng: np.random.Generator,
    tag_bits: int = 64,
) -> VerificationResult:
    """Check that two reconciled keys are equal by comparing universal-hash tags.

    ``alice_bits``, ``bob_bits``: uint8 arrays of 0/1, one bit per element, same length.
    ``rng`` draws the public hash keys (``tag_bits/64`` uniform elements of GF(2^64)).
    Returns a :class:`VerificationResult` whose ``leaked_bits`` (= ``tag_bits``) must be
    added to the leakage and whose ``epsilon_cor`` bounds the chance that differing keys
    pass. Raises :class:`qkdnet.errors.VerificationFailed` when the tags differ (the block
    must be discarded) and :class:`qkdnet.errors.ParameterError` for malformed input.
    """
    a = _check_bits("alice_bits", alice_bits)
    b = _check_bits("bob_bits", bob_bits)
    if a.size != b.size:
        raise ParameterError(
            "bob_bits", f"must have the same length as alice_bits ({a.size}), got {b.size}"
        )
    t = _check_tag_bits(tag_bits)
    seed = rng.integers(0, 2**64, size=t // WORD_BITS, dtype=np.uint64)
    tag_a = verification_hash(a, seed)
    tag_b = verification_hash(b, seed)
    # Constant-time comparison: the tags are derived from secret keys.
    if not hmac.compare_digest(tag_a, tag_b):
        raise VerificationFailed(
            "verification hashes differ: reconciliation left errors; discard this block"
        )
    return VerificationResult(
        leaked_bits=t,
        epsilon_cor=verification_epsilon(a.size, t),
        tag_bits=t,
        seed=seed,
        tag=tag_a,
    )

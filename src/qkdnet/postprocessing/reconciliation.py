"""Information reconciliation: the common result type and helpers shared by Cascade and LDPC.

Hazmat layer: these functions correct Bob's sifted key towards Alice's and count every bit
disclosed on the public channel. They do not authenticate anything and leave residual
errors possible; verification (:mod:`qkdnet.postprocessing.verification`) catches those.

The reconciliation efficiency is ``f = leaked_bits / (n * h(qber))`` with ``h`` the binary
Shannon entropy (Martinez-Mateo et al., "Demystifying the information reconciliation
protocol Cascade", QIC 15, 2015, eq. 1); ``f = 1`` is the Slepian–Wolf limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from qkdnet.errors import ParameterError, ProtocolAbort

__all__ = [
    "ReconciliationFailed",
    "ReconciliationResult",
    "binary_entropy",
    "efficiency",
    "validate_pair",
]


class ReconciliationFailed(ProtocolAbort):
    """Reconciliation could not correct the block (e.g. LDPC decoding did not converge).

    The syndrome bits already sent count as leaked; the block is discarded.
    """

    def __init__(self, message: str, leaked_bits: int = 0) -> None:
        self.leaked_bits = leaked_bits
        super().__init__(message)


@dataclass(frozen=True)
class ReconciliationResult:
    """What one reconciliation run produced.

    Attributes:
        corrected_bits: Bob's key after correction (uint8 0/1), same length as the input.
        leaked_bits: every parity / syndrome bit disclosed, counted exactly (bits).
        transcript: all classical messages, in order, as sent (for authentication).
        messages: number of classical messages (one per direction change / round).
        efficiency: ``f = leaked_bits / (n * h(qber))`` with ``qber`` the value passed in.
    """

    corrected_bits: np.ndarray
    leaked_bits: int
    transcript: bytes
    messages: int
    efficiency: float


def binary_entropy(p: float) -> float:
    """Binary Shannon entropy h(p) in bits; h(0) = h(1) = 0."""
    if p <= 0.0 or p >= 1.0:
        return 0.0
    return -p * math.log2(p) - (1.0 - p) * math.log2(1.0 - p)


def efficiency(leaked_bits: int, n: int, qber: float) -> float:
    """Reconciliation efficiency f = leaked / (n·h(qber)) (Martinez-Mateo et al. 2015, eq. 1).

    Returns ``inf`` when ``n·h(qber)`` is zero but bits were leaked, and 1.0 when both are
    zero (nothing to correct, nothing disclosed).
    """
    denom = n * binary_entropy(qber)
    if denom <= 0.0:
        return 1.0 if leaked_bits == 0 else math.inf
    return leaked_bits / denom


def validate_pair(
    alice_bits: np.ndarray, bob_bits: np.ndarray, qber: float
) -> tuple[np.ndarray, np.ndarray]:
    """Check the common inputs of every reconciliation entry point; return uint8 copies.

    Raises:
        ParameterError: lengths differ, the keys are not 1-D 0/1 arrays, or qber is not in
            [0, 0.5).
    """
    a = np.asarray(alice_bits)
    b = np.asarray(bob_bits)
    if a.ndim != 1 or b.ndim != 1:
        raise ParameterError("alice_bits", "keys must be 1-D arrays of 0/1 bits")
    if a.shape != b.shape:
        raise ParameterError(
            "bob_bits", f"length {b.shape[0]} differs from alice_bits length {a.shape[0]}"
        )
    if not (0.0 <= qber < 0.5) or math.isnan(qber):
        raise ParameterError("qber", f"must be in [0, 0.5), got {qber}")
    a8 = np.ascontiguousarray(a, dtype=np.uint8)
    b8 = np.ascontiguousarray(b, dtype=np.uint8)
    if a8.size and (int(a8.max()) > 1 or int(b8.max()) > 1):
        raise ParameterError("alice_bits", "bits must be 0 or 1")
    return a8, b8

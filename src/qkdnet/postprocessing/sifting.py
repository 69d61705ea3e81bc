"""Sifting: keep the pulses where Alice and Bob used the same basis.

Hazmat layer. The key comes from the Z basis (both chose Z); every X-basis (test) bit is
announced, so the test errors per intensity class are known exactly — this is the protocol
of Lim et al., PRA 89, 022307 (2014), with their X (key) basis called Z here.

The public messages sifting needs are built here as bytes (so the pipeline can authenticate
them and count their length): Bob announces which pulses he detected and his bases; Alice
answers with her bases and intensity classes; both announce their test-basis bits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qkdnet.quantum.records import BASIS_X, BASIS_Z, DetectionRecords

__all__ = ["SiftedBlock", "sift"]


@dataclass(frozen=True, eq=False)
class SiftedBlock:
    """The sifted key of one block and the counts parameter estimation needs.

    ``alice_key``/``bob_key``: Z-basis bits (uint8 0/1) where both chose Z, all intensity
    classes, in pulse order. ``key_counts[k]`` = n_Z,k (sifted key bits of class k);
    ``test_counts[k]`` = n_X,k and ``test_errors[k]`` = m_X,k (announced test bits and their
    errors). ``messages``: the public messages, as (sender, bytes), in order.
    """

    alice_key: np.ndarray
    bob_key: np.ndarray
    key_counts: np.ndarray
    test_counts: np.ndarray
    test_errors: np.ndarray
    pulses_sent: np.ndarray
    intensities: tuple[float, ...]
    protocol: str
    detections: int
    messages: tuple[tuple[str, bytes], ...]

    @property
    def sifted_bits(self) -> int:
        """Length of the sifted key, bits."""
        return int(self.alice_key.shape[0])


def _pack(arr: np.ndarray) -> bytes:
    return bytes(np.packbits(arr.astype(np.uint8, copy=False)).tobytes())


def sift(records: DetectionRecords) -> SiftedBlock:
    """Sift one block of detection records (Bennett & Brassard 1984; Lim et al. 2014).

    Returns the Z-basis sifted key of both parties and the per-class counts of the key and
    test bases. Units: bits and counts. Pure; the messages are built, not sent.
    """
    K = records.pulses_sent.shape[0]
    same = records.alice_basis == records.bob_basis
    key_mask = same & (records.alice_basis == BASIS_Z)
    test_mask = same & (records.alice_basis == BASIS_X)
    cls_key = records.alice_class[key_mask]
    cls_test = records.alice_class[test_mask]
    test_err = records.alice_bit[test_mask] != records.bob_bit[test_mask]
    key_counts = np.bincount(cls_key, minlength=K).astype(np.int64)
    test_counts = np.bincount(cls_test, minlength=K).astype(np.int64)
    test_errors = np.bincount(cls_test[test_err], minlength=K).astype(np.int64)
    # Public messages. Pulse indices are sent as gaps (what a device would send), bases and
    # bits packed eight to a byte, classes one byte each.
    gaps = np.diff(records.pulse_index, prepend=np.int64(0))
    gaps = gaps.astype(np.uint32 if gaps.size == 0 or int(gaps.max()) < 2**32 else np.uint64)
    bob_announce = gaps.tobytes() + _pack(records.bob_basis)
    alice_answer = _pack(records.alice_basis) + records.alice_class.tobytes()
    alice_test = _pack(records.alice_bit[test_mask])
    bob_test = _pack(records.bob_bit[test_mask])
    return SiftedBlock(
        alice_key=np.ascontiguousarray(records.alice_bit[key_mask]),
        bob_key=np.ascontiguousarray(records.bob_bit[key_mask]),
        key_counts=key_counts,
        test_counts=test_counts,
        test_errors=test_errors,
        pulses_sent=records.pulses_sent.copy(),
        intensities=records.intensities,
        protocol=records.protocol,
        detections=records.detections,
        messages=(
            ("bob", bob_announce),
            ("alice", alice_answer),
            ("alice", alice_test),
            ("bob", bob_test),
        ),
    )

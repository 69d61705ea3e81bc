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

import numba
import numpy as np

from qkdnet.quantum.records import DetectionRecords

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


@numba.njit(cache=True, nogil=True)
def _sift_kernel(
    a_basis: np.ndarray,
    b_basis: np.ndarray,
    a_bit: np.ndarray,
    b_bit: np.ndarray,
    a_class: np.ndarray,
    n_classes: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    # One pass over the detections instead of a dozen masked NumPy copies: sifting is
    # memory-bound, and a block at 50 km holds four detections per sifted bit.
    n = a_basis.shape[0]
    key_counts = np.zeros(n_classes, dtype=np.int64)
    test_counts = np.zeros(n_classes, dtype=np.int64)
    test_errors = np.zeros(n_classes, dtype=np.int64)
    # One pass, writing into buffers sized for the worst case; the caller gets views.
    alice_key = np.empty(n, dtype=np.uint8)
    bob_key = np.empty(n, dtype=np.uint8)
    alice_test = np.empty(n, dtype=np.uint8)
    bob_test = np.empty(n, dtype=np.uint8)
    j = 0
    t = 0
    # Branch-free: bases are random, so "if same basis" would mispredict half the time.
    # Every row is written to both outputs; the cursors advance only where it belongs.
    for i in range(n):
        ab = a_basis[i]
        same = int(ab == b_basis[i])
        z = same & int(ab == 0)
        x = same - z
        ai = a_bit[i]
        bi = b_bit[i]
        c = a_class[i]
        alice_key[j] = ai
        bob_key[j] = bi
        alice_test[t] = ai
        bob_test[t] = bi
        j += z
        t += x
        key_counts[c] += z
        test_counts[c] += x
        test_errors[c] += x & int(ai != bi)
    alice_key = alice_key[:j]
    bob_key = bob_key[:j]
    alice_test = alice_test[:t]
    bob_test = bob_test[:t]
    return alice_key, bob_key, key_counts, test_counts, test_errors, alice_test, bob_test


@numba.njit(cache=True, nogil=True)
def _varint_gaps(pulse_index: np.ndarray) -> np.ndarray:
    # Gaps between detected pulse indices as LEB128 varints (7 bits per byte, high bit =
    # "more"): 1-2 bytes per detection instead of 8, so less to send and to authenticate.
    n = pulse_index.shape[0]
    out = np.empty(10 * n, dtype=np.uint8)
    k = 0
    prev = 0
    for i in range(n):
        g = pulse_index[i] - prev
        prev = pulse_index[i]
        while g >= 128:
            out[k] = np.uint8((g & 127) | 128)
            g >>= 7
            k += 1
        out[k] = np.uint8(g)
        k += 1
    return out[:k]


@numba.njit(cache=True, nogil=True)
def _pack2(values: np.ndarray) -> np.ndarray:
    # Two bits per value (values < 4), four values per byte, first value in the high bits.
    n = values.shape[0]
    out = np.zeros((n + 3) // 4, dtype=np.uint8)
    for i in range(n):
        out[i >> 2] |= np.uint8((values[i] & 3) << (6 - 2 * (i & 3)))
    return out


def decode_gaps(data: bytes, count: int) -> np.ndarray:
    """Inverse of the pulse-index encoding of Bob's announcement (for tests and receivers)."""
    out = np.empty(count, dtype=np.int64)
    value = shift = i = 0
    pos = 0
    for byte in data:
        value |= (byte & 127) << shift
        shift += 7
        if not byte & 128:
            pos += value
            out[i] = pos
            i += 1
            value = shift = 0
            if i == count:
                break
    return out[:i]


def _pack(arr: np.ndarray) -> bytes:
    return bytes(np.packbits(arr.astype(np.uint8, copy=False)).tobytes())


def sift(records: DetectionRecords) -> SiftedBlock:
    """Sift one block of detection records (Bennett & Brassard 1984; Lim et al. 2014).

    Returns the Z-basis sifted key of both parties and the per-class counts of the key and
    test bases. Units: bits and counts. Pure; the messages are built, not sent.
    """
    K = records.pulses_sent.shape[0]
    alice_key, bob_key, key_counts, test_counts, test_errors, alice_t, bob_t = _sift_kernel(
        records.alice_basis, records.bob_basis, records.alice_bit, records.bob_bit,
        records.alice_class, K,
    )
    # Public messages. Pulse indices are sent as varint gaps, bases and bits packed eight
    # to a byte, intensity classes four to a byte (two bits each) when there are <= 4.
    bob_announce = _varint_gaps(records.pulse_index).tobytes() + _pack(records.bob_basis)
    classes = _pack2(records.alice_class).tobytes() if K <= 4 else records.alice_class.tobytes()
    alice_answer = _pack(records.alice_basis) + classes
    alice_test = _pack(alice_t)
    bob_test = _pack(bob_t)
    return SiftedBlock(
        alice_key=alice_key,
        bob_key=bob_key,
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

"""Sifting on hand-made records, where the right answer can be counted by eye."""

from __future__ import annotations

import numpy as np

from qkdnet.postprocessing.sifting import decode_gaps, sift
from qkdnet.quantum.link import LinkSpec
from qkdnet.quantum.records import DetectionRecords
from qkdnet.quantum.sampling import simulate_block


def u8(*v: int) -> np.ndarray:
    return np.array(v, dtype=np.uint8)


def test_sifting_by_hand() -> None:
    rec = DetectionRecords(
        pulse_index=np.array([3, 7, 8, 20, 21, 40], dtype=np.int64),
        alice_class=u8(0, 1, 2, 0, 1, 0),
        alice_basis=u8(0, 0, 1, 1, 1, 0),
        alice_bit=u8(1, 0, 1, 0, 1, 1),
        bob_basis=u8(0, 1, 1, 1, 1, 0),
        bob_bit=u8(1, 1, 0, 0, 1, 0),
        pulses_sent=np.array([30, 10, 10], dtype=np.int64),
        intensities=(0.5, 0.1, 0.0002),
    )
    s = sift(rec)
    # Z-matched rows: 0 (bit 1/1) and 5 (bit 1/0); X-matched rows: 2 (err), 3, 4.
    assert s.alice_key.tolist() == [1, 1]
    assert s.bob_key.tolist() == [1, 0]
    assert s.key_counts.tolist() == [2, 0, 0]
    assert s.test_counts.tolist() == [1, 1, 1]
    assert s.test_errors.tolist() == [0, 0, 1]
    assert s.sifted_bits == 2 and s.detections == 6
    # Bob's announcement: one varint gap per detection (all < 128 here: one byte each),
    # then his bases packed; it decodes back to the pulse indices.
    assert len(s.messages[0][1]) == 6 + 1
    assert decode_gaps(s.messages[0][1], 6).tolist() == [3, 7, 8, 20, 21, 40]
    # Alice's answer: her bases packed (1 byte) and the classes, two bits each (2 bytes).
    assert s.messages[1][1] == bytes([0b00111000, 0b00011000, 0b01000000])
    assert [m[0] for m in s.messages] == ["bob", "alice", "alice", "bob"]


def test_sifted_fraction_and_error_rate_follow_the_link() -> None:
    link = LinkSpec(length_km=10.0, misalignment_error=0.02)
    rec = simulate_block(link, 20_000_000, np.random.default_rng(4))
    s = sift(rec)
    n = rec.detections
    # Basis choices are independent with p_z = 1/2: a quarter of detections are Z-matched.
    assert abs(s.sifted_bits / n - 0.25) < 5 * np.sqrt(0.25 * 0.75 / n)
    qber_key = float(np.mean(s.alice_key != s.bob_key))
    qber_test = s.test_errors.sum() / s.test_counts.sum()
    assert abs(qber_key - 0.02) < 0.003 and abs(qber_test - 0.02) < 0.003

"""The shared reconciliation contract: result type, entropy, efficiency, input checks."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from qkdnet.errors import ParameterError, ProtocolAbort
from qkdnet.postprocessing.reconciliation import (
    ReconciliationFailed,
    ReconciliationResult,
    binary_entropy,
    efficiency,
    validate_pair,
)


def test_binary_entropy_known_values():
    assert binary_entropy(0.5) == pytest.approx(1.0)
    assert binary_entropy(0.0) == 0.0 and binary_entropy(1.0) == 0.0
    # h(0.11) = 0.4999 (the classic BB84 threshold where 1 - 2h(Q) crosses zero)
    assert binary_entropy(0.11) == pytest.approx(0.49992, abs=1e-5)
    assert binary_entropy(0.02) == pytest.approx(-0.02 * math.log2(0.02) - 0.98 * math.log2(0.98))


def test_efficiency_definition_and_edges():
    assert efficiency(1414, 10_000, 0.02) == pytest.approx(1414 / (10_000 * binary_entropy(0.02)))
    assert efficiency(0, 100, 0.0) == 1.0
    assert math.isinf(efficiency(5, 100, 0.0))


def test_validate_pair_checks_and_copies():
    a = np.array([0, 1, 1, 0], dtype=np.int64)
    b = np.array([0, 1, 0, 0], dtype=bool)
    a8, b8 = validate_pair(a, b, 0.1)
    assert a8.dtype == np.uint8 and b8.dtype == np.uint8
    with pytest.raises(ParameterError, match="bob_bits"):
        validate_pair(a, b[:3], 0.1)
    with pytest.raises(ParameterError, match="alice_bits"):
        validate_pair(a.reshape(2, 2), b.reshape(2, 2), 0.1)
    with pytest.raises(ParameterError, match="alice_bits"):
        validate_pair(np.array([0, 2]), np.array([0, 1]), 0.1)
    for bad in (-0.01, 0.5, float("nan")):
        with pytest.raises(ParameterError, match="qber"):
            validate_pair(a, b, bad)


def test_result_is_frozen_and_failure_is_a_protocol_abort():
    res = ReconciliationResult(np.zeros(3, dtype=np.uint8), 2, b"xy", 1, 1.1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.leaked_bits = 0  # type: ignore[misc]
    err = ReconciliationFailed("nope", leaked_bits=42)
    assert isinstance(err, ProtocolAbort) and err.leaked_bits == 42

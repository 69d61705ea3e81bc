"""`DetectionRecords`: one block of detection events, the boundary between the quantum layer
and post-processing, and the structure a real device's data is imported into.

Only *detected* pulses are stored (for 10⁹ pulses at 50 km that is a few 10⁶ rows, not 10⁹),
plus the number of pulses sent in each intensity class, which the decoy-state bounds need.

Encoding, one element per detected pulse:

============== ========= ============================================================
array          dtype     meaning
============== ========= ============================================================
pulse_index    int64     index of the pulse in the block, strictly increasing, < sent
alice_class    uint8     Alice's intensity class (index into ``intensities``)
alice_basis    uint8     0 = Z (key basis), 1 = X (test basis)
alice_bit      uint8     0 or 1
bob_basis      uint8     0 = Z, 1 = X
bob_bit        uint8     0 or 1 (a double click was already squashed to a random bit)
============== ========= ============================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from qkdnet.errors import RecordsError

#: Basis codes used in every record array.
BASIS_Z: int = 0
BASIS_X: int = 1

#: Protocols a block of records can come from.
PROTOCOLS: tuple[str, ...] = ("bb84-decoy", "bbm92")

_PER_DETECTION = ("pulse_index", "alice_class", "alice_basis", "alice_bit", "bob_basis", "bob_bit")


@dataclass(frozen=True, eq=False)
class DetectionRecords:
    """Detection events of one block of pulses (see the module docstring for the encoding).

    ``pulses_sent[k]`` is the number of pulses Alice sent in intensity class ``k`` with mean
    photon number ``intensities[k]`` (photons per pulse). For BBM92, there is one class and
    ``intensities[0]`` is the mean number of pairs per pulse slot.

    Raises :class:`qkdnet.errors.RecordsError` when arrays have the wrong dtype, shape or
    values (bits not 0/1, classes out of range, unsorted or out-of-range pulse indices, more
    detections in a class than pulses sent).
    """

    pulse_index: np.ndarray
    alice_class: np.ndarray
    alice_basis: np.ndarray
    alice_bit: np.ndarray
    bob_basis: np.ndarray
    bob_bit: np.ndarray
    pulses_sent: np.ndarray
    intensities: tuple[float, ...]
    protocol: str = "bb84-decoy"
    #: Free-form provenance (link name, device, seed), carried into reports.
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise RecordsError(f"protocol: must be one of {PROTOCOLS}, got {self.protocol!r}")
        n = None
        for name in _PER_DETECTION:
            arr = getattr(self, name)
            if not isinstance(arr, np.ndarray) or arr.ndim != 1:
                raise RecordsError(f"{name}: must be a one-dimensional NumPy array")
            want = np.int64 if name == "pulse_index" else np.uint8
            if arr.dtype != want:
                raise RecordsError(f"{name}: dtype must be {np.dtype(want).name}, got {arr.dtype}")
            if n is None:
                n = arr.shape[0]
            elif arr.shape[0] != n:
                raise RecordsError(
                    f"{name}: has {arr.shape[0]} entries but pulse_index has {n}; "
                    "every per-detection array must have one entry per detected pulse"
                )
        sent = self.pulses_sent
        if not isinstance(sent, np.ndarray) or sent.ndim != 1 or sent.dtype != np.int64:
            raise RecordsError("pulses_sent: must be a one-dimensional int64 array")
        if len(self.intensities) != sent.shape[0] or sent.shape[0] == 0:
            raise RecordsError(
                f"pulses_sent: needs one count per intensity class ({len(self.intensities)}), "
                f"got {sent.shape[0]}"
            )
        if np.any(sent < 0):
            raise RecordsError("pulses_sent: counts must be >= 0")
        if any(not (mu >= 0.0) or not np.isfinite(mu) for mu in self.intensities):
            raise RecordsError("intensities: mean photon numbers must be finite and >= 0")
        for name in ("alice_basis", "alice_bit", "bob_basis", "bob_bit"):
            arr = getattr(self, name)
            if arr.size and int(arr.max()) > 1:
                raise RecordsError(f"{name}: values must be 0 or 1")
        if self.alice_class.size and int(self.alice_class.max()) >= sent.shape[0]:
            raise RecordsError(
                f"alice_class: values must be < {sent.shape[0]} (the number of intensity classes)"
            )
        idx = self.pulse_index
        if idx.size:
            if int(idx[0]) < 0 or int(idx[-1]) >= self.total_pulses:
                raise RecordsError(
                    f"pulse_index: values must lie in [0, {self.total_pulses}) (pulses sent)"
                )
            if idx.size > 1 and not bool(np.all(idx[1:] > idx[:-1])):
                raise RecordsError("pulse_index: must be strictly increasing (no repeats)")
            per_class = np.bincount(self.alice_class, minlength=sent.shape[0])
            if np.any(per_class > sent):
                raise RecordsError("alice_class: more detections in a class than pulses sent")

    @property
    def detections(self) -> int:
        """Number of detected pulses (rows)."""
        return int(self.pulse_index.shape[0])

    @property
    def total_pulses(self) -> int:
        """Number of pulses sent in the block, all classes."""
        return int(self.pulses_sent.sum())

    @property
    def nbytes(self) -> int:
        """Memory held by the arrays, bytes."""
        return int(sum(getattr(self, n).nbytes for n in _PER_DETECTION) + self.pulses_sent.nbytes)

"""Reading and writing detection records: Alice's and Bob's files (NPZ or CSV).

The format is documented in ``docs/records-format.md``. Each party keeps its own file, as
on a real device: Alice's lists, for the pulses Bob detected (or for every pulse sent), the
pulse index, intensity class, basis and bit, plus the number of pulses sent per class and
the mean photon numbers; Bob's lists the pulse index, basis and bit of each detection.
:func:`load_pair` joins them by pulse index into one :class:`DetectionRecords` and refuses
(with :class:`RecordsError`) anything malformed or mismatched — never a silent wrong key.
"""

from __future__ import annotations

import csv
import io
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qkdnet.errors import RecordsError
from qkdnet.quantum.records import PROTOCOLS, DetectionRecords

__all__ = [
    "FORMAT",
    "PartyRecords",
    "convert",
    "join",
    "load_pair",
    "read_party",
    "split",
    "write_party",
    "write_pair",
]

#: Format tag stored in every file; bump on incompatible change.
FORMAT = "qkdnet-records-1"


@dataclass(frozen=True, eq=False)
class PartyRecords:
    """One party's records. For Bob ``intensity_class``/``pulses_sent``/``intensities`` are
    None. ``block_id`` (optional) must agree between Alice's and Bob's files."""

    role: str
    pulse_index: np.ndarray
    basis: np.ndarray
    bit: np.ndarray
    intensity_class: np.ndarray | None = None
    pulses_sent: np.ndarray | None = None
    intensities: tuple[float, ...] | None = None
    protocol: str = "bb84-decoy"
    block_id: str = ""


def split(records: DetectionRecords, block_id: str = "") -> tuple[PartyRecords, PartyRecords]:
    """Alice's and Bob's halves of simulated records (Alice's lists the detected pulses)."""
    alice = PartyRecords(
        role="alice", pulse_index=records.pulse_index, basis=records.alice_basis,
        bit=records.alice_bit, intensity_class=records.alice_class,
        pulses_sent=records.pulses_sent, intensities=records.intensities,
        protocol=records.protocol, block_id=block_id,
    )
    bob = PartyRecords(
        role="bob", pulse_index=records.pulse_index, basis=records.bob_basis,
        bit=records.bob_bit, protocol=records.protocol, block_id=block_id,
    )
    return alice, bob


def _as_int64(name: str, path: Path, values: np.ndarray) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise RecordsError(f"{path}: {name} must be one-dimensional, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise RecordsError(f"{path}: {name} must hold integers, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _as_bits(name: str, path: Path, values: np.ndarray) -> np.ndarray:
    arr = _as_int64(name, path, values)
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 1):
        bad = int(np.flatnonzero((arr < 0) | (arr > 1))[0])
        raise RecordsError(f"{path}: {name} must be 0 or 1; row {bad} holds {int(arr[bad])}")
    return arr.astype(np.uint8)


def _check_party(p: PartyRecords, path: Path) -> PartyRecords:
    n = p.pulse_index.shape[0]
    for name in ("basis", "bit"):
        if getattr(p, name).shape[0] != n:
            raise RecordsError(f"{path}: {name} has {getattr(p, name).shape[0]} rows, "
                               f"pulse_index has {n}")
    if n > 1 and not bool(np.all(p.pulse_index[1:] > p.pulse_index[:-1])):
        raise RecordsError(f"{path}: pulse_index must be strictly increasing (sorted, no repeats)")
    if n and int(p.pulse_index[0]) < 0:
        raise RecordsError(f"{path}: pulse_index must be >= 0")
    if p.protocol not in PROTOCOLS:
        raise RecordsError(f"{path}: protocol must be one of {PROTOCOLS}, got {p.protocol!r}")
    if p.role == "alice":
        if p.intensity_class is None or p.pulses_sent is None or p.intensities is None:
            raise RecordsError(
                f"{path}: Alice's file needs intensity_class, pulses_sent and intensities"
            )
        if p.intensity_class.shape[0] != n:
            raise RecordsError(f"{path}: intensity_class has {p.intensity_class.shape[0]} rows, "
                               f"pulse_index has {n}")
    elif p.role != "bob":
        raise RecordsError(f"{path}: role must be 'alice' or 'bob', got {p.role!r}")
    return p


def write_party(party: PartyRecords, path: str | Path) -> Path:
    """Write one party's records as NPZ (compressed). Returns the path written."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {
        "format": np.array(FORMAT), "role": np.array(party.role),
        "protocol": np.array(party.protocol), "block_id": np.array(party.block_id),
        "pulse_index": party.pulse_index.astype(np.int64),
        "basis": party.basis.astype(np.uint8), "bit": party.bit.astype(np.uint8),
    }
    if party.role == "alice":
        assert party.intensity_class is not None and party.pulses_sent is not None
        assert party.intensities is not None
        arrays["intensity_class"] = party.intensity_class.astype(np.uint8)
        arrays["pulses_sent"] = party.pulses_sent.astype(np.int64)
        arrays["intensities"] = np.asarray(party.intensities, dtype=np.float64)
    with path.open("wb") as fh:
        np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]
    return path


def write_pair(records: DetectionRecords, directory: str | Path, block_id: str = "") -> tuple[
    Path, Path
]:
    """Write ``alice.npz`` and ``bob.npz`` for one block into ``directory``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    alice, bob = split(records, block_id)
    return write_party(alice, d / "alice.npz"), write_party(bob, d / "bob.npz")


def _read_npz(path: Path) -> PartyRecords:
    try:
        with np.load(path, allow_pickle=False) as data:
            files = set(data.files)
            need = {"format", "role", "pulse_index", "basis", "bit"}
            missing = need - files
            if missing:
                raise RecordsError(f"{path}: missing arrays {sorted(missing)}; see "
                                   "docs/records-format.md")
            fmt = str(data["format"])
            if fmt != FORMAT:
                raise RecordsError(f"{path}: format {fmt!r} is not {FORMAT!r}")
            role = str(data["role"])
            kwargs: dict[str, object] = {}
            if role == "alice":
                for name in ("intensity_class", "pulses_sent", "intensities"):
                    if name not in files:
                        raise RecordsError(f"{path}: Alice's file lacks {name!r}")
                kwargs["intensity_class"] = _as_int64("intensity_class", path,
                                                      data["intensity_class"]).astype(np.uint8)
                kwargs["pulses_sent"] = _as_int64("pulses_sent", path, data["pulses_sent"])
                kwargs["intensities"] = tuple(float(x) for x in np.asarray(data["intensities"]))
            return _check_party(PartyRecords(
                role=role,
                pulse_index=_as_int64("pulse_index", path, data["pulse_index"]),
                basis=_as_bits("basis", path, data["basis"]),
                bit=_as_bits("bit", path, data["bit"]),
                protocol=str(data["protocol"]) if "protocol" in files else "bb84-decoy",
                block_id=str(data["block_id"]) if "block_id" in files else "",
                **kwargs,  # type: ignore[arg-type]
            ), path)
    except (OSError, ValueError, zipfile.BadZipFile, KeyError) as exc:
        raise RecordsError(f"{path}: not a readable records NPZ file ({exc})") from exc


def _parse_basis(path: Path, values: list[str]) -> np.ndarray:
    table = {"0": 0, "1": 1, "z": 0, "x": 1}
    out = np.empty(len(values), dtype=np.uint8)
    for i, v in enumerate(values):
        code = table.get(v.strip().lower())
        if code is None:
            raise RecordsError(f"{path}: row {i + 1}: basis must be Z, X, 0 or 1, got {v!r}")
        out[i] = code
    return out


def _read_csv(path: Path) -> PartyRecords:
    """CSV: '# key=value' header lines (role, protocol, intensities, pulses_sent, block_id),
    then a header row and one row per detection (see docs/records-format.md)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordsError(f"{path}: cannot read ({exc})") from exc
    meta: dict[str, str] = {}
    body: list[str] = []
    for line in text.splitlines():
        if line.startswith("#"):
            key, sep, value = line[1:].partition("=")
            if sep:
                meta[key.strip().lower()] = value.strip()
        elif line.strip():
            body.append(line)
    if not body:
        raise RecordsError(f"{path}: no header row; see docs/records-format.md")
    reader = csv.DictReader(io.StringIO("\n".join(body)))
    fields = [f.strip() for f in (reader.fieldnames or [])]
    reader.fieldnames = fields
    role = meta.get("role", "alice" if "intensity_class" in fields else "bob")
    need = ["pulse_index", "basis", "bit"] + (["intensity_class"] if role == "alice" else [])
    missing = [f for f in need if f not in fields]
    if missing:
        raise RecordsError(f"{path}: missing columns {missing}; have {fields}")
    cols: dict[str, list[str]] = {f: [] for f in need}
    for row_no, row in enumerate(reader, start=1):
        for f in need:
            cell = row.get(f)
            if cell is None:
                raise RecordsError(f"{path}: row {row_no}: missing value for {f!r}")
            cols[f].append(cell)

    def ints(name: str) -> np.ndarray:
        try:
            return np.array([int(v) for v in cols[name]], dtype=np.int64)
        except ValueError as exc:
            raise RecordsError(f"{path}: column {name!r} must hold integers ({exc})") from exc

    kwargs: dict[str, object] = {}
    if role == "alice":
        try:
            kwargs["intensities"] = tuple(float(x) for x in meta["intensities"].split(","))
            kwargs["pulses_sent"] = np.array(
                [int(x) for x in meta["pulses_sent"].split(",")], dtype=np.int64
            )
        except KeyError as exc:
            raise RecordsError(f"{path}: Alice's CSV needs a '# {exc.args[0]}=...' line") from exc
        except ValueError as exc:
            raise RecordsError(f"{path}: bad intensities or pulses_sent line ({exc})") from exc
        if any(not math.isfinite(x) for x in kwargs["intensities"]):  # type: ignore[attr-defined]
            raise RecordsError(f"{path}: intensities must be finite numbers")
        cls = ints("intensity_class")
        if cls.size and (int(cls.min()) < 0 or int(cls.max()) > 255):
            raise RecordsError(f"{path}: intensity_class must be in 0..255")
        kwargs["intensity_class"] = cls.astype(np.uint8)
    return _check_party(PartyRecords(
        role=role, pulse_index=ints("pulse_index"),
        basis=_parse_basis(path, cols["basis"]), bit=_as_bits("bit", path, ints("bit")),
        protocol=meta.get("protocol", "bb84-decoy"), block_id=meta.get("block_id", ""),
        **kwargs,  # type: ignore[arg-type]
    ), path)


def read_party(path: str | Path) -> PartyRecords:
    """Read one party's file, ``.npz`` or ``.csv``; RecordsError on anything malformed."""
    p = Path(path)
    if not p.is_file():
        raise RecordsError(f"{p}: no such file")
    if p.suffix.lower() == ".csv":
        return _read_csv(p)
    return _read_npz(p)


def convert(source: str | Path, target: str | Path) -> Path:
    """Convert a party's CSV file to the NPZ format (validating it on the way)."""
    return write_party(read_party(source), target)


def join(alice: PartyRecords, bob: PartyRecords) -> DetectionRecords:
    """Join Alice's and Bob's records by pulse index into one block of DetectionRecords.

    Bob's detections define the rows; Alice's file may list only those pulses or every
    pulse sent. Raises RecordsError when roles, protocols or block IDs disagree, or when
    Bob reports a pulse Alice has no record of.
    """
    if alice.role != "alice" or bob.role != "bob":
        raise RecordsError(
            f"expected Alice's file then Bob's, got roles {alice.role!r} and {bob.role!r}"
        )
    if alice.protocol != bob.protocol:
        raise RecordsError(f"protocols differ: Alice {alice.protocol!r}, Bob {bob.protocol!r}")
    if alice.block_id and bob.block_id and alice.block_id != bob.block_id:
        raise RecordsError(
            f"the files are from different blocks: Alice {alice.block_id!r}, Bob {bob.block_id!r}"
        )
    assert alice.intensity_class is not None and alice.pulses_sent is not None
    assert alice.intensities is not None
    pos = np.searchsorted(alice.pulse_index, bob.pulse_index)
    inside = pos < alice.pulse_index.shape[0]
    found = np.zeros(bob.pulse_index.shape[0], dtype=bool)
    found[inside] = alice.pulse_index[pos[inside]] == bob.pulse_index[inside]
    if not bool(found.all()):
        first = int(bob.pulse_index[int(np.flatnonzero(~found)[0])])
        raise RecordsError(
            f"Bob's file reports {int((~found).sum())} pulse(s) that Alice's file does not "
            f"list (first: pulse {first}); the files do not belong together"
        )
    return DetectionRecords(
        pulse_index=bob.pulse_index.astype(np.int64),
        alice_class=alice.intensity_class[pos].astype(np.uint8),
        alice_basis=alice.basis[pos].astype(np.uint8),
        alice_bit=alice.bit[pos].astype(np.uint8),
        bob_basis=bob.basis.astype(np.uint8),
        bob_bit=bob.bit.astype(np.uint8),
        pulses_sent=alice.pulses_sent.astype(np.int64),
        intensities=alice.intensities,
        protocol=alice.protocol,
        source=alice.block_id,
    )


def load_pair(alice_path: str | Path, bob_path: str | Path) -> DetectionRecords:
    """Read Alice's and Bob's files and join them (RecordsError on any problem)."""
    return join(read_party(alice_path), read_party(bob_path))

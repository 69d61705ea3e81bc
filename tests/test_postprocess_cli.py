"""`qkdnet postprocess ALICE BOB`: real files in, identical keys out, clear errors otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from _cli import Cli
from qkdnet.errors import RecordsError
from qkdnet.quantum.link import LinkSpec
from qkdnet.quantum.sampling import simulate_block
from qkdnet.recordsio import (
    PartyRecords,
    convert,
    join,
    load_pair,
    read_party,
    split,
    write_pair,
    write_party,
)

LINK = LinkSpec(length_km=5.0, detector_efficiency=0.5, intensities=(0.6, 0.2, 0.0),
                intensity_probabilities=(0.5, 0.3, 0.2))




def write_csv(records: object, directory: Path) -> tuple[Path, Path]:
    alice, bob = split(records, "run-1")  # type: ignore[arg-type]
    a = directory / "alice.csv"
    b = directory / "bob.csv"
    names = "ZX"
    with a.open("w") as fh:
        fh.write("# role=alice\n# protocol=bb84-decoy\n")
        fh.write("# intensities=" + ",".join(repr(x) for x in alice.intensities) + "\n")
        fh.write("# pulses_sent=" + ",".join(str(x) for x in alice.pulses_sent) + "\n")
        fh.write("# block_id=run-1\npulse_index,intensity_class,basis,bit\n")
        for i, c, s, v in zip(alice.pulse_index, alice.intensity_class, alice.basis, alice.bit,
                              strict=True):
            fh.write(f"{i},{c},{names[s]},{v}\n")
    with b.open("w") as fh:
        fh.write("# role=bob\n# block_id=run-1\npulse_index,basis,bit\n")
        for i, s, v in zip(bob.pulse_index, bob.basis, bob.bit, strict=True):
            fh.write(f"{i},{names[s]},{v}\n")
    return a, b


@pytest.fixture(scope="module")
def records() -> object:
    return simulate_block(LINK, 3_000_000, np.random.default_rng(21))


def test_npz_and_csv_round_trip(records: object, tmp_path: Path) -> None:
    a, b = write_pair(records, tmp_path / "npz", "run-1")  # type: ignore[arg-type]
    back = load_pair(a, b)
    ca, cb = write_csv(records, tmp_path)
    from_csv = load_pair(ca, cb)
    for r in (back, from_csv):
        for name in ("pulse_index", "alice_class", "alice_basis", "alice_bit", "bob_basis",
                     "bob_bit", "pulses_sent"):
            assert np.array_equal(getattr(r, name), getattr(records, name)), name
    convert(ca, tmp_path / "converted.npz")
    assert np.array_equal(read_party(tmp_path / "converted.npz").bit, from_csv.alice_bit)


def test_postprocess_csv_gives_identical_keys(
    run_cli: Cli, records: object, tmp_path: Path
) -> None:
    ca, cb = write_csv(records, tmp_path)
    res = run_cli("postprocess", str(ca), str(cb), "--out", str(tmp_path / "o"), "--seed", "1",
                  "--save-npz", str(tmp_path / "npz"))
    assert res.returncode == 0, res.stderr
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["keys_match"] is True and summary["secret_bits"] > 0
    assert (tmp_path / "o" / "alice.key").read_bytes() == (tmp_path / "o" / "bob.key").read_bytes()
    assert (tmp_path / "npz" / "alice.npz").is_file()


def test_malformed_and_mismatched_files_are_refused(
    run_cli: Cli, records: object, tmp_path: Path
) -> None:
    a, b = write_pair(records, tmp_path, "run-1")  # type: ignore[arg-type]
    # Swapped roles.
    res = run_cli("postprocess", str(b), str(a))
    assert res.returncode == 2 and "roles" in res.stderr and "Traceback" not in res.stderr
    # Bob's file from another block.
    other = simulate_block(LINK, 3_000_000, np.random.default_rng(99))
    _, bob_other = split(other, "run-2")
    write_party(bob_other, tmp_path / "bob2.npz")
    res = run_cli("postprocess", str(a), str(tmp_path / "bob2.npz"))
    assert res.returncode == 2 and "different blocks" in res.stderr
    # Same block ID, but pulses Alice never recorded.
    _, bob_other = split(other, "run-1")
    write_party(bob_other, tmp_path / "bob3.npz")
    with pytest.raises(RecordsError, match="does not list"):
        load_pair(a, tmp_path / "bob3.npz")
    # Garbage and missing files.
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    res = run_cli("postprocess", str(tmp_path / "junk.npz"), str(b))
    assert res.returncode == 2 and "junk.npz" in res.stderr
    res = run_cli("postprocess", str(tmp_path / "missing.npz"), str(b))
    assert res.returncode == 2 and "no such file" in res.stderr
    # A bit that is not 0/1 in a CSV.
    ca, cb = write_csv(records, tmp_path)
    lines = cb.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0] + ",2"
    cb.write_text("\n".join(lines) + "\n")
    with pytest.raises(RecordsError, match="0 or 1"):
        read_party(cb)
    # Unsorted pulse indices.
    lines = ca.read_text().splitlines()
    lines[6], lines[7] = lines[7], lines[6]
    ca.write_text("\n".join(lines) + "\n")
    with pytest.raises(RecordsError, match="increasing"):
        read_party(ca)


def test_alice_full_log_joins_on_bobs_detections(records: object) -> None:
    """Alice's file may list every pulse she sent; only Bob's detections are kept."""
    alice, bob = split(records, "run-1")  # type: ignore[arg-type]
    rng = np.random.default_rng(5)
    extra = np.setdiff1d(np.arange(0, int(alice.pulse_index[-1]) + 1, 7), alice.pulse_index)
    idx = np.concatenate([alice.pulse_index, extra])
    order = np.argsort(idx)
    n_extra = extra.size

    def widen(values: np.ndarray, high: int) -> np.ndarray:
        more = rng.integers(0, high, n_extra).astype(values.dtype)
        return np.concatenate([values, more])[order]

    full = PartyRecords(
        role="alice", pulse_index=idx[order], basis=widen(alice.basis, 2),
        bit=widen(alice.bit, 2), intensity_class=widen(alice.intensity_class, 3),
        pulses_sent=alice.pulses_sent, intensities=alice.intensities, block_id="run-1",
    )
    joined = join(full, bob)
    for name in ("pulse_index", "alice_class", "alice_basis", "alice_bit", "bob_bit"):
        assert np.array_equal(getattr(joined, name), getattr(records, name)), name

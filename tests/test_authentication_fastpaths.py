"""The in-place, many-words-per-step polynomial hash of authentication and the channel's
buffer handling.

Independent truths: Horner's rule one word at a time (``_gf2.poly_hash``, and the
pure-Python GF(2^64) reference of tests/test_authentication.py) over the copied word buffer
(``_message_blocks``); the portable one-word-at-a-time dot product and the shift-and-xor
carry-less multiply for the 512-bit VPCLMULQDQ kernel; fresh interpreters with the
512-bit path (QKDNET_NO_VPCLMUL512=1) or every hardware path (QKDNET_SOFT_CLMUL=1) turned
off, which must give the same tags bit for bit.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from qkdnet.errors import AuthenticationError, ParameterError
from qkdnet.postprocessing import _gf2
from qkdnet.postprocessing.authentication import (
    HASH_STEP_WORDS,
    AuthenticatedChannel,
    Frame,
    PreSharedKeyPool,
    Role,
    WegmanCarterAuthenticator,
    _hash_run,
    _key_powers,
    _message_blocks,
    _message_hash,
)
from test_authentication import ref_gf64_mul, ref_tag, word


def _unaligned(data: bytes, shift: int) -> np.ndarray:
    """``data`` as a uint8 array starting ``shift`` bytes into a fresh buffer."""
    buf = np.zeros(len(data) + 8, dtype=np.uint8)
    buf[shift : shift + len(data)] = np.frombuffer(data, dtype=np.uint8)
    return buf[shift : shift + len(data)]


# ---- the kernels ----------------------------------------------------------------------

def test_key_powers_are_powers() -> None:
    k = np.uint64(0x9E3779B97F4A7C15)
    P = _key_powers(k, 40)
    assert P[40] == 1 and P[39] == k
    x = 1
    for e in range(1, 41):
        x = ref_gf64_mul(x, int(k))
        assert int(P[40 - e]) == x


@njit
def _dot128(buf, off, pw, pw_off, groups):  # noqa: ANN001, ANN202
    return _gf2._clmul_dot128(buf, off, pw, pw_off, groups)  # type: ignore[call-arg]


@njit
def _dot512(buf, off, pw, pw_off, groups):  # noqa: ANN001, ANN202
    return _gf2._clmul_dot512(buf, off, pw, pw_off, groups)  # type: ignore[call-arg]


@pytest.mark.parametrize("groups", [1, 2, 3, 16, 17])
def test_dot_product_kernels_equal_word_by_word_and_soft(groups: int) -> None:
    """``clmul_dot8`` (the path this host uses), and the 128-bit and 512-bit kernels where
    the CPU has them, against the portable one-word-at-a-time sum and the shift-and-xor
    products, at every byte alignment and table offset."""
    kernels = [_gf2.clmul_dot8]
    if _gf2.HAS_PCLMUL:
        kernels.append(_dot128)
    if _gf2.HAS_VPCLMUL512:
        kernels.append(_dot512)
    rng = np.random.default_rng(groups)
    buf = rng.integers(0, 256, 8 * 8 * groups + 16, dtype=np.uint8)
    pw = rng.integers(0, 2**64, 8 * groups + 9, dtype=np.uint64)
    u = np.uint64
    for off in range(8):
        for pw_off in (0, 1, 9):
            words = np.frombuffer(buf[off : off + 64 * groups].tobytes(), dtype="<u8")
            lo = hi = 0
            for t, w in enumerate(words):
                a, b = _gf2.clmul_soft(w, pw[pw_off + t])
                lo ^= int(a)
                hi ^= int(b)
            ref = _gf2.clmul_dot8_words(buf, u(off), pw, u(pw_off), u(groups))
            assert (int(ref[0]), int(ref[1])) == (lo, hi)
            for kernel in kernels:
                got = kernel(buf, u(off), pw, u(pw_off), u(groups))
                assert (int(got[0]), int(got[1])) == (lo, hi), kernel


@settings(max_examples=30, deadline=None)
@given(
    n=st.one_of(st.integers(0, 40), st.integers(100, 600)),
    step=st.sampled_from([8, 16, 24, 64, HASH_STEP_WORDS, 256]),
    shift=st.integers(0, 7),
    start=st.integers(0, 2**64 - 1),
    seed=st.integers(0, 2**32 - 1),
)
def test_hash_run_equals_horner(n: int, step: int, shift: int, start: int, seed: int) -> None:
    """Horner's rule continued from ``start`` over n words read at any alignment: the
    same value for any step (whole steps, a short last step, a tail below 8 words)."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, 8 * n, dtype=np.uint8).tobytes()
    key = np.uint64(int(rng.integers(0, 2**63)) * 2 + 1)
    words = np.frombuffer(data, dtype="<u8").copy()
    if n:
        words[0] ^= np.uint64(start)  # h <- (h + w_0) k: the start enters with word 0
    want = _gf2.poly_hash(words, key) if n else np.uint64(start)
    P = _key_powers(key, step)
    view = _unaligned(data, shift)  # starts ``shift`` bytes into its buffer
    assert _hash_run(view, 0, n, P, np.uint64(start)) == want
    whole = np.zeros(8 * n + 8, dtype=np.uint8)
    whole[shift : shift + 8 * n] = view
    assert _hash_run(whole, shift, n, P, np.uint64(start)) == want


@settings(max_examples=40, deadline=None)
@given(
    head=st.integers(0, 20),
    body=st.one_of(st.integers(0, 40), st.integers(1000, 1100), st.integers(3000, 9000)),
    shift=st.integers(0, 7),
    seed=st.integers(0, 2**32 - 1),
)
def test_message_hash_in_place_equals_copied_blocks(
    head: int, body: int, shift: int, seed: int
) -> None:
    """p_k(head || body) read in place (the straddling word and the padded last word made
    from bytes) equals Horner's rule over the copied, zero-padded word buffer with its
    length block."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, head, dtype=np.uint8).tobytes()
    b = rng.integers(0, 256, body, dtype=np.uint8).tobytes()
    key = np.uint64(int(rng.integers(0, 2**64, dtype=np.uint64)))
    want = _gf2.poly_hash(_message_blocks(a, b), key)
    P = _key_powers(key, HASH_STEP_WORDS)
    assert _message_hash(_unaligned(a, 3), _unaligned(b, shift), P) == want
    assert _message_hash(np.frombuffer(a + b, np.uint8), np.zeros(0, np.uint8), P) == want


@pytest.mark.parametrize("size", [0, 1, 7, 8, 9, 1023, 1024, 1031, 2057])
def test_tags_of_long_messages_equal_the_python_reference(size: int) -> None:
    """Whole tags against the pure-Python GF(2^64) reference, for sizes around a step
    (HASH_STEP_WORDS words) and its 8-word groups, with 64- and 128-bit tags."""
    rng = np.random.default_rng(size)
    message = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    raw = rng.integers(0, 2, 64 * 6, dtype=np.uint8)
    tag = WegmanCarterAuthenticator(PreSharedKeyPool(raw)).tag(message)
    assert tag == ref_tag(message, word(raw[:64]), word(raw[64:128]), word(raw[128:192]))
    tag2 = WegmanCarterAuthenticator(PreSharedKeyPool(raw), tag_bits=128).tag(message)
    lanes = [ref_tag(message, word(raw[128 * i : 128 * i + 64]),
                     word(raw[128 * i + 64 : 128 * i + 128]),
                     word(raw[256 + 64 * i : 320 + 64 * i])) for i in range(2)]
    assert tag2 == lanes[0] + lanes[1]


# ---- every carry-less path gives the same tags -----------------------------------------

_TAG_DIGEST = """
import hashlib
import numpy as np
from qkdnet.postprocessing.authentication import (
    AuthenticatedChannel, PreSharedKeyPool, Role, WegmanCarterAuthenticator)

def tag_digest():
    rng = np.random.default_rng(17)
    key = rng.integers(0, 2, 1 << 14, dtype=np.uint8)
    channel = AuthenticatedChannel(PreSharedKeyPool(key), PreSharedKeyPool(key))
    auth = WegmanCarterAuthenticator(PreSharedKeyPool(key), tag_bits=128)
    h = hashlib.sha256()
    for size in (0, 5, 8, 63, 64, 1000, 1024, 4099, 70_001, 300_007):
        msg = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        frame = channel.send(Role.BOB if size % 2 else Role.ALICE, msg[1:])
        channel.receive(frame)
        h.update(frame.tag)
        h.update(auth.tag(memoryview(msg)[size // 3:]))
    return h.hexdigest()
"""


@pytest.mark.parametrize("variable", ["QKDNET_NO_VPCLMUL512", "QKDNET_SOFT_CLMUL"])
def test_portable_paths_give_the_same_tags(variable: str, tmp_path: Path) -> None:
    """The 128-bit PCLMULQDQ path (words one at a time, 32 per step) and the shift-and-xor
    path, each in a fresh interpreter with its own Numba cache, give the tags of this
    process's default path (512-bit VPCLMULQDQ where the CPU has it)."""
    code = _TAG_DIGEST + f"""
from qkdnet.postprocessing import _gf2, authentication
assert not _gf2.HAS_VPCLMUL512
assert _gf2.HAS_PCLMUL == {variable == "QKDNET_NO_VPCLMUL512" and _gf2.HAS_PCLMUL}
assert authentication.HASH_STEP_WORDS == 32
print(tag_digest())
"""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    env[variable] = "1"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    here: dict[str, object] = {}
    exec(_TAG_DIGEST, here)  # noqa: S102 - our own snippet, shared with the subprocess
    assert out.stdout.strip() == here["tag_digest"]()  # type: ignore[operator]


# ---- buffers: no copy where nothing can change, one copy where it can ---------------------

def _channel(tamper: object = None) -> AuthenticatedChannel:
    key = np.random.default_rng(8).integers(0, 2, 1 << 13, dtype=np.uint8)
    return AuthenticatedChannel(PreSharedKeyPool(key), PreSharedKeyPool(key),
                                tamper=tamper)  # type: ignore[arg-type]


def _readonly_view(data: bytes, shift: int = 0) -> memoryview:
    arr = _unaligned(data, shift)
    arr.flags.writeable = False
    return arr.data


def test_read_only_views_travel_uncopied_and_tag_like_bytes() -> None:
    """bytes and a read-only memoryview of a uint8 array are the frame's payload as
    given (the very object: no copy) and get the tag of the same bytes; ``receive`` hands
    back that object."""
    rng = np.random.default_rng(2)
    data = [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in (0, 9, 5000, 70_003)]
    ch_bytes, ch_views = _channel(), _channel()
    for i, d in enumerate(data):
        sender = Role.ALICE if i % 2 else Role.BOB
        fb = ch_bytes.send(sender, d)
        view = _readonly_view(d, shift=i % 8)
        fv = ch_views.send(sender, view)
        assert fb.payload is d and fv.payload is view
        assert fv.tag == fb.tag
        assert ch_bytes.receive(fb) is d
        assert ch_views.receive(fv) is view
    assert ch_views.payload_bits == ch_bytes.payload_bits == 8 * sum(map(len, data))


def test_other_read_only_buffers_are_viewed_not_copied() -> None:
    """A read-only NumPy array of wider words, or a 2-D one, is carried as a format-'B'
    memoryview over the same memory: the tag is the tag of its raw bytes."""
    arr = np.arange(1000, dtype=np.uint64).reshape(10, 100)
    arr.flags.writeable = False
    ch, twin = _channel(), _channel()
    frame = ch.send(Role.ALICE, arr)  # type: ignore[arg-type]
    assert isinstance(frame.payload, memoryview) and frame.payload.format == "B"
    assert np.shares_memory(np.frombuffer(frame.payload, np.uint8), arr)
    assert frame.tag == twin.send(Role.ALICE, arr.tobytes()).tag
    assert bytes(ch.receive(frame)) == arr.tobytes()


@pytest.mark.parametrize("kind", ["bytearray", "writable view", "array", "strided"])
def test_writable_buffers_are_copied_once_so_they_cannot_change(kind: str) -> None:
    """A writable (or strided) buffer is copied into bytes before it is tagged: changing
    the caller's buffer afterwards changes neither the frame nor its acceptance."""
    data = np.random.default_rng(3).integers(0, 256, 3000, dtype=np.uint8)
    source: object
    if kind == "bytearray":
        source = bytearray(data.tobytes())
    elif kind == "writable view":
        source = data.copy().data
    elif kind == "array":
        source = data.copy()
    else:
        wide = np.zeros(6000, dtype=np.uint8)
        wide[::2] = data
        source = wide.data[::2]
    ch, twin = _channel(), _channel()
    frame = ch.send(Role.BOB, source)  # type: ignore[arg-type]
    assert type(frame.payload) is bytes and frame.payload == data.tobytes()
    np.frombuffer(source if kind != "strided" else wide, dtype=np.uint8)[0] ^= 1
    assert frame.tag == twin.send(Role.BOB, data.tobytes()).tag
    assert ch.receive(frame) == data.tobytes()


def test_authenticator_tag_and_verify_take_buffers() -> None:
    rng = np.random.default_rng(4)
    data = rng.integers(0, 256, 2500, dtype=np.uint8).tobytes()
    key = rng.integers(0, 2, 64 * 8, dtype=np.uint8)
    a, b = WegmanCarterAuthenticator(PreSharedKeyPool(key)), WegmanCarterAuthenticator(
        PreSharedKeyPool(key))
    tag = a.tag(_readonly_view(data, 5))
    b.verify(bytearray(data), tag)
    wide = np.zeros(5000, dtype=np.uint8)
    wide[::2] = np.frombuffer(data, np.uint8)
    b.verify(wide.data[::2], a.tag(data))  # strided: hashed from a copy
    with pytest.raises(ParameterError):
        a.tag("text")  # type: ignore[arg-type]
    with pytest.raises(AuthenticationError):
        b.verify(data[:-1], a.tag(data))


def test_non_buffers_are_refused() -> None:
    ch = _channel()
    with pytest.raises(ParameterError):
        ch.send(Role.ALICE, "text")  # type: ignore[arg-type]
    ch.receive(ch.send(Role.ALICE, b"still open"))


@pytest.mark.parametrize("forged", ["bytearray", "str", "mutated later"])
def test_odd_payloads_from_eve_fail_or_are_fixed_before_the_check(forged: str) -> None:
    """Eve may put any object in a frame: a non-buffer fails authentication; a writable
    buffer with the right bytes is accepted, but what is returned is a copy taken before
    the check, so changing her buffer afterwards changes nothing the receiver holds."""
    kept: list[bytearray] = []

    def eve(frame: Frame) -> Frame:
        if forged == "str":
            return Frame(frame.sender, frame.sequence, "payload", frame.tag)  # type: ignore[arg-type]
        buf = bytearray(frame.payload)
        kept.append(buf)
        return Frame(frame.sender, frame.sequence, buf, frame.tag)  # type: ignore[arg-type]

    ch = _channel(eve)
    msg = struct.pack("<Q", 12345) * 300
    if forged == "str":
        with pytest.raises(AuthenticationError):
            ch.receive(ch.send(Role.ALICE, msg))
        return
    got = ch.receive(ch.send(Role.ALICE, msg))
    assert type(got) is bytes and got == msg
    kept[0][0] ^= 1
    assert got == msg


def test_take_words_packs_little_endian_and_erases() -> None:
    bits = np.random.default_rng(6).integers(0, 2, 64 * 5 + 3, dtype=np.uint8)
    pool = PreSharedKeyPool(bits)
    pool.take(3)
    words = pool.take_words(4)
    want = [sum(int(b) << i for i, b in enumerate(bits[3 + 64 * w : 67 + 64 * w]))
            for w in range(4)]
    assert words.dtype == np.uint64 and [int(w) for w in words] == want
    assert pool.consumed_bits == 3 + 256 and pool.available_bits == 64
    assert not pool._bits[: 3 + 256].any()  # erased
    assert np.array_equal(pool.take(64), bits[259:])


# ---- key accounting: refills, and the split between the directions ---------------------

@settings(max_examples=25, deadline=None)
@given(ops=st.lists(st.tuples(st.booleans(), st.integers(0, 9000)), max_size=30),
       seed=st.integers(0, 2**32 - 1))
def test_pool_is_a_fifo_of_bits(ops: list[tuple[bool, int]], seed: int) -> None:
    """Refills (in place, moved to the front, or into a bigger buffer) and takes hand out
    exactly the bits of a plain list used as a FIFO, and the pool's buffer holds nothing
    but the bits not yet taken."""
    rng = np.random.default_rng(seed)
    pool, model = PreSharedKeyPool(), []
    for refill, n in ops:
        if refill:
            bits = rng.integers(0, 2, n, dtype=np.uint8)
            pool.refill(bits)
            model += bits.tolist()
        else:
            n = min(n, len(model))
            assert pool.take(n).tolist() == model[:n]
            del model[:n]
        assert pool.available_bits == len(model)
        assert int(pool._bits.sum()) == sum(model)  # taken bits erased, none left behind
    assert pool.take(len(model)).tolist() == model


def test_refills_keep_both_directions_supplied() -> None:
    """Alice sends three frames for each of Bob's and the channel is repaid exactly what
    it consumed: the refills go where the key went, so neither direction runs dry (the
    earlier fixed half split starved Alice -> Bob after a few rounds here)."""
    ch = _channel()
    rng = np.random.default_rng(12)
    for _ in range(200):
        before = ch.key_consumed_bits
        for sender in (Role.ALICE, Role.ALICE, Role.BOB, Role.ALICE):
            ch.receive(ch.send(sender, b"parities"))
        fresh = rng.integers(0, 2, ch.key_consumed_bits - before, dtype=np.uint8)
        ch.refill(fresh, fresh.copy())
    assert ch.key_available_bits == (1 << 13)  # everything consumed was repaid


def test_refill_with_frames_in_flight_keeps_the_ends_in_step() -> None:
    """The split is computed once and applied at both ends: a refill while frames are on
    the way (one end has consumed more than the other) leaves both ends drawing the same
    bits, and every frame is still accepted."""
    key = np.random.default_rng(13).integers(0, 2, 64 * 12, dtype=np.uint8)
    ch = AuthenticatedChannel(PreSharedKeyPool(key), PreSharedKeyPool(key))
    late = [ch.send(Role.ALICE, b"a%d" % i) for i in range(3)]  # not yet received
    fresh = np.random.default_rng(14).integers(0, 2, 64 * 6, dtype=np.uint8)
    ch.refill(fresh, fresh.copy())
    for f in late:
        ch.receive(f)
    for i in range(4):
        ch.receive(ch.send(Role.BOB if i % 2 else Role.ALICE, b"more"))
    assert ch.key_consumed_bits == 64 * (2 + 5) + 64 * (2 + 2)

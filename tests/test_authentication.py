"""Wegman–Carter authentication and the authenticated channel: forgeries, replays and key
accounting, with tags checked against a pure-Python GF(2^64) reference."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qkdnet.errors import AuthenticationError, KeyExhausted, ParameterError
from qkdnet.postprocessing.authentication import (
    AuthenticatedChannel,
    Frame,
    PreSharedKeyPool,
    Role,
    WegmanCarterAuthenticator,
    message_epsilon,
)

POLY = (1 << 64) | 0x1B


def ref_gf64_mul(a: int, b: int) -> int:
    r = 0
    for i in range(64):
        if (b >> i) & 1:
            r ^= a << i
    for bit in range(127, 63, -1):
        if (r >> bit) & 1:
            r ^= POLY << (bit - 64)
    return r


def ref_tag(message: bytes, key: int, const: int, pad: int) -> bytes:
    padded = message + b"\0" * (-len(message) % 8)
    blocks = [int.from_bytes(padded[i:i + 8], "little") for i in range(0, len(padded), 8)]
    blocks.append(8 * len(message))
    h = 0
    for b in blocks:
        h = ref_gf64_mul(h ^ b, key)
    return (h ^ const ^ pad).to_bytes(8, "little")


def shared_pools(n_bits: int, seed: int = 0) -> tuple[PreSharedKeyPool, PreSharedKeyPool]:
    bits = np.random.default_rng(seed).integers(0, 2, n_bits, dtype=np.uint8)
    return PreSharedKeyPool(bits), PreSharedKeyPool(bits.copy())


def word(bits: np.ndarray) -> int:
    return sum(int(b) << i for i, b in enumerate(bits))


# ---- pool ---------------------------------------------------------------------------

def test_pool_accounting_and_exhaustion() -> None:
    bits = np.random.default_rng(1).integers(0, 2, 300, dtype=np.uint8)
    pool = PreSharedKeyPool(bits)
    assert np.array_equal(pool.take(100), bits[:100])
    assert pool.consumed_bits == 100 and pool.available_bits == 200
    with pytest.raises(KeyExhausted):
        pool.take(201)
    assert pool.available_bits == 200  # nothing taken by the failed request
    pool.refill(b"\xff")
    assert pool.available_bits == 208 and pool.added_bits == 308
    assert np.array_equal(pool.take(208), np.concatenate([bits[100:], np.ones(8, np.uint8)]))
    with pytest.raises(ParameterError):
        PreSharedKeyPool(np.array([0, 2, 1]))


# ---- authenticator --------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 2**32))
def test_tag_matches_reference_and_verifies(message: bytes, seed: int) -> None:
    pa, pb = shared_pools(64 * 4, seed)
    raw = np.random.default_rng(seed).integers(0, 2, 64 * 4, dtype=np.uint8)
    k, c = word(raw[:64]), word(raw[64:128])
    alice, bob = WegmanCarterAuthenticator(pa), WegmanCarterAuthenticator(pb)
    tag = alice.tag(message)
    assert tag == ref_tag(message, k, c, word(raw[128:192]))
    bob.verify(message, tag)
    assert alice.consumed_bits == bob.consumed_bits == 192  # hash key (k, c) + one pad
    tag2 = alice.tag(message)  # same message, fresh pad: a different tag
    assert tag2 == ref_tag(message, k, c, word(raw[192:256]))
    assert tag2 != tag or word(raw[128:192]) == word(raw[192:256])
    bob.verify(message, tag2)
    assert alice.consumed_bits == 256


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=1, max_size=100), st.data())
def test_any_bit_flip_is_rejected(message: bytes, data: st.DataObject) -> None:
    pa, pb = shared_pools(1024)
    alice, bob = WegmanCarterAuthenticator(pa), WegmanCarterAuthenticator(pb)
    tag = alice.tag(message)
    where = data.draw(st.sampled_from(["message", "tag", "extend", "truncate"]))
    forged_msg, forged_tag = bytearray(message), bytearray(tag)
    if where == "message":
        i = data.draw(st.integers(0, 8 * len(message) - 1))
        forged_msg[i // 8] ^= 1 << (i % 8)
    elif where == "tag":
        i = data.draw(st.integers(0, 63))
        forged_tag[i // 8] ^= 1 << (i % 8)
    elif where == "extend":
        forged_msg += b"\0"  # zero padding must not go unnoticed (length block)
    else:
        forged_msg = forged_msg[:-1]
    with pytest.raises(AuthenticationError) as err:
        bob.verify(bytes(forged_msg), bytes(forged_tag))
    assert str(err.value) == "authentication failed"  # opaque


def test_tag_bits_128_and_epsilon() -> None:
    pa, pb = shared_pools(64 * 6)
    alice = WegmanCarterAuthenticator(pa, tag_bits=128)
    bob = WegmanCarterAuthenticator(pb, tag_bits=128)
    tag = alice.tag(b"x" * 80)
    assert len(tag) == 16
    bob.verify(b"x" * 80, tag)
    assert alice.consumed_bits == 384
    assert message_epsilon(80, 64) == pytest.approx(11 / 2**64)
    assert message_epsilon(80, 128) == pytest.approx((11 / 2**64) ** 2)
    assert alice.epsilon == pytest.approx(message_epsilon(80, 128))
    with pytest.raises(ParameterError):
        WegmanCarterAuthenticator(pa, tag_bits=100)


def test_exhausted_pool_takes_nothing() -> None:
    pa, _ = shared_pools(64 * 3 + 10)
    alice = WegmanCarterAuthenticator(pa)
    alice.tag(b"one")
    with pytest.raises(KeyExhausted):
        alice.tag(b"two")
    assert pa.available_bits == 10 and alice.consumed_bits == 192


# ---- channel ------------------------------------------------------------------------

def make_channel(n_bits: int = 64 * 40, **kw: object) -> AuthenticatedChannel:
    pa, pb = shared_pools(n_bits)
    return AuthenticatedChannel(pa, pb, **kw)  # type: ignore[arg-type]


def test_conversation_both_directions_and_accounting() -> None:
    ch = make_channel()
    # Both parties send before either receives: still consistent (per-direction keys).
    f1 = ch.send(Role.ALICE, b"parities 1")
    f2 = ch.send(Role.BOB, b"answer")
    f3 = ch.send(Role.ALICE, b"parities 2")
    assert ch.receive(f2) == b"answer"
    assert ch.receive(f1) == b"parities 1"
    assert ch.receive(f3) == b"parities 2"
    assert ch.messages == 3
    assert ch.payload_bits == 8 * (10 + 6 + 10)
    assert ch.tag_bits_sent == 3 * 64
    # Alice's end: A->B hash key (k, c) + 2 pads, B->A hash key + 1 pad
    assert ch.key_consumed_bits == 64 * (2 + 2) + 64 * (2 + 1)
    assert ch.key_available_bits == 64 * 40 - ch.key_consumed_bits
    assert ch.epsilon == pytest.approx(
        message_epsilon(9 + 10) * 2 + message_epsilon(9 + 6)
    )


def test_replay_is_rejected_and_channel_closes() -> None:
    ch = make_channel()
    f = ch.send(Role.ALICE, b"hello")
    ch.receive(f)
    with pytest.raises(AuthenticationError):
        ch.receive(f)
    with pytest.raises(AuthenticationError):  # closed after a failure
        ch.send(Role.ALICE, b"more")


def test_reordering_is_rejected() -> None:
    ch = make_channel()
    f0 = ch.send(Role.ALICE, b"first")
    f1 = ch.send(Role.ALICE, b"second")
    with pytest.raises(AuthenticationError):
        ch.receive(f1)
    del f0


def test_renumbered_or_reflected_frame_is_rejected() -> None:
    ch = make_channel()
    ch.send(Role.ALICE, b"first")  # lost on the way
    f1 = ch.send(Role.ALICE, b"second")
    with pytest.raises(AuthenticationError):  # Eve drops frame 0 and relabels frame 1
        ch.receive(dataclasses.replace(f1, sequence=0))
    ch2 = make_channel()
    g = ch2.send(Role.ALICE, b"to bob")
    with pytest.raises(AuthenticationError):  # reflected back to Alice as if from Bob
        ch2.receive(dataclasses.replace(g, sender=Role.BOB))


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=1, max_size=64), st.integers(0, 2**31))
def test_man_in_the_middle_hook(message: bytes, seed: int) -> None:
    flip_rng = np.random.default_rng(seed)

    def flip_one_payload_bit(frame: Frame) -> Frame:
        buf = bytearray(frame.payload)
        i = int(flip_rng.integers(0, 8 * len(buf)))
        buf[i // 8] ^= 1 << (i % 8)
        return dataclasses.replace(frame, payload=bytes(buf))

    ch = make_channel(tamper=flip_one_payload_bit)
    with pytest.raises(AuthenticationError):
        ch.receive(ch.send(Role.BOB, message))


def test_forgery_with_random_tags_fails() -> None:
    rng = np.random.default_rng(5)
    for _ in range(200):
        ch = make_channel()
        frame = Frame(Role.ALICE, 0, b"eve's parities", rng.bytes(8))
        with pytest.raises(AuthenticationError):
            ch.receive(frame)


def test_refill_and_exhaustion() -> None:
    ch = make_channel(n_bits=64 * 6)  # per direction: hash key (k, c) + 1 pad
    ch.receive(ch.send(Role.ALICE, b"a"))
    with pytest.raises(KeyExhausted):
        ch.send(Role.ALICE, b"b")
    fresh = np.random.default_rng(9).integers(0, 2, 64 * 4, dtype=np.uint8)
    ch.refill(fresh, fresh.copy())
    ch.receive(ch.send(Role.ALICE, b"b"))
    ch.receive(ch.send(Role.BOB, b"c"))
    assert ch.key_consumed_bits == 64 * 4 + 64 * 3
    with pytest.raises(ParameterError):
        ch.refill(fresh, fresh[:-1])


def test_security_doc_example_runs() -> None:
    # docs that run (STYLE.md 11): the example of docs/security.md, as written
    import re
    from pathlib import Path

    doc = Path(__file__).resolve().parents[1] / "docs" / "security.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(encoding="utf-8"), flags=re.S)
    assert blocks, "docs/security.md lost its example"
    for code in blocks:
        exec(compile(code, str(doc), "exec"), {})

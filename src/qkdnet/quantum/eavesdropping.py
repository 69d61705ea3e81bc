"""Eavesdroppers on the quantum channel, described by their parameters only.

The sampler (:mod:`qkdnet.quantum.sampling`) turns an attack into the outcome probabilities
of each pulse; the classical-channel man-in-the-middle lives in post-processing, where it
tampers with authenticated frames.

Models (stated here because the numbers a test sees follow from them):

* **intercept-resend** on a fraction ``fraction`` of the pulses (Bennett et al. 1992; the
  textbook attack on BB84). Eve sits at Alice's output, measures each intercepted non-vacuum
  pulse in a random basis with an ideal detector (she learns Alice's bit when her basis
  matches, a random bit otherwise) and resends one photon in her basis with her bit over a
  channel of transmittance ``channel_transmittance`` (1 by default: she also replaces the
  fibre, which maximises her share of Bob's detections). In the sifted key each intercepted,
  detected pulse carries a 25 % error.
* **photon-number splitting** (Brassard, Lütkenhaus, Mor, Sanders, PRL 85, 1330, 2000) on a
  fraction ``fraction`` of the pulses: Eve measures the photon number n without disturbing
  the polarisation, blocks pulses with n ≤ 1, keeps one photon of every multi-photon pulse
  and forwards the other n−1 over a channel whose transmittance she tunes so that Bob's
  detection rate of the *signal* class is what he expects (the attack GLLP without decoys
  cannot see). Decoy states reveal it: the decoy class's gain drops and the single-photon
  yield bound collapses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from qkdnet.errors import ParameterError

ATTACKS: tuple[str, ...] = ("intercept-resend", "pns", "mitm")


@dataclass(frozen=True)
class Eavesdropper:
    """An attack: ``kind`` one of :data:`ATTACKS`, on ``fraction`` (0..1) of the pulses.

    ``channel_transmittance`` (0..1) is the transmittance of Eve's own channel to Bob for
    intercept-resend; ``None`` for PNS means "tune it to hide from the signal-class gain".
    ``mitm`` is an attack on the classical channel; the sampler ignores it.
    """

    kind: str
    fraction: float = 1.0
    channel_transmittance: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ATTACKS:
            raise ParameterError("eve", f"unknown attack {self.kind!r}; use one of {ATTACKS}")
        if not (0.0 <= self.fraction <= 1.0) or math.isnan(self.fraction):
            raise ParameterError("eve", f"fraction must be in [0, 1], got {self.fraction!r}")
        t = self.channel_transmittance
        if t is not None and not (0.0 <= t <= 1.0):
            raise ParameterError("eve", f"channel transmittance must be in [0, 1], got {t!r}")

    @classmethod
    def parse(cls, text: str) -> Eavesdropper:
        """Parse ``intercept-resend:0.2``, ``pns``, ``pns:0.5`` or ``mitm``."""
        kind, _, frac = text.strip().partition(":")
        if not frac:
            return cls(kind=kind)
        try:
            value = float(frac)
        except ValueError as exc:
            raise ParameterError("eve", f"fraction must be a number, got {frac!r}") from exc
        return cls(kind=kind, fraction=value)

"""`LinkSpec`: the physical description of one QKD link, shared by theory and simulation."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from qkdnet.errors import ParameterError


def _check_probability(name: str, value: float) -> None:
    if not (0.0 <= value <= 1.0) or math.isnan(value):
        raise ParameterError(name, f"must be a probability in [0, 1], got {value!r}")


def _check_non_negative(name: str, value: float) -> None:
    if not (value >= 0.0) or math.isinf(value):
        raise ParameterError(name, f"must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class LinkSpec:
    """One QKD link: fibre, source, detector and protocol parameters.

    Defaults follow the finite-key model of Lim et al., PRA 89, 022307 (2014): 0.2 dB/km
    fibre, 10 % detection efficiency, dark-count probability 6e-7 per gate, 0.5 %
    misalignment, error-correction efficiency 1.16. Units are in the field names.

    Raises :class:`qkdnet.errors.ParameterError` naming the field for any value out of range.
    """

    length_km: float = 50.0
    loss_db_per_km: float = 0.2
    #: Connectors, splices and any loss not in the fibre or the detector, dB.
    extra_loss_db: float = 0.0
    #: Bob's total detection efficiency (optics and detector), 0..1.
    detector_efficiency: float = 0.10
    #: Probability of a dark count per detector gate (per pulse slot), 0..1.
    dark_count_probability: float = 6e-7
    #: Probability that a detection is followed by an afterpulse, 0..1.
    afterpulse_probability: float = 0.0
    #: Detector dead time, seconds (0 = none).
    dead_time_s: float = 0.0
    #: Probability that a photon ends in the wrong detector (optical misalignment), 0..0.5.
    misalignment_error: float = 0.005
    #: Pulse (or gate) repetition rate, Hz.
    repetition_rate_hz: float = 1e9
    #: Mean photon numbers per pulse of the intensity classes: signal, decoy(s), vacuum.
    intensities: tuple[float, ...] = (0.5, 0.1, 2e-4)
    #: Probability of sending each intensity class; same length as ``intensities``, sums to 1.
    intensity_probabilities: tuple[float, ...] = (0.8, 0.1, 0.1)
    #: Probability that Alice (and Bob) choose the Z (key) basis; 0.5 is original BB84.
    basis_probability_z: float = 0.5
    #: Error-correction efficiency f >= 1 (leak = f n h(Q)).
    error_correction_efficiency: float = 1.16
    #: Entangled-pair sources (BBM92): expected number of photon pairs per pulse (= 2λ of
    #: Ma, Fung, Lo, PRA 76, 012307, 2007).
    mean_pair_number: float = 0.1
    #: Twin-field QKD (sending-or-not-sending): probability that Alice (Bob) sends a pulse.
    sending_probability: float = 0.05
    #: CV-QKD: Alice's Gaussian modulation variance V_A, shot-noise units.
    modulation_variance_snu: float = 4.0
    #: CV-QKD: excess noise ξ referred to the channel input, shot-noise units.
    excess_noise_snu: float = 0.01
    #: CV-QKD: reconciliation efficiency β, 0..1.
    reconciliation_efficiency: float = 0.95
    #: CV-QKD: electronic noise of Bob's homodyne detector, shot-noise units.
    electronic_noise_snu: float = 0.01
    #: CV-QKD: quantum efficiency of Bob's homodyne detector, 0..1.
    homodyne_efficiency: float = 0.6
    #: A name for reports, e.g. "Koganei-Otemachi".
    name: str = field(default="link", compare=False)

    def __post_init__(self) -> None:
        self._check_extensions()
        _check_non_negative("length_km", self.length_km)
        _check_non_negative("loss_db_per_km", self.loss_db_per_km)
        _check_non_negative("extra_loss_db", self.extra_loss_db)
        _check_probability("detector_efficiency", self.detector_efficiency)
        _check_probability("dark_count_probability", self.dark_count_probability)
        _check_probability("afterpulse_probability", self.afterpulse_probability)
        _check_non_negative("dead_time_s", self.dead_time_s)
        if not (0.0 <= self.misalignment_error <= 0.5):
            raise ParameterError(
                "misalignment_error", f"must be in [0, 0.5], got {self.misalignment_error!r}"
            )
        if not (self.repetition_rate_hz > 0.0) or math.isinf(self.repetition_rate_hz):
            raise ParameterError(
                "repetition_rate_hz",
                f"must be a finite number > 0, got {self.repetition_rate_hz!r}",
            )
        if len(self.intensities) == 0:
            raise ParameterError("intensities", "give at least one mean photon number")
        for value in self.intensities:
            _check_non_negative("intensities", value)
        if len(self.intensity_probabilities) != len(self.intensities):
            raise ParameterError(
                "intensity_probabilities",
                f"needs one probability per intensity ({len(self.intensities)}), "
                f"got {len(self.intensity_probabilities)}",
            )
        for value in self.intensity_probabilities:
            _check_probability("intensity_probabilities", value)
        if abs(sum(self.intensity_probabilities) - 1.0) > 1e-9:
            raise ParameterError(
                "intensity_probabilities",
                f"must sum to 1, got {sum(self.intensity_probabilities)!r}",
            )
        _check_probability("basis_probability_z", self.basis_probability_z)
        if not (self.error_correction_efficiency >= 1.0):
            raise ParameterError(
                "error_correction_efficiency",
                f"must be >= 1 (1 is the Shannon limit), got {self.error_correction_efficiency!r}",
            )

    def _check_extensions(self) -> None:
        # Fields added for BBM92, twin-field and CV-QKD (all with defaults).
        _check_non_negative("mean_pair_number", self.mean_pair_number)
        _check_probability("sending_probability", self.sending_probability)
        _check_non_negative("modulation_variance_snu", self.modulation_variance_snu)
        _check_non_negative("excess_noise_snu", self.excess_noise_snu)
        _check_probability("reconciliation_efficiency", self.reconciliation_efficiency)
        _check_non_negative("electronic_noise_snu", self.electronic_noise_snu)
        _check_probability("homodyne_efficiency", self.homodyne_efficiency)

    @property
    def channel_loss_db(self) -> float:
        """Total channel loss, dB: fibre attenuation times length plus extra losses."""
        return self.loss_db_per_km * self.length_km + self.extra_loss_db

    @property
    def channel_transmittance(self) -> float:
        """Channel transmittance 10^(-loss/10), 0..1 (without Bob's detector)."""
        return float(10.0 ** (-self.channel_loss_db / 10.0))

    @property
    def total_transmittance(self) -> float:
        """Channel transmittance times Bob's detection efficiency, 0..1."""
        return self.channel_transmittance * self.detector_efficiency

    def with_length(self, length_km: float) -> LinkSpec:
        """The same link at another length (km)."""
        return replace(self, length_km=length_km)

"""qkdnet — a quantum key distribution network stack.

Layers (after ITU-T Y.3800), lowest first; a layer imports only the ones before it:

    quantum          link physics, QKD protocols, key-rate theory, detection events
    postprocessing   sifting, estimation, reconciliation, verification, amplification
    keys             key blocks, key stores, key managers, key relay
    api              ETSI GS QKD 014 and SKIP key delivery over HTTPS
    control          topology, routing, policies, virtual networks, telemetry
    satellite, cloud, repeater   (build on quantum and keys)
    simulation       scenarios in simulated time, reports, sweeps
    cli              the ``qkdnet`` command; nothing imports it
"""

from qkdnet.errors import QkdnetError

__version__ = "0.1.0"

__all__ = ["QkdnetError", "__version__"]

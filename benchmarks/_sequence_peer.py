"""SeQUeNCe peer for simulate_scale.py: runs inside .peers/sequence-venv (Python 3.12).

SeQUeNCe's own QKD example (its BB84 + Cascade tutorial): two QKDNodes joined by a
quantum and a classical channel of LENGTH_KM, keys of 256 bits requested continuously,
for NETWORK_S seconds of network time. Prints one JSON line: wall seconds, keys made.
Usage: python _sequence_peer.py NETWORK_S LENGTH_KM
"""

import json
import sys
import time

from sequence.components.optical_channel import ClassicalChannel, QuantumChannel
from sequence.kernel.timeline import Timeline
from sequence.qkd.BB84 import pair_bb84_protocols
from sequence.qkd.cascade import pair_cascade_protocols
from sequence.topology.node import QKDNode

PS_PER_S = 10**12


class KeyCounter:
    def __init__(self) -> None:
        self.keys = 0

    def pop(self, **kwargs) -> None:  # Cascade pops each finished key to its upper protocols
        self.keys += 1


def main() -> None:
    network_s = float(sys.argv[1])
    length_km = float(sys.argv[2])
    tl = Timeline(int(network_s * PS_PER_S))
    alice = QKDNode("alice", tl, stack_size=2)
    bob = QKDNode("bob", tl, stack_size=2)
    alice.set_seed(0)
    bob.set_seed(1)
    pair_bb84_protocols(alice.protocol_stack[0], bob.protocol_stack[0])
    pair_cascade_protocols(alice.protocol_stack[1], bob.protocol_stack[1])
    qc0 = QuantumChannel("qc0", tl, attenuation=0.0002, distance=length_km * 1000)
    qc1 = QuantumChannel("qc1", tl, attenuation=0.0002, distance=length_km * 1000)
    qc0.set_ends(alice, bob.name)
    qc1.set_ends(bob, alice.name)
    cc0 = ClassicalChannel("cc0", tl, distance=length_km * 1000)
    cc1 = ClassicalChannel("cc1", tl, distance=length_km * 1000)
    cc0.set_ends(alice, bob.name)
    cc1.set_ends(bob, alice.name)
    counter = KeyCounter()
    alice.protocol_stack[1].upper_protocols.append(counter)
    tl.init()
    alice.protocol_stack[1].push(256, 10**9)
    start = time.perf_counter()
    tl.run()
    wall = time.perf_counter() - start
    print(json.dumps({"wall_s": wall, "keys": counter.keys, "network_s": network_s,
                      "length_km": length_km}))


if __name__ == "__main__":
    main()

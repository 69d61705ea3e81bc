"""A compiled fast path for the commonest request: one shortest path, no extra policy.

The key-management graph is copied into a SciPy CSR matrix of the edges in service
between up, trusted nodes (the "service graph") plus connected-component labels of the
physical graph and of the links-in-service graph. Dijkstra then runs in C
(``scipy.sparse.csgraph``), and a request whose ends are in different components fails
at once with the same reason ``routing.diagnose`` would give, without searching. The
controller rebuilds this snapshot only when the topology's state changes.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components, dijkstra

#: Added per hop, as in routing._shortest: among equal lengths, fewer hops win.
_HOP_EPS = 1e-6


class ServiceGraph:
    """A snapshot of the key-management graph for fast shortest paths, from arrays: node
    names and index, edge end indices ``u``, ``v``, lengths (km), in-service flags, and
    the nodes' up and trusted flags."""

    def __init__(self, names: list[str], index: dict[str, int], u: np.ndarray, v: np.ndarray,
                 length_km: np.ndarray, in_service: np.ndarray, up: np.ndarray,
                 trusted: np.ndarray) -> None:
        self.names = names
        self.index = index
        n = len(names)
        self.relay_ok = up & trusted
        length = length_km + _HOP_EPS
        service = in_service
        edges = u
        self.labels_physical = self._labels(n, u, v, np.ones(len(edges), dtype=bool))
        ok1 = service & up[u] & up[v] if len(edges) else service
        self.labels_service = self._labels(n, u, v, ok1)
        ok2 = ok1 & trusted[u] & trusted[v] if len(edges) else ok1
        self.labels_trusted = self._labels(n, u, v, ok2)
        self.matrix = csr_matrix(
            (np.concatenate([length[ok2], length[ok2]]),
             (np.concatenate([u[ok2], v[ok2]]), np.concatenate([v[ok2], u[ok2]]))),
            shape=(n, n),
        )

    @staticmethod
    def _labels(n: int, u: np.ndarray, v: np.ndarray, keep: np.ndarray) -> np.ndarray:
        m = csr_matrix((np.ones(int(keep.sum())), (u[keep], v[keep])), shape=(n, n))
        return connected_components(m, directed=False)[1]

    def handles(self, source: str, target: str) -> bool:
        """Whether both ends may use the snapshot (they are up and trusted)."""
        i, j = self.index.get(source), self.index.get(target)
        return i is not None and j is not None and bool(self.relay_ok[i] and self.relay_ok[j])

    def connected_stage(self, source: str, target: str) -> int:
        """-1 if connected through trusted nodes in service; else the first stage that
        separates them (0 physical, 1 links in service and nodes up, 2 trusted nodes)."""
        i, j = self.index[source], self.index[target]
        if self.labels_physical[i] != self.labels_physical[j]:
            return 0
        if self.labels_service[i] != self.labels_service[j]:
            return 1
        if self.labels_trusted[i] != self.labels_trusted[j]:
            return 2
        return -1

    def shortest(self, source: str, target: str) -> list[str] | None:
        """The shortest path (fibre length) through trusted nodes in service, or None."""
        i, j = self.index[source], self.index[target]
        # The matrix holds both directions already: directed=True spares SciPy a
        # symmetrising copy of the whole graph on every call.
        dist, pred = dijkstra(self.matrix, directed=True, indices=i, return_predecessors=True)
        if not np.isfinite(dist[j]):
            return None
        path = [j]
        while path[-1] != i:
            path.append(int(pred[path[-1]]))
        return [self.names[k] for k in reversed(path)]

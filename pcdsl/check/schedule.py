# ---------------------------------------------------------------------------------------------
# The traversal schedule: which states can be updated together.
#
# Two free states interact when one energy term holds both. States that do not interact can be
# updated in one parallel, exact half-sweep, so the groups are a colouring of the interaction
# graph. Each state prefers the parity of its breadth-first distance from the input, which for
# a chain is exactly the paper's even/odd split (even layers first) and stays valid for skips
# that jump an odd number of layers; any other conflict gets the lowest free colour.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from collections import deque


def interaction_graph(states: list[str], term_states: list[set[str]]) -> dict[str, set[str]]:
    graph = {s: set() for s in states}
    for members in term_states:
        free = [s for s in members if s in graph]
        for a in free:
            graph[a].update(b for b in free if b != a)
    return graph


def distances_from(source_neighbours: set[str], graph: dict[str, set[str]]) -> dict[str, int]:
    dist = {s: 1 for s in source_neighbours}
    queue = deque(sorted(source_neighbours))
    while queue:
        s = queue.popleft()
        for n in sorted(graph[s]):
            if n not in dist:
                dist[n] = dist[s] + 1
                queue.append(n)
    return dist


def colour_groups(states: list[str], graph: dict[str, set[str]], input_neighbours: set[str]) -> list[list[str]]:
    dist = distances_from(input_neighbours, graph)
    order = sorted(states, key=lambda s: (dist.get(s, 10**6), states.index(s)))
    colour: dict[str, int] = {}
    for s in order:
        used = {colour[n] for n in graph[s] if n in colour}
        preferred = dist.get(s, 0) % 2
        colour[s] = preferred if preferred not in used else min(c for c in range(len(states) + 1) if c not in used)
    groups = [[s for s in states if colour[s] == c] for c in sorted(set(colour.values()))]
    return [g for g in groups if g]


def feedforward_order(states: list[str], sources: dict[str, set[str]]) -> list[str] | None:
    """Topological order of the prediction graph, or None when it has a cycle."""
    order, done, visiting = [], set(), set()

    def visit(s):
        if s in done:
            return True
        if s in visiting:
            return False
        visiting.add(s)
        for dep in sorted(sources.get(s, ())):
            if dep in sources and not visit(dep):
                return False
        visiting.discard(s)
        done.add(s)
        order.append(s)
        return True

    for s in states:
        if not visit(s):
            return None
    return order

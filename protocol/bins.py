"""Histogram bin edges: the rule the hub, the nodes and a node's declared bins all hold to.

Pure: the marketplace checks the bins a node declares in its manifest with it, and ``stats``
the edges a job asks for.
"""

from __future__ import annotations

from typing import Any

MAX_BINS = 100


def edges_problem(edges: Any, most: int = MAX_BINS) -> str | None:
    """Why ``edges`` are not a histogram's bin edges (at most ``most`` bins), or None."""
    if not isinstance(edges, list) or not 2 <= len(edges) <= most + 1:
        return f"Give 2 to {most + 1} bin edges."
    if not all(isinstance(e, int | float) and not isinstance(e, bool) and abs(e) <= 1e9 for e in edges):
        return "Bin edges are numbers within ±1e9."
    if any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
        return "Bin edges must increase strictly."
    return None

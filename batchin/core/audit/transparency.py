"""RFC 6962 Merkle tree math (§2.1): leaf and node hashes, roots, inclusion and consistency proofs.

Pure functions over a node source, so the same code serves the database-backed log, the offline
verifier and the tests. Only *perfect* subtrees are ever stored — node (level, index) covers leaves
[index·2^level, (index+1)·2^level) and never changes once written — and every hash the RFC's
recursions need is either such a node or is folded from them on the fly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

__all__ = [
    "NodeKey",
    "append_nodes",
    "consistency_keys",
    "consistency_proof",
    "frontier_keys",
    "inclusion_keys",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_hash",
    "subtree_keys",
    "verify_consistency",
    "verify_inclusion",
]

NodeKey = tuple[int, int]  # (level, index)
NodeSource = Callable[[NodeKey], bytes]

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _largest_power_of_two_below(n: int) -> int:
    """k with k < n ≤ 2k (n > 1), the split point of RFC 6962's recursions."""
    return 1 << ((n - 1).bit_length() - 1)


def _perfect(start: int, size: int) -> NodeKey | None:
    if size & (size - 1) == 0 and start % size == 0:
        level = size.bit_length() - 1
        return level, start >> level
    return None


def subtree_keys(start: int, end: int) -> list[NodeKey]:
    """The stored nodes whose fold is MTH(D[start:end])."""
    key = _perfect(start, end - start)
    if key is not None:
        return [key]
    k = _largest_power_of_two_below(end - start)
    return [*subtree_keys(start, start + k), *subtree_keys(start + k, end)]


def _subtree(start: int, end: int, get: NodeSource) -> bytes:
    key = _perfect(start, end - start)
    if key is not None:
        return get(key)
    k = _largest_power_of_two_below(end - start)
    return node_hash(_subtree(start, start + k, get), _subtree(start + k, end, get))


def frontier_keys(size: int) -> list[NodeKey]:
    """The perfect subtrees that make up a tree of `size` leaves, largest (leftmost) first:
    `subtree_keys(0, size)`, one subtree per bit set in `size`, read off the bits (every log
    append asks for them; the recursion built and unpacked a list per level)."""
    keys: list[NodeKey] = []
    start, rest = 0, size
    while rest:
        level = rest.bit_length() - 1
        keys.append((level, start >> level))
        start += 1 << level
        rest -= 1 << level
    return keys


def root_hash(size: int, get: NodeSource) -> bytes:
    return _subtree(0, size, get) if size else EMPTY_ROOT


def append_nodes(size: int, leaves: Iterable[bytes], get: NodeSource) -> dict[NodeKey, bytes]:
    """The nodes to store when `leaves` (leaf hashes) are appended to a tree of `size` leaves.

    Each new leaf closes the perfect subtrees its index completes; their left siblings are the old
    frontier or nodes made earlier in this batch. Amortised two nodes per leaf.
    """
    made: dict[NodeKey, bytes] = {}

    def lookup(key: NodeKey) -> bytes:
        return made[key] if key in made else get(key)

    index = size
    for digest in leaves:
        made[(0, index)] = digest
        level, position, current = 0, index, digest
        while position & 1:
            current = node_hash(lookup((level, position - 1)), current)
            level, position = level + 1, position >> 1
            made[(level, position)] = current
        index += 1
    return made


# -- inclusion (RFC 6962 §2.1.1) -----------------------------------------------------------------


def _path_keys(m: int, start: int, end: int) -> list[NodeKey]:
    if end - start <= 1:
        return []
    k = _largest_power_of_two_below(end - start)
    if m < k:
        return [*_path_keys(m, start, start + k), *subtree_keys(start + k, end)]
    return [*_path_keys(m - k, start + k, end), *subtree_keys(start, start + k)]


def _path(m: int, start: int, end: int, get: NodeSource) -> list[bytes]:
    if end - start <= 1:
        return []
    k = _largest_power_of_two_below(end - start)
    if m < k:
        return [*_path(m, start, start + k, get), _subtree(start + k, end, get)]
    return [*_path(m - k, start + k, end, get), _subtree(start, start + k, get)]


def inclusion_keys(index: int, size: int) -> list[NodeKey]:
    return [(0, index), *_path_keys(index, 0, size)]


def inclusion_proof(index: int, size: int, get: NodeSource) -> list[bytes]:
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size}")
    return _path(index, 0, size, get)


def verify_inclusion(leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2: recompute the root from a leaf hash and its audit path."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


# -- consistency (RFC 6962 §2.1.2) ---------------------------------------------------------------


def _subproof_keys(m: int, start: int, end: int, whole: bool) -> list[NodeKey]:
    n = end - start
    if m == n:
        return [] if whole else subtree_keys(start, end)
    k = _largest_power_of_two_below(n)
    if m <= k:
        return [*_subproof_keys(m, start, start + k, whole), *subtree_keys(start + k, end)]
    return [*_subproof_keys(m - k, start + k, end, False), *subtree_keys(start, start + k)]


def _subproof(m: int, start: int, end: int, whole: bool, get: NodeSource) -> list[bytes]:
    n = end - start
    if m == n:
        return [] if whole else [_subtree(start, end, get)]
    k = _largest_power_of_two_below(n)
    if m <= k:
        return [*_subproof(m, start, start + k, whole, get), _subtree(start + k, end, get)]
    return [*_subproof(m - k, start + k, end, False, get), _subtree(start, start + k, get)]


def consistency_keys(first: int, second: int) -> list[NodeKey]:
    return _subproof_keys(first, 0, second, True) if 0 < first < second else []


def consistency_proof(first: int, second: int, get: NodeSource) -> list[bytes]:
    if not 0 < first <= second:
        raise ValueError(f"no consistency proof from {first} to {second}")
    return _subproof(first, 0, second, True, get) if first < second else []


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: list[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2."""
    if not 0 < first <= second:
        return False
    if first == second:
        return not proof and first_root == second_root
    if not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: the old root is the first node of the path
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == first_root and sr == second_root

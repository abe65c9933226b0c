"""RFC 6962 math: stored perfect subtrees give the same roots and proofs as the RFC's definition."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchin.core.audit import transparency as mt


def reference_root(leaves: list[bytes]) -> bytes:
    """MTH(D[n]) exactly as RFC 6962 §2.1 defines it."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + reference_root(leaves[:k]) + reference_root(leaves[k:])).digest()


def build(batches: list[int]) -> tuple[list[bytes], dict[mt.NodeKey, bytes]]:
    leaves: list[bytes] = []
    store: dict[mt.NodeKey, bytes] = {}
    for size in batches:
        new = [f"leaf-{len(leaves) + i}".encode() for i in range(size)]
        store.update(mt.append_nodes(len(leaves), [mt.leaf_hash(x) for x in new], store.__getitem__))
        leaves += new
    return leaves, store


def test_hashes_use_the_rfc_prefixes() -> None:
    assert mt.leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert mt.node_hash(b"a", b"b") == hashlib.sha256(b"\x01ab").digest()
    assert mt.root_hash(0, lambda key: b"") == hashlib.sha256(b"").digest()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=8))
def test_batched_appends_give_the_rfc_root_at_every_size(batches: list[int]) -> None:
    leaves, store = build(batches)
    for n in range(1, len(leaves) + 1):
        assert mt.root_hash(n, store.__getitem__) == reference_root(leaves[:n])


def test_the_frontier_is_the_subtrees_that_make_up_the_tree() -> None:
    assert mt.frontier_keys(0) == []
    for size in [*range(1, 1100), 2**40 - 1, 2**40, 2**40 + 12345]:
        assert mt.frontier_keys(size) == mt.subtree_keys(0, size)


def test_append_stores_about_two_nodes_per_leaf() -> None:
    _, store = build([1] * 64)
    assert len(store) == 127  # a perfect tree of 64 leaves


def test_every_inclusion_proof_verifies_and_only_for_its_leaf() -> None:
    leaves, store = build([3, 1, 7, 2, 9])
    for n in range(1, len(leaves) + 1):
        root = reference_root(leaves[:n])
        for m in range(n):
            keys = set(mt.inclusion_keys(m, n))
            proof = mt.inclusion_proof(m, n, lambda key, keys=keys: store[key] if key in keys else b"!")
            assert mt.verify_inclusion(mt.leaf_hash(leaves[m]), m, n, proof, root)
            assert not mt.verify_inclusion(mt.leaf_hash(b"forged"), m, n, proof, root)
            if n > 1:
                assert not mt.verify_inclusion(mt.leaf_hash(leaves[m]), (m + 1) % n, n, proof, root)


def test_every_consistency_proof_verifies_and_detects_a_rewritten_history() -> None:
    leaves, store = build([5, 6, 8, 3])
    for n in range(1, len(leaves) + 1):
        new_root = reference_root(leaves[:n])
        for m in range(1, n + 1):
            keys = set(mt.consistency_keys(m, n))
            proof = mt.consistency_proof(m, n, lambda key, keys=keys: store[key] if key in keys else b"!")
            assert mt.verify_consistency(m, n, reference_root(leaves[:m]), new_root, proof)
            if m < n:
                forged = [*leaves[: m - 1], b"rewritten"]
                assert not mt.verify_consistency(m, n, reference_root(forged), new_root, proof)


def test_proofs_refuse_impossible_positions() -> None:
    _, store = build([4])
    with pytest.raises(ValueError):
        mt.inclusion_proof(4, 4, store.__getitem__)
    with pytest.raises(ValueError):
        mt.consistency_proof(0, 4, store.__getitem__)
    assert not mt.verify_inclusion(b"x" * 32, 5, 4, [], b"x" * 32)
    assert not mt.verify_consistency(3, 2, b"", b"", [])

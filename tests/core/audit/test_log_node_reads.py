"""The transparency log reads stored nodes (the frontier an append needs after another process
appended, every proof) with a primary-key search per node, never a scan of the node table, which
grows by about two rows per signed record."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy.dialects import sqlite
from sqlalchemy.schema import CreateTable

from batchin.core.audit import transparency as mt
from batchin.core.audit.log import _node_keys, _nodes_at
from batchin.store.tables import vaas_log_nodes


@pytest.fixture
def nodes() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute(str(CreateTable(vaas_log_nodes).compile(dialect=sqlite.dialect())))
    conn.executemany(
        "INSERT INTO vaas_log_nodes (level, idx, hash) VALUES (?, ?, ?)",
        ((level, idx, f"{level}-{idx}") for level in range(12) for idx in range(4096 >> level)),
    )
    return conn


@pytest.mark.parametrize(
    "keys",
    [
        mt.frontier_keys(1),
        mt.frontier_keys(4095),
        mt.inclusion_keys(1234, 4096),
        mt.consistency_keys(77, 4000),
    ],
    ids=["one", "frontier", "inclusion", "consistency"],
)
def test_node_reads_find_exactly_the_keys_by_primary_key(
    nodes: sqlite3.Connection, keys: list[mt.NodeKey]
) -> None:
    statement, params = _nodes_at(len(keys)), _node_keys(keys)
    cur = nodes.cursor()
    assert sorted(statement.run(cur, params).fetchall()) == sorted((lv, i, f"{lv}-{i}") for lv, i in keys)
    sql = str(statement.clause.compile(dialect=sqlite.dialect(paramstyle="qmark")))
    plan = " | ".join(row[3] for row in nodes.execute(f"EXPLAIN QUERY PLAN {sql}", [0] * (2 * len(keys))))
    assert "SCAN vaas_log_nodes" not in plan
    assert "SEARCH vaas_log_nodes USING INDEX" in plan

"""`Spool.search`: the list filters of `GET /v1/transactions`, each answered from an index."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from spool import Spool
from spool.errors import InvalidRequest
from spool.outbox import POS_ORDER_ID
from spool.schema import STEPS
from spool.store import split_script
from tests.spool.factory import TERMINAL_ID, make_request


def _fill(spool: Spool) -> dict[str, str]:
    orders: list[Any] = ["A-1", "A-2", "A-1", 1001, None, "1001x"]
    days = ["2026-11-23T10:15:00+08:00", "2026-11-24T10:15:00+08:00"]
    ids = {}
    for n, order in enumerate(orders, start=1):
        meta = {} if order is None else {"pos_order_id": order}
        ids[f"k-{n}"] = spool.append(make_request(f"k-{n}", business_time=days[n % 2],
                                                  extra={"meta": meta})).record.record_id
    return ids


def _seqs(records: list[Any]) -> list[int]:
    return [r.seq for r in records]


def test_each_filter_and_their_combination(tmp_spool: Spool) -> None:
    _fill(tmp_spool)
    assert _seqs(tmp_spool.search()) == [1, 2, 3, 4, 5, 6]
    assert _seqs(tmp_spool.search(pos_order_id="A-1")) == [1, 3]
    assert _seqs(tmp_spool.search(pos_order_id="1001")) == [4]  # stored as a JSON number
    assert _seqs(tmp_spool.search(pos_order_id="1001x")) == [6]
    assert _seqs(tmp_spool.search(pos_order_id="01001")) == []
    assert _seqs(tmp_spool.search(idempotency_key="k-5")) == [5]
    assert _seqs(tmp_spool.search(idempotency_key="k-99")) == []
    assert _seqs(tmp_spool.search(business_date="2026-11-24")) == [1, 3, 5]
    assert _seqs(tmp_spool.search(business_date="2026-11-24", pos_order_id="A-1")) == [1, 3]
    assert _seqs(tmp_spool.search(business_date="2026-11-23", pos_order_id="A-1")) == []
    assert _seqs(tmp_spool.search("pending", business_date="2026-11-23")) == [2, 4, 6]
    assert _seqs(tmp_spool.search("settled", business_date="2026-11-23")) == []
    assert _seqs(tmp_spool.search(None, 1, 1, pos_order_id="A-1")) == [3]
    assert _seqs(tmp_spool.search(None, 0, 1, business_date="2026-11-24")) == [1]
    for bad in ({"business_date": "24/11/2026"}, {"status": "paid"}, {"limit": 0}):
        with pytest.raises(InvalidRequest):
            tmp_spool.search(**bad)


def test_every_filter_uses_an_index(tmp_spool: Spool, monkeypatch: pytest.MonkeyPatch) -> None:
    _fill(tmp_spool)
    statements: list[tuple[str, tuple[Any, ...]]] = []
    select = tmp_spool._select

    def capture(where: str, args: tuple[Any, ...]) -> Any:
        statements.append((where, args))
        return select(where, args)

    monkeypatch.setattr(tmp_spool, "_select", capture)
    expected = {
        "records_pos_order_id": [{"pos_order_id": "A-1"}, {"pos_order_id": "1001"}],
        "sqlite_autoindex_records_2": [{"idempotency_key": "k-1"}],  # UNIQUE (idempotency_key)
        "records_business_date": [{"business_date": "2026-11-23"}],
    }
    conn = sqlite3.connect(tmp_spool.path)
    try:
        for index, calls in expected.items():
            for filters in calls:
                statements.clear()
                tmp_spool.search(**filters)
                [(where, args)] = statements
                plan = " ".join(str(row) for row in conn.execute(f"EXPLAIN QUERY PLAN SELECT seq FROM records {where}",
                                                                 args))
                assert index in plan, (filters, plan)
    finally:
        conn.close()


def test_the_index_step_covers_records_spooled_before_it(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    with Spool.open(path, TERMINAL_ID, background_check=False) as spool:
        _fill(spool)
    # As the previous version left the file: records, no index; then the step, as `migrate` runs it.
    step = next(text for text in STEPS if "records_pos_order_id" in text)
    conn = sqlite3.connect(path)
    try:
        conn.execute("DROP INDEX records_pos_order_id")
        for statement in split_script(step):
            conn.execute(statement)
        conn.commit()
        [(count,)] = conn.execute(f"SELECT COUNT(*) FROM records INDEXED BY records_pos_order_id"
                                  f" WHERE {POS_ORDER_ID} IS NOT NULL")
    finally:
        conn.close()
    assert count == 5  # every record with an order id, none without
    with Spool.open(path, TERMINAL_ID, background_check=False) as spool:
        assert _seqs(spool.search(pos_order_id="A-1")) == [1, 3]


def test_a_damaged_payload_has_no_key_and_blocks_nothing(tmp_spool: Spool) -> None:
    _fill(tmp_spool)
    # Edited behind the spool's back, as salvage's tests do: the index must not refuse the edit,
    # nor the delete of that row later (retention prunes rows).
    conn = sqlite3.connect(tmp_spool.path)
    try:
        with conn:
            conn.execute("UPDATE records SET payload = 'not json' WHERE seq = 1")
        assert _seqs(tmp_spool.search(pos_order_id="A-1")) == [3]
        with conn:
            conn.execute("DELETE FROM history WHERE seq = 1")
            conn.execute("DELETE FROM records WHERE seq = 1")
        assert _seqs(tmp_spool.search(pos_order_id="A-1")) == [3]
    finally:
        conn.close()

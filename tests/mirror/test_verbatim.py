"""The mirror keeps each record verbatim (``record_text``, the very JSON its hash is computed from),
whatever jsonb makes of it: numbers jsonb rewrites (1e16, -0.0) and U+0000, which jsonb cannot hold,
are mirrored, the records after them too, and a restore gives back the spool that died. Rows
mirrored before ``record_text`` existed still restore from their jsonb copy; a refused batch does
not stop the status changes of the rows mirrored before it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from spool import Outcome, Spool
from terminald.mirror import MirrorCopier, MirrorRejected, MirrorSchemaMissing, RestoreFailed, init_db, restore_spool
from terminald.mirror.rows import batch_text, hashed_text, jsonb_safe
from tests.fixtures.postgres import PgPair
from tests.mirror.helpers import TID, append, assert_mirror_equals_spool, mirror_pass, prepare, run, settle_some
from tests.spool.factory import make_request

ODD_META = {"n": 1e16, "z": -0.0, "big": 1.5e300, "small": 5e-324, "x": 0.1}
NUL_NAME = "阿莫西林\u0000胶囊"


def _odd(key: str, name: str = NUL_NAME, **extra: Any) -> Any:
    return make_request(key, 100, extra={"meta": dict(ODD_META), **extra,
                                         "items": [{"code": "XA01", "name": name, "qty": 1, "amount_fen": 100}]})


def _state(spool: Spool) -> list[tuple[object, ...]]:
    return [(json.dumps(r.wire(), sort_keys=True), r.status, r.outcome, r.resolution, r.refund, r.outage,
             r.outage_reason, r.idempotency_key, r.request_digest, r.original_seq, r.revoked_by, r.contact_phone)
            for r in spool.records(limit=10_000)]  # the wire as JSON: -0.0 and 0 differ there


def _odd_spool(path: Path) -> Spool:
    spool = Spool.open(path, TID, background_check=False)
    append(spool, 5)
    spool.append(_odd("odd-1"))  # seq 6
    # A literal backslash and "u0000" (no U+0000): looks like one in JSON, must stay what it is.
    spool.append(_odd("odd-2", name="\\u0000 literal", note="tab\there \"quoted\" \u001f"))  # seq 7
    append(spool, 5, prefix="after")  # seqs 8-12
    settle_some(spool, list(range(1, 13)))
    return spool


def test_the_text_of_a_record_is_what_its_hash_is_of(tmp_path: Path) -> None:
    with _odd_spool(tmp_path / "spool.db") as spool:
        records = spool.records(limit=100)
    for record in records:
        text = hashed_text(record)
        assert hashlib.sha256(text.encode("utf-8")).hexdigest() == record.hash
        parsed = json.loads(text)
        assert parsed == {k: v for k, v in record.wire().items() if k != "hash"}
    odd = records[5]
    assert '"n":1e+16' in hashed_text(odd) and '"z":-0.0' in hashed_text(odd)
    assert "\\u0000" in hashed_text(odd) and "\x00" not in hashed_text(odd)

    # The batch's text: each row's record_text verbatim, its view what jsonb can hold (U+FFFD).
    for batch in (records[:5], records):  # the usual path, and the one with U+0000
        rows = json.loads(batch_text(batch))
        for record, row in zip(batch, rows, strict=True):
            assert row["record_text"] == hashed_text(record)
            assert row["record"] == jsonb_safe(record.wire())
            assert row["hash"] == record.hash
    assert json.loads(batch_text(records[5:6]))[0]["record"]["payload"]["items"][0]["name"] == "阿莫西林\ufffd胶囊"


def test_records_jsonb_cannot_keep_are_mirrored_and_restored(pg_pair: PgPair, pg_database: str,
                                                             tmp_path: Path) -> None:
    dsn = prepare(pg_pair, pg_database, TID)[TID]
    path = tmp_path / "spool.db"
    spool = _odd_spool(path)
    copier = mirror_pass(spool, dsn, batch_size=4)  # the odd records amid batches
    status = copier.status()
    assert status.alarms == () and status.mirrored_seq == 12 and status.last_error is None
    append(spool, 3, prefix="later")  # and the ones after them, in the next pass
    spool.append(_odd("odd-3"))
    assert not mirror_pass(spool, dsn).status().alarms
    assert assert_mirror_equals_spool(pg_pair, pg_database, spool) == 16

    with pg_pair.admin(pg_database) as conn:
        # IT can check every record against its hash in SQL; the view is what jsonb makes of it.
        bad = conn.execute("SELECT count(*) FROM terminald_records WHERE"
                           " encode(sha256(convert_to(record_text, 'UTF8')), 'hex') <> hash").fetchone()
        view = conn.execute("SELECT record->'payload'->'meta'->>'n', record->'payload'->'items'->0->>'name'"
                            " FROM terminald_records WHERE terminal_id = %s AND seq = 6", (TID,)).fetchone()
    assert bad == (0,)
    assert view == ("10000000000000000", "阿莫西林\ufffd胶囊")

    before, stats = _state(spool), spool.stats()
    spool.close()
    for dead in tmp_path.glob("spool.db*"):
        dead.unlink()
    report = restore_spool(dsn, TID, path)
    assert report.check.ok and report.records == 16 and report.notes == ()
    with Spool.open(path, TID, background_check=False) as restored:
        assert _state(restored) == before
        assert restored.stats() == stats
        assert restored.check().ok
        odd = restored.get_seq(6)
        assert odd is not None and odd.payload["items"][0]["name"] == NUL_NAME
        assert str(odd.payload["meta"]["z"]) == "-0.0" and odd.payload["meta"]["n"] == 1e16
        assert restored.append(make_request("after-restore")).record.seq == 17


def test_nul_in_a_status_change_does_not_stop_the_mirror(pg_pair: PgPair, pg_database: str, spool: Spool) -> None:
    dsn = prepare(pg_pair, pg_database, TID)[TID]
    append(spool, 4)
    spool.apply_outcomes([Outcome(2, "rejected", {"code": "x", "message": "bad\u0000card"})])
    assert not mirror_pass(spool, dsn).status().alarms
    record = spool.get_seq(2)
    assert record is not None
    spool.resolve(record.record_id, "self_pay", "note\u0000with nul")
    append(spool, 2, prefix="later")
    copier = mirror_pass(spool, dsn)
    assert copier.status().alarms == () and copier.status().mirrored_seq == 6
    assert assert_mirror_equals_spool(pg_pair, pg_database, spool) == 6  # U+FFFD in the status columns


def test_rows_mirrored_before_record_text_existed_still_restore(pg_pair: PgPair, pg_database: str,
                                                                 tmp_path: Path) -> None:
    dsn = prepare(pg_pair, pg_database, TID)[TID]
    path = tmp_path / "spool.db"
    spool = Spool.open(path, TID, background_check=False)
    append(spool, 30)
    settle_some(spool, list(range(1, 31)))
    mirror_pass(spool, dsn)
    before = _state(spool)

    def restore(name: str) -> list[tuple[object, ...]]:
        dest = tmp_path / name
        dest.mkdir()
        report = restore_spool(dsn, TID, dest / "spool.db")
        assert report.check.ok and report.records == 30
        with Spool.open(dest / "spool.db", TID, background_check=False) as restored:
            return _state(restored)

    with pg_pair.admin(pg_database) as conn:  # rows written by an older terminald: no text
        conn.execute("UPDATE terminald_records SET record_text = NULL WHERE terminal_id = %s AND seq <= 20", (TID,))
    assert restore("half") == before

    with pg_pair.admin(pg_database) as conn:  # a database init-db has not upgraded yet
        conn.execute("ALTER TABLE terminald_records DROP COLUMN record_text")
    assert restore("old-schema") == before
    append(spool, 2, prefix="new")
    with pytest.raises(MirrorSchemaMissing, match="init-db"):
        mirror_pass(spool, dsn)

    with pg_pair.admin(pg_database) as conn:  # init-db again: the column is back, NULL in the old rows
        init_db(conn)
        init_db(conn)
    copier = mirror_pass(spool, dsn)
    assert copier.status().alarms == () and copier.status().mirrored_seq == 32
    with pg_pair.admin(pg_database) as conn:
        texts = conn.execute("SELECT count(record_text) FROM terminald_records WHERE terminal_id = %s",
                             (TID,)).fetchone()
        assert texts == (2,)
        # An old row whose jsonb copy changed a number (what jsonb does to 1e16): the restore says so.
        conn.execute("UPDATE terminald_records SET record = jsonb_set(record, '{payload,total_fen}', '1')"
                     " WHERE terminal_id = %s AND seq = 7", (TID,))
    with pytest.raises(RestoreFailed, match=r"seq 7: hash does not match.*before the record_text column existed"):
        restore("tampered")
    spool.close()


def test_a_refused_batch_does_not_freeze_the_statuses_of_earlier_rows(pg_pair: PgPair, pg_database: str,
                                                                      spool: Spool) -> None:
    dsn = prepare(pg_pair, pg_database, TID)[TID]
    append(spool, 5)
    mirror_pass(spool, dsn)
    with pg_pair.admin(pg_database) as conn:  # a value this server refuses, from seq 6 on
        conn.execute("ALTER TABLE terminald_records ADD CONSTRAINT refuse_after_5 CHECK (seq <= 5)")
    append(spool, 3, prefix="refused")
    spool.apply_outcomes([Outcome(seq, "settled", {"fund_paid_fen": 60}) for seq in (1, 2, 7)])
    record = spool.get_seq(3)
    assert record is not None

    async def passes() -> MirrorCopier:
        copier = MirrorCopier(spool, dsn)
        try:
            with pytest.raises(MirrorRejected, match="refuse_after_5"):
                await copier.sync_once()  # the first pass compares every open row
            spool.apply_outcomes([Outcome(3, "rejected", {"code": "card_frozen"})])
            with pytest.raises(MirrorRejected, match="refuse_after_5"):
                await copier.sync_once()  # later passes follow the history cursor
            assert [a.code for a in copier.status().alarms] == ["mirror_rejected"]
            assert copier.status().mirrored_seq == 5
        finally:
            await copier.close()
        return copier

    run(passes())
    with pg_pair.admin(pg_database) as conn:
        statuses = conn.execute("SELECT seq, status FROM terminald_records WHERE terminal_id = %s ORDER BY seq",
                                (TID,)).fetchall()
        assert statuses == [(1, "settled"), (2, "settled"), (3, "rejected"), (4, "pending"), (5, "pending")]
        conn.execute("ALTER TABLE terminald_records DROP CONSTRAINT refuse_after_5")
    copier = mirror_pass(spool, dsn)
    assert copier.status().alarms == () and copier.status().mirrored_seq == 8
    assert assert_mirror_equals_spool(pg_pair, pg_database, spool) == 8

"""What each bundled card description must read as (shared by the pure and the pcscd tests)."""

from __future__ import annotations

from typing import Any

SSC2: dict[str, Any] = {
    "card_number": "A10000123",
    "ssn": "110105198003150039",
    "name": "张伟",
    "sex": "1",
    "birth_date": "1980-03-15",
    "nation": "01",
    "issuer_code": "110100000001",
    "issued_on": "2019-05-20",
    "expires_on": "2029-05-20",
    "card_type": "3",
    "spec_version": "2.00",
    "card_identifier": "110100D1560000050000000119A2B3C4",
}

# card -> (fields that must match, or None) / (error code, detail fragment)
READS: dict[str, dict[str, Any]] = {
    "ssc2": SSC2,
    "ssc2_t0": {
        "card_number": "B20000456",
        "ssn": "310104199207080023",
        "name": "王秀英",
        "sex": "2",
        "birth_date": "1992-07-08",
        "expires_on": "2030-09-01",
    },
    "ssc3": {
        "card_number": "C30000789",
        "ssn": "650102197511200057",
        "name": "阿卜杜热合曼·买买提明·阿卜杜拉",
        "nation": "05",
        "spec_version": "3.00",
        "issued_on": "2023-02-14",
        "expires_on": "2033-02-14",
    },
    "frozen": {"card_number": "F60000987", "name": "陈建国", "expires_on": "2031-06-18"},
    "expired": {"card_number": "G70000135", "name": "刘洋", "expires_on": "2024-06-30"},
}

ERRORS: dict[str, tuple[str, str, int | None]] = {
    "locked": ("card_locked", "locked", 0x9303),
    "foreign": ("card_unreadable", "not a social-security card", 0x6A82),
}

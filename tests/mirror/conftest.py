"""Fixtures of the mirror tests."""

from __future__ import annotations

import pytest

from spool import Spool


@pytest.fixture
def spool(tmp_spool: Spool) -> Spool:
    """The spool of terminal TID (tests/mirror/helpers.py) in tmp_path: tests/fixtures/spool.py's."""
    return tmp_spool

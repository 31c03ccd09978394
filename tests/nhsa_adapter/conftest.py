"""Fixtures of the adapter's tests: a bench on the `nhsa_sim` fixture's simulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from terminald.sim.nhsa import NhsaSim
from tests.nhsa_adapter.helpers import Bench


@pytest.fixture
def bench(tmp_path: Path, nhsa_sim: NhsaSim) -> Iterator[Bench]:
    with Bench(tmp_path, nhsa_sim) as made:
        yield made

"""A simulator of the national medical-security platform (contracts/upstream-nhsa.md).

`terminald sim nhsa` runs it alone; tests use the `nhsa_sim` fixture. docs/nhsa-simulator.md
documents every rule: the envelope, sign-in, persons, the split, revokes, reversals (2601),
reconciliation (3201), the faults and the money check.
"""

from terminald.sim.nhsa.server import DEFAULT_PORT, Faults, NhsaSim, main, run

__all__ = ["DEFAULT_PORT", "Faults", "NhsaSim", "main", "run"]

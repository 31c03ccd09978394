"""Upstream adapters: how terminald talks to the central system it settles with.

`adapters.py` holds the name table (`upstream.protocol` -> adapter) and the interface each
adapter implements; the protocol-neutral uploader that drives them is terminald/upload/.
`v1/` speaks our own batch protocol (`upstream.protocol = "v1"`, contracts/upstream-v1.md);
`nhsa/` speaks the national medical-security platform (`upstream.protocol = "nhsa"`,
contracts/upstream-nhsa.md). `reconcile.py` builds the daily reconciliation's report alike for
every adapter (DESIGN.md, Architecture).
"""

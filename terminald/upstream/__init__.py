"""Upstream adapters: how terminald talks to the central system it settles with.

`nhsa/` speaks the national medical-security platform (`upstream.protocol = "nhsa"`,
contracts/upstream-nhsa.md). The protocol-neutral uploader and the name table of
adapters come here too (DESIGN.md, Architecture).
"""

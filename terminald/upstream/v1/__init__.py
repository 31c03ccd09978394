"""Protocol v1 (`upstream.protocol = "v1"`, contracts/upstream-v1.md): our own batch protocol.

    adapter.py    V1Adapter: the uploader's adapter (sync by cursor, batches, reconcile by totals)
    client.py     one httpx.AsyncClient; every call parsed and checked, or an UpstreamError
    answers.py    central's answers parsed strictly into typed values
    errors.py     v1's own errors (sequence_gap, the cursor and chain halts)
"""

from terminald.upstream.v1.adapter import V1Adapter

__all__ = ["V1Adapter"]

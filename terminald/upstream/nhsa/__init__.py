"""The national medical-security platform (`upstream.protocol = "nhsa"`): its protocol pieces.

    amounts.py    integer fen <-> 2-decimal yuan on the wire, exactly
    wirejson.py   JSON both ways without a float
    msgid.py      the 30-character message id
    envelope.py   the request envelope; the answer read as Ok, Refused or UnknownOutcome
    profiles.py   regional differences as data (profile_data/*.toml)
    calllog.py    every call, written before it is sent and completed after (spool file, "nhsa")
    client.py     one logged call over httpx; sign-in; 2601 reversal of a call left open
    redact.py     masking of the platform's messages
    errors.py     the error tree

contracts/upstream-nhsa.md is the protocol; docs/nhsa.md describes these modules. The adapter
that settles spooled records through them sits on the protocol-neutral uploader.
"""

"""A process that writes call-log rows and is then killed, for test_calllog_crash.py.

    python -m tests.nhsa.calllog_child PATH MODE COUNT

MODE "path": the log on its own connection; "spool": through an open Spool's writer. Writes
COUNT rows with `begin` (a 2102 each), printing ``begun <msgid>`` (flushed) after each returned,
then ``waiting`` and blocks reading stdin until the parent kills it: never exits by itself.
"""

from __future__ import annotations

import sys

from spool import Spool
from terminald.upstream.nhsa.calllog import CallLog

CODE = "H44030500123"


def main() -> int:
    path, mode, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    spool = Spool.open(path, "T0001", background_check=False) if mode == "spool" else None
    log = CallLog(spool if spool is not None else path, fixmedins_code=CODE)
    for i in range(count):
        msgid = log.begin("2102", record_id=f"rec-{i}", psn_no="44000012345678901234", insuplc_admdvs="440300")
        sys.stdout.write(f"begun {msgid}\n")
        sys.stdout.flush()
    sys.stdout.write("waiting\n")
    sys.stdout.flush()
    sys.stdin.read()  # the parent kills us here; it never closes our stdin first
    return 0


if __name__ == "__main__":
    sys.exit(main())

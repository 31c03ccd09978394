"""A writer process for the crash and fault-injection tests.

    python -m tests.spool.child_writer PATH THREADS COUNT

Opens the spool (retrying while injected faults make the open fail), prints
``ready``, then each thread appends COUNT records and prints, flushed, one
line per append *after* it returned: ``ok <seq> <key>`` or ``err <key> <code>``.
The parent kills it with SIGKILL at a random moment or lets it finish (``done``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time

from spool import Spool, SpoolError
from tests.spool.factory import TERMINAL_ID, make_request


def _say(lock: threading.Lock, line: str) -> None:
    with lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def main() -> int:
    path, threads, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    spool = None
    for _ in range(50):
        try:
            spool = Spool.open(path, TERMINAL_ID, background_check=False)
            break
        except SpoolError as exc:
            print(f"open-failed {exc.code}", file=sys.stderr)
            time.sleep(0.01)
    if spool is None:
        return 3
    lock = threading.Lock()
    _say(lock, "ready")

    def work(thread_no: int) -> None:
        for i in range(count):
            key = f"{os.getpid()}-{thread_no}-{i}"
            try:
                result = spool.append(make_request(key, total_fen=100 + i))
            except SpoolError as exc:
                _say(lock, f"err {key} {type(exc).__name__}")
            else:
                _say(lock, f"ok {result.record.seq} {key}")

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    with contextlib.suppress(SpoolError):
        spool.close()
    _say(lock, "done")
    return 0


if __name__ == "__main__":
    sys.exit(main())

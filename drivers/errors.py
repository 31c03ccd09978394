"""Errors raised by the hardware drivers. One base, a stable `code` on each
class (the local API's `code` where there is one), causes kept with
`raise ... from exc` so pyserial, pyusb and socket errors never leak as such.

    DriverError                      driver_error
    └── PrinterError                 printer_error
        ├── PrinterConfigError       printer_config_invalid  bad URI or option: fix the config
        ├── PrintDataError           print_data_invalid      content that cannot be encoded (QR too long)
        ├── PrinterUnavailable       printer_unavailable     nothing was sent: safe to retry
        │   └── PrinterTimeout       printer_timeout         took no byte within the timeout: nothing sent
        └── PrintInterrupted         print_interrupted       data may be partly sent: outcome unknown
            └── PrintTimeout         print_timeout           stopped taking data mid-job for the timeout

Every write to hardware has a deadline; a transport that hits it raises one of
the two timeouts, so a printer out of paper never holds its worker forever.

Card-reader errors hang off `DriverError` too (`drivers.cards.errors`: CardError and its tree).
"""

from __future__ import annotations

__all__ = [
    "DriverError",
    "PrintDataError",
    "PrintInterrupted",
    "PrintTimeout",
    "PrinterConfigError",
    "PrinterError",
    "PrinterTimeout",
    "PrinterUnavailable",
]


class DriverError(Exception):
    code = "driver_error"


class PrinterError(DriverError):
    code = "printer_error"


class PrinterConfigError(PrinterError):
    """The printer URI or one of its options is wrong; retrying cannot help."""

    code = "printer_config_invalid"


class PrintDataError(PrinterError):
    """Receipt content the encoder refuses (a QR payload too long, a bad size)."""

    code = "print_data_invalid"


class PrinterUnavailable(PrinterError):
    """The printer cannot take data right now (off, unplugged, paper out).
    Nothing of the job was sent, so the job may simply be retried."""

    code = "printer_unavailable"


class PrintInterrupted(PrinterError):
    """The transfer broke after it started: part of the job may have printed.
    The job's outcome is unknown and it must not be reprinted automatically."""

    code = "print_interrupted"


class PrinterTimeout(PrinterUnavailable):
    """The printer took no byte of the job within the transport's timeout (paper out on a
    printer that does not say so, a wedged device). Nothing was sent: the job waits and retries."""

    code = "printer_timeout"


class PrintTimeout(PrintInterrupted):
    """The printer stopped taking data part-way through the job and did not resume within
    the transport's timeout. Part of the job may have printed: the outcome is unknown."""

    code = "print_timeout"

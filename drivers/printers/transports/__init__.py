"""Printer transports, chosen by URI scheme through an explicit table.

    tcp://HOST[:PORT]            raw TCP, port 9100 printers
    serial:///dev/ttyUSB0?...    RS-232 / USB-serial via pyserial
    usb://VID:PID[/SERIAL]       usblp device or libusb
    file:///dev/usb/lp0          a character device or file
    preview:///DIRECTORY         .bin + .png per job, no printer
    memory://[NAME]              tests only

Each module's docstring gives its URI grammar. Modules are imported only when
their scheme is used, so pyserial or pyusb cost nothing unless configured.
"""

from __future__ import annotations

import importlib
from urllib.parse import urlsplit

from drivers.errors import PrinterConfigError

from .base import Transport

__all__ = ["SCHEMES", "Transport", "open_transport"]

SCHEMES: dict[str, tuple[str, str]] = {
    "tcp": ("tcp", "TcpTransport"),
    "serial": ("serial", "SerialTransport"),
    "usb": ("usb", "UsbTransport"),
    "file": ("file", "FileTransport"),
    "preview": ("preview", "PreviewTransport"),
    "memory": ("memory", "MemoryTransport"),
}


def open_transport(uri: str) -> Transport:
    """The transport for `uri`. Touches no hardware; raises PrinterConfigError
    for an unknown scheme or a malformed URI."""
    if not isinstance(uri, str) or "://" not in uri:
        raise PrinterConfigError(
            f"bad printer URI {uri!r}; expected SCHEME://... with one of {sorted(SCHEMES)}"
        )
    try:
        scheme = urlsplit(uri).scheme
    except ValueError as exc:
        raise PrinterConfigError(f"bad printer URI {uri!r}") from exc
    if scheme not in SCHEMES:
        raise PrinterConfigError(
            f"unknown printer URI scheme {scheme!r}; known: {', '.join(sorted(SCHEMES))}"
        )
    module_name, class_name = SCHEMES[scheme]
    module = importlib.import_module(f"{__name__}.{module_name}")
    transport: Transport = getattr(module, class_name)(uri)
    return transport

"""Card profiles by name: an explicit table, read-only after import.

A new profile is one module with a class following
:class:`~drivers.cards.profiles.base.CardProfile` and one line in
``PROFILES``; the PC/SC layer never changes. ``CardService`` also takes a
``profiles`` mapping, so the daemon or a test can bring its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from drivers.cards.errors import CardError
from drivers.cards.profiles.base import CardProfile, PsamOpener
from drivers.cards.profiles.cn_ssc import CnSscProfile

__all__ = ["PROFILES", "CardProfile", "PsamOpener", "UnknownProfile", "get_profile"]

PROFILES: Mapping[str, type[CardProfile]] = MappingProxyType({CnSscProfile.name: CnSscProfile})


class UnknownProfile(CardError):
    """The configured profile name is not in the table."""

    code = "unknown_profile"


def get_profile(name: str, profiles: Mapping[str, type[CardProfile]] = PROFILES) -> CardProfile:
    try:
        return profiles[name]()
    except KeyError:
        known = ", ".join(sorted(profiles))
        raise UnknownProfile(f"unknown card profile {name!r}; known: {known}") from None

"""Polling with a deadline: the one way tests wait for something to happen."""

from terminald.sim.waiting import wait_for

__all__ = ["wait_for"]

"""terminald: the counter-side daemon."""
__version__ = "0.1.0"

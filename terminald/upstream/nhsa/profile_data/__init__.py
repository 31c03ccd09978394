"""Packaged profiles of the national platform (TOML), read by `terminald.upstream.nhsa.profiles`."""

"""Root of the test suite.

Fixtures for each real part live in `tests/fixtures/<part>.py` and are loaded
here as plugins, so a test anywhere can ask for `pcscd`, `printer_sim`,
`central_sim`, `daemon`, ... without importing them.
"""

from pathlib import Path

pytest_plugins = sorted(
    f"tests.fixtures.{p.stem}"
    for p in (Path(__file__).parent / "fixtures").glob("*.py")
    if p.stem != "__init__"
)

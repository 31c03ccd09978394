"""terminald: the counter-side daemon."""

import sys
import types

__version__ = "0.1.0"

# httpx imports its own command-line client (and with it rich, ~4 MB) whenever
# click and rich are installed, as they are here for our CLI. The daemon never
# uses it; a placeholder keeps idle memory under the 60 MB a counter PC budget allows.
if "httpx" not in sys.modules and "httpx._main" not in sys.modules:
    _placeholder = types.ModuleType("httpx._main")

    def _no_httpx_cli() -> None:
        raise SystemExit("the httpx command-line client is not available inside terminald")

    _placeholder.main = _no_httpx_cli  # type: ignore[attr-defined]
    sys.modules["httpx._main"] = _placeholder

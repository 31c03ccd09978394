"""`python -m terminald.cli …`, as `terminald …`."""

from terminald.cli import main

main()

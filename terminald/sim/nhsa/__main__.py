"""`python -m terminald.sim.nhsa --port 8650 --db nhsa.db …`"""

from terminald.sim.nhsa.server import main

main()

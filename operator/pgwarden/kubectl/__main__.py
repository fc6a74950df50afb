"""`python -m pgwarden.kubectl`: the plugin without its console script (what the krew launcher runs)."""

from pgwarden.kubectl.main import console

console()

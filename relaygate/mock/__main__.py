"""``python -m relaygate.mock``: run the mock upstream."""

from relaygate.mock.cli import main

main()

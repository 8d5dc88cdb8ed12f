"""relaygate: an observability-first AI gateway."""

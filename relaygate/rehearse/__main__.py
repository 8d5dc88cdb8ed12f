"""``python -m relaygate.rehearse``: the ``relaygate rehearse`` command."""

import sys

from relaygate.rehearse.cli import main

sys.exit(main())

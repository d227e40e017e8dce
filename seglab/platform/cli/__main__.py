"""``python -m seglab.platform.cli ...``: the ``seglab`` command without its console script (``make ui`` uses it)."""
import sys

from seglab.platform.cli.main import main

sys.exit(main())

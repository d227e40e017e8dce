"""The ``seglab`` command: :func:`~seglab.platform.cli.main.main` parses, one module per command runs.

* :mod:`.main` -- the parser and the dispatch (``seglab models | compare | data check | eval``);
* :mod:`.common` -- the one-line error parser, ``HxW`` and positive-integer argument types;
* :mod:`.models`, :mod:`.compare`, :mod:`.data`, :mod:`.eval` -- one command each.
"""
from seglab.platform.cli.main import main

__all__ = ["main"]

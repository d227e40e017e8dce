"""The ``seglab`` command: :func:`~seglab.platform.cli.main.main` parses, one module per command runs.

* :mod:`.main` -- the parser and the dispatch (``seglab models | compare | data check | eval | predict | export | ui``);
* :mod:`.common` -- the one-line error parser, ``HxW`` and positive-integer argument types;
* :mod:`.models`, :mod:`.compare`, :mod:`.data`, :mod:`.eval`, :mod:`.predict`, :mod:`.export`, :mod:`.ui` --
  one command each (predict / export / ui on :mod:`seglab.platform.serve` and the report's links).
"""
from seglab.platform.cli.main import main

__all__ = ["main"]

"""``python -m memnets``: the command line (see :mod:`memnets.cli`)."""

from memnets.cli import main

raise SystemExit(main())

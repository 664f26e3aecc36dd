"""``python -m memnets``: the command line."""

from memnets.cli import main

raise SystemExit(main())

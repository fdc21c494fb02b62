"""``python -m ppgen``: the same command line as the ``ppgen`` script."""

from ppgen.cli import main

raise SystemExit(main())

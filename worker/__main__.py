"""`python -m worker` is the same as the `memscore` console script."""

from worker.cli import main

raise SystemExit(main())

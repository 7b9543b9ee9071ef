"""``python -m nbremind``: the ``nbremind`` command."""

from .cli import main

raise SystemExit(main())

"""``python -m minicnn ...`` is the ``minicnn`` command."""
from .cli import main

raise SystemExit(main())

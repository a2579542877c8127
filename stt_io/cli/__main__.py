"""``python -m stt_io.cli``: the ``stt`` command."""

from . import main

raise SystemExit(main())

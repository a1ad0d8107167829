"""``python -m vpsie_autoscaler`` is the same as the ``vpsie-autoscaler`` command."""

from vpsie_autoscaler.cli import main

raise SystemExit(main())

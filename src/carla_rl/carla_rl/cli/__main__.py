"""``python -m carla_rl.cli``: the ``carla-rl`` command."""

import sys

from carla_rl.cli.main import main

sys.exit(main())

"""``python -m avformer`` is the same as the ``avformer`` command."""

import sys

from avformer.cli.main import main

sys.exit(main())

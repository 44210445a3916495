"""``python -m svmhpo`` is the ``svmhpo`` command."""

import sys

from svmhpo.cli import main

sys.exit(main())

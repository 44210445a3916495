"""``python -m svmhpo`` is the ``svmhpo`` command."""

from svmhpo.cli import run

run()

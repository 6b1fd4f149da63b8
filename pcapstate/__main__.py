"""``python -m pcapstate`` is the ``pcapstate`` command."""
from pcapstate.cli import main

main()

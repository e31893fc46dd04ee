"""``python -m oned`` runs the daemon (see ``oned.cli``)."""

from oned.cli import main

main()

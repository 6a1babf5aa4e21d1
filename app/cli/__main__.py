"""``python -m app.cli``: the same command line as the ``modelserve`` console script."""

from app.cli import main

main()

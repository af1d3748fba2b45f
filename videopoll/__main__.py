"""`python -m videopoll`: the same as the `videopoll` console script."""

from .cli import main

main()

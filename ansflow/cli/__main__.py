"""`python -m ansflow.cli` runs the command line."""

from ansflow.cli import main

main()

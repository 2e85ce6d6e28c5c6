"""`python -m replicate` runs the CLI."""

from replicate.cli import main

main()

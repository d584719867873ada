"""`python -m app.cli`: the same as `loke-sync`."""

from app.cli.main import main

main()

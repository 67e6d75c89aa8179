"""`python -m footfall ...` is the `footfall` command."""

from .cli import main

main()

"""`python -m cnnlab <verb> ...`, the same as the `cnnlab` command."""

from cnnlab.cli import main

main()

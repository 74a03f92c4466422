"""`python -m gancmp.cli <command> [flags]`: the `gancmp` command."""

from gancmp.cli.main import main

main()

"""The `gancmp` command line, one module per job:

    main     `gancmp <command>`: the usage text, parsing the flags, dispatch, errors as one line
    runs     sweep | report | train | eval | sample: the commands that train and read runs
    common   what the commands share: the usage error, process-setup flags, the --config value
    help     `gancmp <command> --help` and the one-line messages of bad input
    tools    list | bench | plan | convert-inception | prepare-data
    catalog  what `gancmp list` prints: every registered name with a short description
    score    fid | kid | pr | is | stats: scoring anyone's images

`main` is the console script `gancmp` (pyproject.toml: `gancmp.cli:main`); `python -m gancmp.cli`
runs it too.
"""

from gancmp.cli.main import main

__all__ = ["main"]

"""`python -m distsim` is the `distsim` command."""

from distsim.cli import main

if __name__ == "__main__":
    main()

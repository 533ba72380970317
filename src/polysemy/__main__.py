"""`python -m polysemy` runs the command-line interface (also under `torchrun -m polysemy`)."""

from polysemy.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

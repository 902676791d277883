"""The old path of the `minidp` entry point: `python -m minidp.cli` runs the CLI of minidp/run/cli.py."""
import sys

from minidp.run.cli import build_parser, main  # noqa: F401  (re-exported)

if __name__ == "__main__":
    sys.exit(main())

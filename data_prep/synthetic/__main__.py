"""`python -m data_prep.synthetic ARGS`: the same as `python -m data_prep synthetic ARGS`."""
import sys

from data_prep.cli import main as prepare_main


def main(argv: list[str] | None = None) -> int:
    return prepare_main(["synthetic", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())

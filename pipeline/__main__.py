"""python -m pipeline TARGET [TARGET ...] [NAME=value ...] [--dry-run]   (`make TARGET NAME=value` calls this)"""
from __future__ import annotations

import argparse
import shutil
import sys

from cli import EXIT_USAGE, Parser, UsageError, error_line

from .demo import convert_smollm2, demo, demo_full
from .figure_targets import FIGURE_TARGETS
from .graph import Runner, StageFailed
from .layout import Layout
from .settings import Variables, help_text
from .targets import TARGETS


def clean_run(runner: Runner, variables: Variables, layout: Layout) -> None:
    print(f"removing {layout.run_dir}")
    shutil.rmtree(layout.run_dir, ignore_errors=True)


ALL_TARGETS = {**TARGETS, **FIGURE_TARGETS, "demo": demo, "demo-full": demo_full, "smollm2": convert_smollm2,
               "clean-run": clean_run, "help": None}


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m pipeline", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter,
                    epilog="targets: " + " ".join(ALL_TARGETS) + "\n\nvariables:\n" + help_text())
    parser.add_argument("words", nargs="+", metavar="TARGET|NAME=value")
    parser.add_argument("--dry-run", "-n", action="store_true", help="list what would run and why; run nothing")
    try:
        args = parser.parse_intermixed_args(argv)
        names = [w for w in args.words if "=" not in w]
        if "help" in names:
            print("targets: " + " ".join(ALL_TARGETS) + "\n\n" + help_text())
            return 0
        unknown = [n for n in names if n not in ALL_TARGETS]
        if unknown:
            raise UsageError(f"unknown target(s) {', '.join(unknown)}; targets: {' '.join(ALL_TARGETS)}")
        variables = Variables.from_sources([w for w in args.words if "=" in w])
        layout = Layout.of(variables)
        runner = Runner(layout.cache, dry_run=args.dry_run)
        for name in names:
            ALL_TARGETS[name](runner, variables, layout)
    except (UsageError, StageFailed, FileNotFoundError) as err:   # a VariableError is a UsageError
        print(error_line(err), file=sys.stderr)
        return EXIT_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())

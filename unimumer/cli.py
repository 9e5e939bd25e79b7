"""`python -m unimumer` / `unimumer`: recognise images and score prediction files."""
from __future__ import annotations

import argparse
import sys


class _Parser(argparse.ArgumentParser):
    """Usage errors exit with 1: exit code 2 means "some inputs failed" for predict and evaluate."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m unimumer",
        description="Handwritten mathematical expression recognition with Uni-MuMER.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)

    from unimumer import metrics, predict

    predict.add_arguments(
        commands.add_parser(
            "predict",
            help="recognise image files or folders and write a predictions JSON",
            description=predict.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )
    metrics.add_arguments(
        commands.add_parser(
            "evaluate",
            help="score a predictions file ([{gt, pred, ...}], JSON or JSONL)",
            description=metrics.EVALUATE_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())

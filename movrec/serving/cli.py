"""The ``movrec`` command: recommendations, predictions and sweep reports.

::

    movrec similar --title "The Dark Knight" -k 10
    movrec user --id 42 -k 10
    movrec new-user --likes "Toy Story" "Up" --genres Animation -k 10
    movrec new-user --rated "Alien=5" "Titanic=2"
    movrec predict --csv new_movies.csv
    movrec report logs/multiruns/<time>

Every command but ``report`` reads a checkpoint (``--ckpt``, default: the tested checkpoint
of the newest finished run under ``logs/``, named on stderr) with its fitted preprocessing;
nothing is refitted, and nothing in the file can run code (``--trust-checkpoint`` lifts that
for an older or foreign file you trust). ``similar``, ``user`` and
``new-user`` rebuild the run's movies (and ratings) from the data settings saved in the
checkpoint (``--data-dir`` / ``--ratings-dir`` when the files moved). Output is a table, or
JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from movrec.console import run_command, silence_known_noise
from movrec.data import MovielensFiles, TmdbFiles
from movrec.data.tmdb import read_table
from movrec.evaluation.report import write_report
from movrec.serving.checkpoint import latest_checkpoint
from movrec.serving.predict import RatingPredictor
from movrec.serving.recommender import Recommender


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--json", action="store_true", help="JSON instead of a table")
    common = argparse.ArgumentParser(add_help=False, parents=[output])
    common.add_argument(
        "--ckpt", help="checkpoint file (default: the newest finished run's under --logs)"
    )
    common.add_argument(
        "--trust-checkpoint", action="store_true",
        help="also load a checkpoint that holds Python objects (an older or foreign file): "
        "loading such a file can run any code in it",
    )  # fmt: skip
    common.add_argument(
        "--logs", default=os.environ.get("MOVREC_LOG_DIR", "logs"), help="where runs are"
    )
    data = argparse.ArgumentParser(add_help=False, parents=[common])
    data.add_argument("--data-dir", help="TMDb files, if not where the run read them")
    data.add_argument("--ratings-dir", help="MovieLens files, if not where the run read them")
    data.add_argument("-k", type=positive_int, default=10, help="how many movies (default 10)")

    parser = argparse.ArgumentParser(
        prog="movrec",
        description="Recommend movies and predict ratings from a trained movrec checkpoint.",
        epilog='e.g. movrec similar --title "The Dark Knight" -k 10; movrec user --id 42',
    )
    commands = parser.add_subparsers(dest="command", required=True)
    similar = commands.add_parser("similar", parents=[data], help="movies like a movie")
    similar.add_argument("--title", required=True)
    user = commands.add_parser("user", parents=[data], help="top unseen movies for a user")
    user.add_argument("--id", type=int, required=True, help="MovieLens userId")
    new = commands.add_parser("new-user", parents=[data], help="for someone not in the data")
    new.add_argument("--likes", nargs="+", default=[], metavar="TITLE")
    new.add_argument("--genres", nargs="+", default=[], metavar="GENRE")
    new.add_argument(
        "--rated", nargs="+", default=[], metavar="TITLE=RATING",
        help="movies the user rated, e.g. 'Alien=5' 'Titanic=2' (a like counts as 5)",
    )  # fmt: skip
    predict = commands.add_parser("predict", parents=[common], help="ratings of raw TMDb rows")
    predict.add_argument("--csv", required=True, help="TMDb-schema CSV (plain, .gz or .zip)")
    report = commands.add_parser(
        "report", parents=[output], help="rebuild the report of a Hydra sweep folder"
    )
    report.add_argument("sweep_dir", help="e.g. logs/multiruns/2026-11-25_10-00-00")
    return parser


def command_table(args: argparse.Namespace) -> pd.DataFrame:
    """The table a command prints."""
    if args.command == "report":
        return write_report(args.sweep_dir)
    path = args.ckpt or latest_checkpoint(args.logs)
    if args.command == "predict":
        rows = read_table(Path(args.csv))
        predictor = RatingPredictor.from_checkpoint(path, trust=args.trust_checkpoint)
        predictions, report = predictor.predict(rows, source=args.csv)
        repairs = {k: v for k, v in report.counts.items() if v and k != "rows read"}
        if repairs:
            print(f"repairs: {repairs}", file=sys.stderr)
        return predictions
    recommender = Recommender.from_checkpoint(
        path,
        trust=args.trust_checkpoint,
        movies=TmdbFiles(args.data_dir) if args.data_dir else None,
        ratings=MovielensFiles(args.ratings_dir) if args.ratings_dir else None,
    )
    if args.command == "similar":
        return recommender.similar(args.title, args.k)
    if args.command == "user":
        return recommender.user(args.id, args.k)
    return recommender.new_user(args.likes, args.genres, args.k, rated=args.rated)


def main(argv: Sequence[str] | None = None) -> int:
    silence_known_noise()
    args = build_parser().parse_args(argv)

    def command() -> None:
        table = command_table(args)
        if args.json:
            print(json.dumps(table.to_dict(orient="records"), indent=2, default=float))
        else:
            print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))

    return run_command(command)


if __name__ == "__main__":
    sys.exit(main())

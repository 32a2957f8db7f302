"""What the entry points (``train.py``, the ``movrec`` command) print: one line for a user's
mistake, the traceback of a bug, and none of the known third-party noise."""

from __future__ import annotations

import logging
import math
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from movrec.errors import USER_ERROR_EXIT_CODE, UserError, find_user_error

log = logging.getLogger("movrec")

# Written into a sweep job's folder when the job fails: the sweep report's `error` column.
FAILED_FILE = "failed.txt"

# Lines Lightning prints on every run that say nothing about this run.
_NOISE = (
    "Trainer already configured with model summary callbacks",  # ours is RichModelSummary
    "💡 Tip: For seamless cloud logging",  # an advertisement for litlogger
)


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_NOISE)


def silence_known_noise() -> None:
    """Hide the messages above and torch's ``LeafSpec`` deprecation warning (raised inside
    Lightning, not fixable here); nothing else."""
    for name in ("lightning_fabric.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in logger.filters):
            logger.addFilter(_DropNoise())
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


def one_line(error: BaseException) -> str:
    """The error's message on one line (a user error's message says it all)."""
    message = error.args[0] if isinstance(error, UserError) and error.args else error
    return " ".join(str(message).split()) or type(error).__name__


def error_line(error: BaseException) -> str:
    return f"movrec: error: {one_line(error)}"


def _log_to_files(message: str, error: BaseException) -> None:
    """The traceback goes to the run's log files only, not to the console."""
    record = log.makeRecord(
        log.name, logging.ERROR, __file__, 0, message, None,
        (type(error), error, error.__traceback__),
    )  # fmt: skip
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def report_user_error(error: Exception) -> int:
    """One line on stderr (the traceback to the log files) and exit code 2 for a user error;
    a bug is raised again, traceback and all."""
    user_error = find_user_error(error)
    if user_error is None:
        raise error
    _log_to_files("user error", error)
    print(error_line(user_error), file=sys.stderr)
    return USER_ERROR_EXIT_CODE


def run_job(job: Callable[[], float | None]) -> float | None:
    """Run one ``train.py`` job.

    A single run: a user error prints one line and exits with code 2 (its traceback in
    ``train.log``); a bug raises. In a sweep, a failing job must not stop the others or the
    sweep report: its error is logged and written to ``failed.txt`` in its folder, the job
    returns NaN (Optuna records a failed trial) and the report marks it failed.
    """
    silence_known_noise()  # again: joblib's worker processes do not run train.py's top level
    try:
        return job()
    except Exception as error:  # noqa: BLE001  (sorted below: sweep job, user error, bug)
        if not (HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN):
            sys.exit(report_user_error(error))
        user_error = find_user_error(error)
        shown = user_error or error
        output_dir = Path(HydraConfig.get().runtime.output_dir)
        (output_dir / FAILED_FILE).write_text(f"{type(shown).__name__}: {one_line(shown)}\n")
        if user_error is None:
            log.exception("job failed with a bug")
        else:
            _log_to_files("job failed", error)
            log.error("job failed: %s", error_line(shown))
        return math.nan


def run_command(command: Callable[[], object]) -> int:
    """A command-line tool's exit code: 0, or 2 after one line for a user error; a bug raises."""
    try:
        command()
    except Exception as error:  # noqa: BLE001  (a bug is raised again)
        return report_user_error(error)
    return 0

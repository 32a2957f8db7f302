"""User mistakes and malformed inputs: a clear one-line error naming the file, column or option
(exit code 2 from the entry points, the traceback in the log file); bugs keep their traceback."""

from __future__ import annotations

import gzip
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT
from movrec.console import run_job
from movrec.data import MoviesDataModule, TmdbFiles, TmdbSynthetic
from movrec.data.glove import TextFileGlove
from movrec.data.synthetic import make_tmdb
from movrec.data.tmdb import MOVIES_FILE
from movrec.errors import MissingFileError, UserError, find_user_error
from movrec.serving.cli import main as movrec_main


def movies_csv(n: int = 60) -> str:
    return make_tmdb(n_movies=n, seed=3)[0].to_csv(index=False)


def write_file(folder: Path, name: str, content: str | bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)


def unrated(n: int) -> str:
    movies = make_tmdb(n_movies=n, seed=3)[0].assign(vote_count="0", vote_average="0")
    return movies.to_csv(index=False)


def two_files_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.csv", movies_csv(10))
        archive.writestr("b.csv", movies_csv(10))
    return buffer.getvalue()


# (name, file name, content, expected message fragment): each must be a UserError that
# names the file and says what is wrong, never a library's error from deep inside.
CORPUS = [
    ("header only", MOVIES_FILE, movies_csv().splitlines()[0] + "\n", "no movies left"),
    ("every movie unrated", MOVIES_FILE, unrated(40), "unrated (vote_count == 0): 40"),
    ("four rows", MOVIES_FILE, movies_csv(4), "4 rows are too few to split"),
    ("empty file", MOVIES_FILE, "", "the file is empty"),
    ("semicolons", MOVIES_FILE, "id;title;vote_average\n1;A;5\n", "not comma-separated"),
    ("no title column", MOVIES_FILE, "id,vote_average\n1,5\n", "missing column(s) ['title']"),
    ("latin-1 text", MOVIES_FILE, "id,title,vote_average\n1,Am\xe9lie,7\n".encode("latin-1"),
     "not UTF-8"),
    ("truncated gzip", f"{MOVIES_FILE}.gz", gzip.compress(movies_csv().encode())[:300],
     "cannot be read"),
    ("zip of two files", f"{MOVIES_FILE}.zip", two_files_zip(), "cannot be read"),
    ("binary garbage", MOVIES_FILE, bytes(range(256)) * 8, "cannot be read"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "file", "content", "expected"), CORPUS, ids=[c[0] for c in CORPUS]
)
def test_malformed_movies_files_are_one_clear_user_error(tmp_path, name, file, content, expected):
    write_file(tmp_path, file, content)
    with pytest.raises(UserError) as err:
        MoviesDataModule(TmdbFiles(str(tmp_path))).setup()
    message = str(err.value)
    assert expected in message and str(tmp_path) in message, message


def test_bad_rows_are_counted_and_the_rest_trains(tmp_path):
    """Duplicate and non-integer ids, ratings off the 0-10 scale, junk numbers: counted."""
    movies = make_tmdb(n_movies=120, seed=3)[0]
    movies.loc[1, "id"] = movies.loc[0, "id"]
    movies.loc[2, "id"] = "12.5"
    movies.loc[3, "id"] = "abc"
    movies.loc[4, "vote_average"] = "11"
    movies.loc[5, "vote_average"] = "-1"
    movies.loc[6, "budget"] = "lots"
    write_file(tmp_path, MOVIES_FILE, movies.to_csv(index=False))
    dm = MoviesDataModule(TmdbFiles(str(tmp_path)))
    dm.setup()
    counts = dm.report.counts
    assert counts["rows dropped: duplicate id"] == 1
    assert counts["rows dropped: id missing or not an integer"] == 2
    assert counts["rows dropped: vote_average outside [0, 10]"] == 2
    assert counts["budget: not a number -> missing"] == 1
    kept = sum(len(f) for f in dm.frames.values())
    dropped = 5 + counts["rows dropped: unrated (vote_count == 0)"]
    assert kept == 120 - dropped


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\x93NUMPY\x01\x00" + bytes(range(200)), "not a GloVe text file"),
        ("the 0.1 0.2\nof 0.3\n", "expected a word and 2 numbers"),
        ("", "no vectors found"),
    ],
)
def test_wrong_glove_files_name_the_file(tmp_path, content, expected):
    path = tmp_path / "glove.txt"
    write_file(tmp_path, "glove.txt", content)
    with pytest.raises(UserError) as err:
        TextFileGlove(str(path), cache_dir=str(tmp_path / "cache")).load()
    assert str(path) in str(err.value) and expected in str(err.value)


def test_split_options_are_checked_before_splitting():
    with pytest.raises(UserError, match=r"data.test_fraction must be in \(0, 1\), got 1.5"):
        MoviesDataModule(TmdbSynthetic(**{"n_movies": 50}), test_fraction=1.5).setup()
    with pytest.raises(UserError, match="too few to split"):
        MoviesDataModule(TmdbSynthetic(**{"n_movies": 60}), folds=50).setup()


def test_user_error_is_found_behind_hydras_instantiation_error():
    try:
        try:
            raise MissingFileError("no such file")
        except MissingFileError as inner:
            raise RuntimeError("Error in call to target 'x'") from inner
    except RuntimeError as outer:
        assert isinstance(find_user_error(outer), MissingFileError)
    assert find_user_error(RuntimeError("a bug")) is None


def test_run_job_one_line_for_user_errors_and_tracebacks_for_bugs(capsys):
    def user_mistake():
        raise UserError("data.batch_size must be >= 1,\n  got 0")

    with pytest.raises(SystemExit) as exit_info:
        run_job(user_mistake)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "movrec: error: data.batch_size must be >= 1, got 0\n"

    def bug():
        raise ZeroDivisionError("oops")

    with pytest.raises(ZeroDivisionError):
        run_job(bug)


def train_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "train.py", *args, f"paths.log_dir={tmp_path}/logs"]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["data.movies.dir={tmp}/none"], "tmdb-movie-metadata"),
        # options are checked before any file is read
        (
            ["data.movies.dir={tmp}/none", "data.test_fraction=1.5"],
            "data.test_fraction must be in (0, 1)",
        ),
        (["data.movies.dir={tmp}/movies"], "missing column(s) ['vote_average']"),
    ],
)
def test_train_py_user_errors_are_one_line_with_exit_code_2(tmp_path, args, expected):
    write_file(tmp_path / "movies", MOVIES_FILE, "id,title\n1,A\n")
    done = train_cli(tmp_path, *(a.format(tmp=tmp_path) for a in args))
    assert done.returncode == 2, done.stderr[-2000:]
    (line,) = done.stderr.splitlines()  # nothing but the error on stderr
    assert line.startswith("movrec: error:") and expected in line
    assert "Traceback" not in done.stderr + done.stdout
    (log,) = (tmp_path / "logs" / "runs").glob("*/train.log")
    assert "Traceback" in log.read_text() and expected in log.read_text()


@pytest.mark.parametrize("k", ["-3", "0", "ten"])
def test_movrec_k_must_be_a_positive_number(k, capsys):
    with pytest.raises(SystemExit) as exit_info:
        movrec_main(["similar", "--title", "Up", "-k", k])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument -k" in err and "Traceback" not in err


def test_movrec_missing_checkpoint_is_one_line(tmp_path, capsys):
    assert movrec_main(["similar", "--title", "Up", "--logs", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("movrec: error: no finished run with a checkpoint under")
    assert err.count("\n") == 1


def test_report_of_no_sweep_is_one_line(tmp_path, capsys):
    assert movrec_main(["report", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("movrec: error:")


def test_a_file_that_is_not_a_checkpoint_is_named(tmp_path, capsys):
    fake = tmp_path / "model.ckpt"
    fake.write_text("id,title\n1,A\n")
    assert movrec_main(["predict", "--csv", str(fake), "--ckpt", str(fake)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"movrec: error: {fake}: damaged or truncated") and err.count("\n") == 1


def test_report_of_a_missing_folder_is_one_line(tmp_path, capsys):
    assert movrec_main(["report", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("movrec: error:") and "nowhere: no such folder" in err


def test_a_log_folder_that_cannot_be_made_is_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    done = subprocess.run(
        [sys.executable, "train.py", "data=synthetic", f"paths.log_dir={blocker}/logs"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("movrec: error: cannot create") and "paths.log_dir" in done.stderr
    assert done.stderr.count("\n") == 1

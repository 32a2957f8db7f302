"""Every command the README and docs/ show is one the project accepts: each `python train.py ...`
composes (every job of a sweep), each `movrec ...` and benchmark command parses, the Python
example runs. CI runs the cheap commands for real."""

from __future__ import annotations

import itertools
import re
import shlex

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import movrec.config  # noqa: F401  (the config's resolvers)
from conftest import CONF_DIR, ROOT, make_cfg
from movrec.data.synthetic import make_tmdb
from movrec.run import fit_and_test
from movrec.serving.cli import build_parser

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DOCS = "\n".join(page.read_text() for page in PAGES)


def readme_commands(program: str) -> list[str]:
    """Commands in code blocks and inline code of the README and docs/ that start with
    ``program``."""
    blocks = re.findall(r"```bash\n(.*?)```", DOCS, flags=re.S)
    lines = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    prose = re.sub(r"```.*?```", "", DOCS, flags=re.S).replace("\n", " ")
    lines += re.findall(r"`([^`]+)`", prose)
    found = [line.split(" #")[0].strip() for line in lines if line.strip().startswith(program)]
    return list(dict.fromkeys(found))


def placeholders(text: str) -> str:
    return re.sub(r"<[^>]*>", "x", text)


TRAIN = readme_commands("python train.py")
MOVREC = [c for c in readme_commands("movrec ") if " --" in c]  # not prose mentions


def test_the_readme_shows_the_commands_users_type():
    assert "python train.py -m model=deep,glove,finetuned_glove" in TRAIN
    assert any(c.startswith("python train.py -m experiment=paper") for c in TRAIN)
    assert len(TRAIN) >= 12 and len(MOVREC) >= 4


SWEEP_IS_SLOW = [pytest.param(c, marks=pytest.mark.slow) if " -m " in c else c for c in TRAIN]


@pytest.mark.parametrize("command", SWEEP_IS_SLOW)
def test_every_train_command_composes(command, tmp_path):
    args = shlex.split(placeholders(command))[2:]
    if "--cfg" in args:  # --cfg job prints the config: its value is not an override
        del args[args.index("--cfg") : args.index("--cfg") + 2]
    args = [a for a in args if a != "-m"]
    hydra_args = [a for a in args if a.startswith("hydra")]
    overrides = [a for a in args if not a.startswith("hydra")]
    # A sweep: every combination of the comma-separated values is a job that must compose.
    choices = [
        [f"{a.split('=', 1)[0]}={v}" for v in a.split("=", 1)[1].split(",")] for a in overrides
    ]
    for job in itertools.product(*choices):
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose(
                "train", [*job, *hydra_args, f"paths.log_dir={tmp_path}"], return_hydra_config=True
            )
        OmegaConf.to_container(cfg.model, resolve=True)
        OmegaConf.to_container(cfg.data, resolve=True)


@pytest.mark.parametrize("command", MOVREC)
def test_every_movrec_command_parses(command):
    args = build_parser().parse_args(shlex.split(placeholders(command))[1:])
    assert args.command in ("similar", "user", "new-user", "predict", "report")


PYTHON = re.findall(r"```python\n(.*?)```", DOCS, flags=re.S)


def test_the_readme_python_snippet_runs(tmp_path, monkeypatch):
    """The README's Python example, as written, on a checkpoint trained here: only the
    placeholder path is replaced."""
    assert PYTHON, "the docs show how to use movrec from Python"
    cfg = make_cfg(
        tmp_path, "experiment=hybrid", "trainer.max_epochs=1", "data.movies.n_movies=300"
    )
    checkpoint = fit_and_test(cfg)["checkpoint"]
    movies, _ = make_tmdb(n_movies=20, seed=9)
    movies.drop(columns=["vote_average"]).to_csv(tmp_path / "new_movies.csv", index=False)
    monkeypatch.chdir(tmp_path)
    for snippet in PYTHON:
        namespace: dict = {}
        exec(re.sub(r'"[^"]*<time>[^"]*"', repr(str(checkpoint)), snippet), namespace)
        predictions = namespace["predictions"]
        assert len(predictions) == 20 and predictions["predicted_vote_average"].notna().all()


BENCH = readme_commands("python -m benchmarks.bench")
RESULTS = readme_commands("python benchmarks/results.py")


@pytest.mark.parametrize("command", BENCH)
def test_every_benchmark_command_parses(command):
    from benchmarks.bench import build_parser

    build_parser().parse_args(shlex.split(placeholders(command))[3:])


@pytest.mark.parametrize("command", RESULTS)
def test_every_results_command_parses(command):
    from benchmarks.results import build_parser

    args = build_parser().parse_args(shlex.split(placeholders(command))[2:])
    assert args.name and args.sweeps


def test_the_docs_show_their_benchmark_and_results_commands():
    assert len(BENCH) >= 3 and len(RESULTS) >= 4
    assert "README.md" in str(PAGES[0]) and len(PAGES) >= 4

"""Checkpoints that cannot run code, are refused when damaged, and are written whole."""

from __future__ import annotations

import json
import os
import time
from functools import partial
from pathlib import Path

import pytest
import torch

from conftest import make_cfg
from movrec.errors import UserError
from movrec.run import fit_and_test, fit_or_test
from movrec.serving.checkpoint import (
    SEAL,
    Checkpoint,
    checksum,
    latest_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from movrec.serving.cli import main

RECOMMEND = ("experiment=recommend", "data=movielens_synthetic", "trainer.max_epochs=2",
             "data.movies.n_movies=300", "data.ratings.n_users=100", "refit=false")  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return fit_and_test(make_cfg(out, *RECOMMEND)), out  # metrics.json in `out`


class Payload:
    """What a hostile checkpoint hides: unpickling it creates ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def with_payload(checkpoint, path, marker):
    """A real, working checkpoint with the payload added beside its content."""
    raw = torch.load(checkpoint, weights_only=True)
    raw["extra"] = Payload(marker)
    torch.save(raw, path)
    return path


def commands(ckpt_args, tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text("id,title,genres\n1,A,[]\n")
    data = ["-k", "3"]
    return [
        ["predict", "--csv", str(rows), *ckpt_args],
        ["similar", "--title", "A", *ckpt_args, *data],
        ["user", "--id", "1", *ckpt_args, *data],
        ["new-user", "--likes", "A", *ckpt_args, *data],
    ]


def test_everything_movrec_writes_loads_weights_only(run):
    folder = run[1] / "checkpoints"
    files = list(folder.rglob("*.ckpt"))
    assert len(files) >= 2  # best and last
    for path in files:
        raw = torch.load(path, weights_only=True)
        assert raw[SEAL]["checksum"] and "RatingsDataModule" in raw


def test_a_payload_checkpoint_is_refused_and_never_runs(run, tmp_path, capsys):
    marker = tmp_path / "ran"
    bad = with_payload(run[0]["checkpoint"], tmp_path / "bad.ckpt", marker)
    for argv in commands(["--ckpt", str(bad)], tmp_path):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith(f"movrec: error: {bad}: refused") and err.count("\n") == 1
        assert "posix.system" in err or "nt.system" in err
    cfg = make_cfg(tmp_path, *RECOMMEND, "fit=false", f"ckpt_path={bad}")
    with pytest.raises(UserError, match="refused"):
        fit_or_test(cfg)
    cfg = make_cfg(tmp_path, *RECOMMEND, f"ckpt_path={bad}")  # a resume
    with pytest.raises(UserError, match="refused"):
        fit_or_test(cfg)
    assert not marker.exists()


def test_a_payload_dropped_under_the_logs_is_never_picked(run, tmp_path, capsys):
    marker, logs = tmp_path / "ran", run[1]
    dropped = logs / "zzz" / "epoch999.ckpt"
    dropped.parent.mkdir(exist_ok=True)
    with_payload(run[0]["checkpoint"], dropped, marker)
    os.utime(dropped, (time.time() + 60, time.time() + 60))  # the newest .ckpt
    rows = tmp_path / "rows.csv"
    rows.write_text("id,title,genres\n1,A,[]\n")
    assert main(["predict", "--csv", str(rows), "--logs", str(logs)]) == 0
    assert f"checkpoint {run[0]['checkpoint']} (the newest finished run)" in capsys.readouterr().err
    assert not marker.exists()


def test_the_newest_finished_run_is_picked_and_named(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="--ckpt"):
        latest_checkpoint(tmp_path)
    for i, name in enumerate(["a", "b"]):
        run = tmp_path / name
        (run / "checkpoints").mkdir(parents=True)
        (run / "checkpoints" / "best.ckpt").write_text("x")
        (run / "checkpoints" / "last.ckpt").write_text("x")
        metrics = run / "metrics.json"
        metrics.write_text(json.dumps({"checkpoint": str(run / "checkpoints" / "best.ckpt")}))
        os.utime(metrics, (time.time() + i, time.time() + i))
    (tmp_path / "c").mkdir()  # a run still going: no metrics.json yet
    (tmp_path / "c" / "epoch001.ckpt").write_text("x")
    assert latest_checkpoint(tmp_path) == tmp_path / "b/checkpoints/best.ckpt"
    assert "b/checkpoints/best.ckpt" in capsys.readouterr().err


def test_damaged_checkpoints_are_refused_in_one_line(run, tmp_path, capsys):
    good = run[0]["checkpoint"]
    raw = torch.load(good, weights_only=True)
    weights = raw["state_dict"]
    name = next(k for k, v in weights.items() if v.is_floating_point() and v.numel() > 10)
    weights[name].view(-1)[3] += 1.0  # one weight changed, the seal kept
    changed = tmp_path / "changed.ckpt"
    torch.save(raw, changed)
    with pytest.raises(UserError, match="damaged: its contents do not match its checksum"):
        read_checkpoint(changed)
    data = bytearray(Path(good).read_bytes())
    flipped = tmp_path / "flipped.ckpt"
    for offset in range(len(data) // 3, len(data) // 3 + 4000):
        data[offset] ^= 0xFF
    flipped.write_bytes(bytes(data))
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(bytes(data[: len(data) // 2]))
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    for path in (flipped, truncated, empty, tmp_path / "missing.ckpt"):
        assert main(["similar", "--title", "A", "--ckpt", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("movrec: error:") and str(path) in err and err.count("\n") == 1
        with pytest.raises(UserError):
            fit_or_test(make_cfg(tmp_path, *RECOMMEND, f"ckpt_path={path}"))


def test_a_changed_word_or_id_in_a_vocabulary_breaks_the_seal_and_older_seals_still_read(
    run, tmp_path
):
    """Lists of strings or integers are hashed whole (seal format 2); a checkpoint sealed
    item by item (format 1, movrec before) still reads."""
    raw = torch.load(run[0]["checkpoint"], weights_only=True)
    content = {k: v for k, v in raw.items() if k != SEAL}
    state = content["RatingsDataModule"]["preprocessing"]
    assert raw[SEAL]["format"] == 2
    for path, changed in (("titles", "words"), ("movie_ids", "ids")):
        tampered = torch.load(run[0]["checkpoint"], weights_only=True)
        values = tampered["RatingsDataModule"]["preprocessing"][path][changed]
        values[1] = values[0]
        torch.save(tampered, tmp_path / "tampered.ckpt")
        with pytest.raises(UserError, match="do not match its checksum"):
            read_checkpoint(tmp_path / "tampered.ckpt")
    assert state["titles"]["words"] and state["movie_ids"]["ids"]
    older = {**content, SEAL: {"format": 1, "checksum": checksum(content, 1)}}
    assert checksum(content, 1) != checksum(content, 2)
    torch.save(older, tmp_path / "older.ckpt")
    assert read_checkpoint(tmp_path / "older.ckpt").keys() == content.keys()


def test_a_write_that_fails_leaves_no_file_under_the_final_name(run, tmp_path, monkeypatch):
    raw = read_checkpoint(run[0]["checkpoint"])
    target = tmp_path / "last.ckpt"
    save_checkpoint(raw, target)
    before = target.read_bytes()

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(raw, target)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(raw, tmp_path / "new.ckpt")
    assert target.read_bytes() == before  # the old file, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no temporary left


def test_an_older_checkpoint_loads_only_when_trusted(run, tmp_path, capsys):
    """movrec 0.2 saved its settings as callables: refused by default, upgraded when the user
    trusts the file."""
    raw = read_checkpoint(run[0]["checkpoint"])
    hparams = raw["hyper_parameters"]
    hparams["net"] = partial(dict, **hparams["net"])  # any callable: it pickles by reference
    hparams["optimizer"] = partial(torch.optim.Adam, lr=hparams["optimizer"]["lr"])
    old = tmp_path / "old.ckpt"
    torch.save(raw, old)
    assert main(["similar", "--title", "A", "--ckpt", str(old), "-k", "2"]) == 2
    assert "--trust-checkpoint" in capsys.readouterr().err
    trusted = Checkpoint(old, trust=True)
    assert trusted.raw["hyper_parameters"]["optimizer"]["name"] == "adam"
    reference = Checkpoint(run[0]["checkpoint"]).model()
    model = trusted.model()
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value)


def test_predicting_a_header_only_csv_is_one_line(run, tmp_path, capsys):
    rows = tmp_path / "empty.csv"
    rows.write_text("id,title,genres\n")
    assert main(["predict", "--csv", str(rows), "--ckpt", str(run[0]["checkpoint"])]) == 2
    err = capsys.readouterr().err
    assert err.startswith("movrec: error:") and "empty.csv" in err and err.count("\n") == 1

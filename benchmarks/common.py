"""What the benchmarks share: composing the train config, and the bare PyTorch loop that
every timing is set beside."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from lightning.fabric.utilities.apply_func import move_data_to_device

ROOT = Path(__file__).resolve().parents[1]
QUIET = [
    "logger=none",
    "callbacks=none",
    "+trainer.enable_progress_bar=false",
    "+trainer.enable_checkpointing=false",
    "+trainer.enable_model_summary=false",
]


def compose_cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=overrides)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_training_epoch(model, optimizer, batches, device: torch.device) -> None:
    """The same batches and losses as the module's training step (the rating MSE, plus the
    ranking loss when the network ranks), without Lightning."""
    model.train()
    for batch in batches:
        batch = move_data_to_device(batch, device)
        loss = model.training_loss(batch)[0]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def bare_loop_seconds(model, datamodule, device: torch.device, epochs: int, validate: bool):
    """Seconds per epoch of the bare loop (and, with ``validate``, a pass over validation)."""
    model.to(device)
    optimizer = model.configure_optimizers()
    batches = datamodule.train_batches(device)  # on the device once, as Lightning's are
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        bare_training_epoch(model, optimizer, batches, device)
        if validate:
            model.eval()
            with torch.no_grad():
                for batch in datamodule.val_dataloader():
                    model(move_data_to_device(batch, device))
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return seconds

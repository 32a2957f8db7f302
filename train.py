"""Train and test one model: `python train.py model=finetuned_glove` (see conf/train.yaml)."""

import hydra
from omegaconf import DictConfig

from movrec.run import run


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    """Returns the best validation loss, the objective a Hydra sweeper minimises."""
    return run(cfg)["best_val_loss"]


if __name__ == "__main__":
    main()

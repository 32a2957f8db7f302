"""Train and test one model: `python train.py model=finetuned_glove` (see conf/train.yaml)."""

import hydra
from omegaconf import DictConfig

from movrec.console import run_job, silence_known_noise
from movrec.run import fit_or_test, objective

silence_known_noise()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Returns the best validation RMSE, the objective a Hydra sweeper (Optuna) minimises."""
    return run_job(lambda: objective(fit_or_test(cfg)))


if __name__ == "__main__":
    main()

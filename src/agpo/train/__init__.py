"""Training: the run config, the RL loop, the update, checkpoints and metrics.

    from agpo.train import RunConfig, load_config, train
    run_dir = train(load_config("configs/grpo.yaml", ["--train.steps", "10"]), "runs/x")
"""

from agpo.train.config import RunConfig, load_config
from agpo.train.loop import train

__all__ = ["RunConfig", "load_config", "train"]

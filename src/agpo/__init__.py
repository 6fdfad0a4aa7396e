"""agpo: reinforcement learning with verifiable rewards, and what it does to the reasoning boundary.

Folders follow the data flow of one training step:
tasks → rollout → rewards → algos → train → eval (see DESIGN in docs/architecture.md).
"""

__version__ = "0.1.0"

"""agpo: reinforcement learning with verifiable rewards, and what it does to the reasoning boundary.

Folders follow the data flow of one training step:
tasks → rollout → rewards → algos → policy forward → train → eval; the floors and the
rule that no import climbs are drawn in docs/design.md.
"""

__version__ = "0.1.0"

"""The methods the demo and the evidence run compare (``agpo.apps.evidence.methods``) and the
testbed's fixed sizes."""

from __future__ import annotations

from agpo.apps.evidence.methods import METHODS, Method, check_methods, label_of

TASK = "testbed_add"
TOKENS_PER_RESPONSE = 5  # marker + 3 digits + EOS: every testbed response has this length
DEMO_METHODS = ("grpo", "w_reinforce", "asym_grpo", "agpo_asym", "agpo_adaptive")

__all__ = ["DEMO_METHODS", "METHODS", "TASK", "TOKENS_PER_RESPONSE", "Method", "check_methods",
           "label_of"]

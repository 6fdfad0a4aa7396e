"""agpo.apps.evidence: ``agpo evidence``, methods × seeds from one base model on one task, under
one generated-token budget, with 95% bootstrap intervals and claims tested by rules fixed in
advance.

methods (what is compared) → study (what one comparison trains and evaluates: a ``Study`` gives
each seed's jobs; ``RunStudy`` is any model and task, the testbed's is
``agpo.apps.testbed.evidence``) → claims (the rules) → results (tables after every evaluation)
→ page (evidence.html); ``cli`` is ``agpo evidence``. The jobs run in ``--jobs`` worker
processes (``agpo.apps.testbed.runs.execute``); finished ones are reused and half-done ones
resume, so a stopped evidence run continues where it stopped.
"""

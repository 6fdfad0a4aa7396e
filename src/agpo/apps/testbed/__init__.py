"""agpo.apps.testbed: the demo and the evidence run on the built-in testbed (its tasks are
``agpo.tasks.testbed``, its base model ``agpo.models.testbed``).

methods (the compared methods) → runs (train and evaluate one method, in worker processes) →
report (tallies, plots, pages); ``demo`` and ``evidence`` assemble them, ``cli`` is
``agpo testbed {build,evidence}``, ``check`` a quick pass@k of a base model.
"""

"""agpo.testbed: the built-in small world (procedural task, tiny Llama base model, demo).

Importing this package registers the testbed tasks in ``agpo.tasks.TASKS`` (``load_task``
imports it when asked for a name it does not know).
"""

from agpo.tasks import TASKS
from agpo.testbed.tasks import load_testbed_add, load_testbed_add_steps

if "testbed_add" not in TASKS:
    TASKS.register("testbed_add")(load_testbed_add)
if "testbed_add_steps" not in TASKS:
    TASKS.register("testbed_add_steps")(load_testbed_add_steps)

"""Tasks: problems (prompt + gold answer) from the math benchmarks, local files, the procedural
arithmetic (``agpo.tasks.arith``) or the testbed (``agpo.tasks.testbed``).

``load_task("math500")`` / ``load_task("data/aime.jsonl")`` → ``list[TaskItem]``; the layout of
a file is detected from its fields (``agpo.tasks.layouts``); ``render_prompt`` applies a template.
"""

from agpo.tasks.base import TASKS, load_file, load_task, parse_fields, write_items
from agpo.tasks.templates import TEMPLATES, model_positions, prompt_room, render_prompt

# Each task module registers its names when imported: a broken one fails here, loudly, instead of
# leaving its names missing ("unknown task"). All three are light (stdlib and agpo.types).
from agpo.tasks import arith, benchmarks, testbed  # noqa: F401  (registers their tasks)

__all__ = [
    "TASKS", "TEMPLATES", "load_file", "load_task", "model_positions", "parse_fields", "prompt_room", "render_prompt", "write_items",
]

"""Tasks by name. Importing this package registers every task module in it."""

from biobench.tasks.base import MANIFEST_COLUMNS, TASKS, Task, TaskOptions
from biobench.tasks import animals  # noqa: F401  (registration)
from biobench.tasks import imagenet1k, iwildcam, kabr, newt, plantnet  # noqa: F401  (registration)

__all__ = ["MANIFEST_COLUMNS", "TASKS", "Task", "TaskOptions"]

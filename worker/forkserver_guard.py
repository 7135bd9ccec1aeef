"""Imported by one process only: the forkserver of TASK_ISOLATION=process, as its preload
(worker.child.start_forkserver). It makes the forkserver die with the worker; each task
child dies with the forkserver (worker.child.child_main), so none outlives the worker."""

from worker.child import die_with_parent

die_with_parent()

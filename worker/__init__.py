"""The worker service: consume task_queue with fair dispatch and run registered tasks."""

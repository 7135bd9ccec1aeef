"""`warren` (or `python -m warren.admin`): the operator's toolbox.

    warren status [--watch]                       queues and live workers, one screen
    warren dead list|show|requeue|purge            parked tasks: why, and put them right
    warren events [--type T] [--worker W]          follow the task events

Only AMQP_URL is needed (TASK_QUEUE, RPC_QUEUE and EVENTS_EXCHANGE as the services use
them); `--json` everywhere for scripts. Modules: status.py (what `status` reads and
shows), dead.py (the parked queue), events.py (following events), cli.py (commands).
"""

"""Indexes the retention pruner (db.retention) deletes by, so that no pass ever scans a
large table: a flow run's children are found through their parent's id, never by an
anti-join against the parent table.

Already indexed before this migration: task_run (flow_run_id, …), task_run_state
(task_run_id), flow_run_state (flow_run_id, timestamp), log (flow_run_id, timestamp),
artifact (flow_run_id), flow_run_input (flow_run_id, key), event (occurred) and
(resource_id). Added here:

- flow_run (end_time, id) for the terminal runs past the cut-off, oldest first (partial:
  runs that have not ended have no end_time);
- log (task_run_id) and artifact (task_run_id) for the children of a run's task runs
  (partial: flow-level logs and artifacts have none);
- notification (status, updated) for deliveries settled before the cut-off.

The worker table is small (one row per worker process) and is not indexed for this.
"""

INDEXES = [
    ("ix_flow_run_end_time", "flow_run", "(end_time, id) WHERE end_time IS NOT NULL"),
    ("ix_log_task_run_id", "log", "(task_run_id) WHERE task_run_id IS NOT NULL"),
    ("ix_artifact_task_run_id", "artifact", "(task_run_id) WHERE task_run_id IS NOT NULL"),
    ("ix_notification_status_updated", "notification", "(status, updated)"),
]


def migrate(migrator, database, fake=False):
    for name, table, columns in INDEXES:
        migrator.sql(f"CREATE INDEX IF NOT EXISTS {name} ON {table} {columns}")


def rollback(migrator, database, fake=False):
    for name, _table, _columns in INDEXES:
        migrator.sql(f"DROP INDEX IF EXISTS {name}")

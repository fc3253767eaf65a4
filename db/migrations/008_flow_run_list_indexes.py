"""Indexes for the runs of one flow or one deployment, newest first: the console's /runs?flow=
and ?deployment= pages and the flow / deployment pages' recent runs, and the API's
/flow_runs/filter with a flow_id or deployment_id filter in the default sort.

ORDER BY expected_start_time DESC, id DESC for one flow_id is a backward range scan of
(flow_id, expected_start_time, id), however many runs the flow has; with only the flow_id
index it reads and sorts all of the flow's runs. The same for deployment_id.
"""

INDEXES = [
    ("ix_flow_run_flow_expected", "flow_run", "(flow_id, expected_start_time, id)"),
    ("ix_flow_run_deployment_expected", "flow_run", "(deployment_id, expected_start_time, id)"),
]


def migrate(migrator, database, fake=False):
    for name, table, columns in INDEXES:
        migrator.sql(f"CREATE INDEX IF NOT EXISTS {name} ON {table} {columns}")


def rollback(migrator, database, fake=False):
    for name, _table, _columns in INDEXES:
        migrator.sql(f"DROP INDEX IF EXISTS {name}")

# Routine tasks. `pip install rust-just` provides `just`.
set shell := ["bash", "-euo", "pipefail", "-c"]

venv := ".venv"
py := venv + "/bin/python"

# --- core ---

# Install the package with the test extra into .venv
install:
    python3.11 -m venv {{venv}}
    {{venv}}/bin/pip install -e '.[test]'

# Serve the API on http://127.0.0.1:4200/api (SQLite in ~/.appliance unless APPLIANCE_DATABASE_URL is set)
serve *ARGS:
    {{venv}}/bin/appliance serve {{ARGS}}

# The whole suite (SQLite and the PostgreSQL on 127.0.0.1:5432), as CI runs it
test *ARGS:
    {{py}} -m pytest -q {{ARGS}}

# Ruff over the tree
lint:
    {{venv}}/bin/ruff check .

# Apply migrations (default: all; REV = a revision name)
db-upgrade REV="head":
    {{venv}}/bin/appliance database upgrade -y -r {{REV}}

# Revert migrations (REV = -1, a revision name, or base)
db-downgrade REV="-1":
    {{venv}}/bin/appliance database downgrade -y -r {{REV}}

# Drop everything and reapply the schema
db-reset:
    {{venv}}/bin/appliance database reset -y

# Retention on demand (README "Retention"): ARGS e.g. `--dry-run`, `--kind flow_runs --older-than 90d`
db-prune *ARGS:
    {{venv}}/bin/appliance database prune {{ARGS}}

# Current revision and history
db-status:
    {{venv}}/bin/appliance database current
    {{venv}}/bin/appliance database history

# --- ops ---

image_version := `sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml`

# Build the image (needs a Docker engine), tagged as the chart expects it
image TAG=("ghcr.io/example/appliance:" + image_version):
    docker build --build-arg VERSION={{image_version}} -t {{TAG}} .

# Lint the Dockerfile: hadolint fails on warnings, a missing HEALTHCHECK among them (.hadolint.yaml)
image-lint:
    {{venv}}/bin/hadolint --config .hadolint.yaml Dockerfile

# `helm lint --strict` for each database mode, and the strict values schema (Helm 4's engine, offline)
chart-lint:
    {{py}} -m pytest -q tests/ops/test_chart.py -k "lint or schema"

# Render the chart for each database mode and check the manifests
chart-test:
    {{py}} -m pytest -q tests/ops/test_chart.py

# yamllint and ansible-lint (profile production, offline) over ops/
playbooks-lint:
    {{venv}}/bin/yamllint -c ops/.yamllint.yml ops
    cd ops && ../{{venv}}/bin/ansible-lint

# The playbooks for real against localhost and the PostgreSQL on 127.0.0.1:5432 (a throw-away database)
playbooks-test:
    {{py}} -m pytest -q tests/ops/test_playbooks.py

# --- bench ---

# ARGS: `--backend postgres`, `--suites core,lease`, `--quick` (a smoke run). About 30 minutes.
# The appliance and the real Prefect 3.8.8 server side by side in one run: one table of ratios and targets
bench *ARGS:
    {{py}} bench/run.py {{ARGS}}

# The same on fresh PostgreSQL databases (127.0.0.1:5432)
bench-postgres *ARGS:
    {{py}} bench/run.py --backend postgres {{ARGS}}

# Lease acquire+release cycles/s against URL (any Prefect 3 API), 16 and 50 clients, limit 5
bench-leases URL:
    {{py}} bench/lease_bench.py --url {{URL}} -c 16 --cycles 400 --hold 0.01
    {{py}} bench/lease_bench.py --url {{URL}} -c 50 --cycles 400 --hold 0.01

# Notification latency/throughput against URL (the appliance needs `appliance notifier` running)
bench-notify URL:
    {{py}} bench/notify_compare.py --url {{URL}} --notifications 1000

# Scheduler, worker-polling and worker-start benchmarks against URL (any Prefect 3 API);
# one JSON line each. E.g. `just bench-scheduler http://127.0.0.1:4200/api`
bench-scheduler URL LABEL="":
    {{py}} bench/scheduler_bench.py scheduler --url {{URL}} --deployments 1000 --label "{{LABEL}}"
    {{py}} bench/scheduler_bench.py poll --url {{URL}} --runs 100000 --label "{{LABEL}}"
    {{py}} bench/scheduler_bench.py worker --url {{URL}} --runs 10 --label "{{LABEL}}"

# The console's speed on a big database beside Prefect's UI, and the API with the console on/off
# (bench/ui_bench.py; ARGS e.g. `--parts pages --runs 20000 --logs 200000`). SQLite: 100k runs, 1M logs
bench-ui *ARGS:
    {{py}} bench/ui_bench.py --backend sqlite {{ARGS}}

# The same on PostgreSQL: 1M flow runs and 10M log lines seeded in the database (kept for the next run)
bench-ui-postgres *ARGS:
    {{py}} bench/ui_bench.py --backend postgres {{ARGS}}

# Retention at scale on PostgreSQL (bench/retention_bench.py): 1M runs and 50M log lines seeded in
# the database, 10 % pruned while W1 and W4 run; ARGS e.g. `--runs 100000 --logs 5000000`. 15-30 minutes
bench-retention *ARGS:
    {{py}} bench/retention_bench.py {{ARGS}}

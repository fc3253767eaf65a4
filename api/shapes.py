"""Rows (dicts from Peewee) -> the JSON objects Prefect's API returns."""

from __future__ import annotations

import datetime as dt

from db.fields import utcnow
from db.states import TERMINAL, iso

FLOW_RUN_POLICY_KEYS = ("max_retries", "retry_delay_seconds", "retries", "retry_delay", "pause_keys", "resuming", "retry_type")


def flow(row: dict) -> dict:
    return {
        "id": row["id"],
        "created": iso(row["created"]),
        "updated": iso(row["updated"]),
        "name": row["name"],
        "tags": row["tags"] or [],
        "labels": row["labels"] or {},
    }


def _seconds(delta: dt.timedelta) -> float:
    return round(delta.total_seconds(), 6)


def _run_timing(row: dict, now: dt.datetime) -> tuple[float, float]:
    total = row["total_run_time"] or 0.0
    estimated_run_time = total
    if row["state_type"] == "RUNNING" and row["state_timestamp"] is not None:
        estimated_run_time = total + max(_seconds(now - row["state_timestamp"]), 0.0)
    start, expected = row["start_time"], row["expected_start_time"]
    delta = 0.0
    if start is not None and expected is not None:
        if start > expected:
            delta = _seconds(start - expected)
    elif start is None and expected is not None and expected < now and row["state_type"] not in TERMINAL:
        delta = _seconds(now - expected)
    return round(estimated_run_time, 6), delta


def flow_run(row: dict, now: dt.datetime | None = None) -> dict:
    now = now or utcnow()
    estimated_run_time, start_delta = _run_timing(row, now)
    policy = row["empirical_policy"] or {}
    return {
        "id": row["id"],
        "created": iso(row["created"]),
        "updated": iso(row["updated"]),
        "name": row["name"],
        "flow_id": row["flow_id"],
        "state_id": row["state_id"],
        "deployment_id": row["deployment_id"],
        "deployment_version": row["deployment_version"],
        "work_queue_id": row["work_queue_id"],
        "work_queue_name": row["work_queue_name"],
        "flow_version": row["flow_version"],
        "parameters": row["parameters"],
        "idempotency_key": row["idempotency_key"],
        "context": row["context"],
        "empirical_policy": {
            "max_retries": policy.get("max_retries", 0),
            "retry_delay_seconds": float(policy.get("retry_delay_seconds") or 0.0),
            "retries": policy.get("retries"),
            "retry_delay": policy.get("retry_delay"),
            "pause_keys": policy.get("pause_keys") or [],
            "resuming": bool(policy.get("resuming")),
            "retry_type": policy.get("retry_type"),
        },
        "tags": row["tags"] or [],
        "labels": row["labels"] or {},
        "parent_task_run_id": row["parent_task_run_id"],
        "state_type": row["state_type"],
        "state_name": row["state_name"],
        "run_count": row["run_count"],
        "expected_start_time": iso(row["expected_start_time"]),
        "next_scheduled_start_time": iso(row["next_scheduled_start_time"]),
        "start_time": iso(row["start_time"]),
        "end_time": iso(row["end_time"]),
        "total_run_time": round(row["total_run_time"] or 0.0, 6),
        "estimated_run_time": estimated_run_time,
        "estimated_start_time_delta": start_delta,
        "auto_scheduled": bool(row["auto_scheduled"]),
        "infrastructure_document_id": row["infrastructure_document_id"],
        "infrastructure_pid": row["infrastructure_pid"],
        "created_by": row["created_by"],
        "work_pool_id": row["work_pool_id"],
        "work_pool_name": row["work_pool_name"],
        "state": row["state"],
        "job_variables": row["job_variables"] if row["job_variables"] is not None else {},
    }


def task_run(row: dict, now: dt.datetime | None = None) -> dict:
    now = now or utcnow()
    estimated_run_time, start_delta = _run_timing(row, now)
    return {
        "id": row["id"],
        "created": iso(row["created"]),
        "updated": iso(row["updated"]),
        "name": row["name"],
        "flow_run_id": row["flow_run_id"],
        "task_key": row["task_key"],
        "dynamic_key": row["dynamic_key"],
        "cache_key": row["cache_key"],
        "cache_expiration": iso(row["cache_expiration"]),
        "task_version": row["task_version"],
        "empirical_policy": row["empirical_policy"] or {},
        "tags": row["tags"] or [],
        "labels": row["labels"] or {},
        "state_id": row["state_id"],
        "task_inputs": row["task_inputs"] or {},
        "state_type": row["state_type"],
        "state_name": row["state_name"],
        "run_count": row["run_count"],
        "flow_run_run_count": row["flow_run_run_count"],
        "expected_start_time": iso(row["expected_start_time"]),
        "next_scheduled_start_time": iso(row["next_scheduled_start_time"]),
        "start_time": iso(row["start_time"]),
        "end_time": iso(row["end_time"]),
        "total_run_time": round(row["total_run_time"] or 0.0, 6),
        "estimated_run_time": estimated_run_time,
        "estimated_start_time_delta": start_delta,
        "state": row["state"],
    }


def state(row: dict) -> dict:
    return {
        "id": row["id"],
        "type": row["type"],
        "name": row["name"],
        "timestamp": iso(row["timestamp"]),
        "message": row["message"],
        "data": row["data"],
        "state_details": row["state_details"],
    }


def log(row: dict) -> dict:
    return {
        "id": row["id"],
        "created": iso(row["created"]),
        "updated": iso(row["created"]),
        "name": row["name"],
        "level": row["level"],
        "message": row["message"],
        "timestamp": iso(row["timestamp"]),
        "flow_run_id": row["flow_run_id"],
        "task_run_id": row["task_run_id"],
    }


def artifact(row: dict) -> dict:
    return {
        "id": row["id"],
        "created": iso(row["created"]),
        "updated": iso(row["updated"]),
        "key": row["key"],
        "type": row["type"],
        "description": row["description"],
        "data": row["data"],
        "metadata_": row["metadata_"],
        "flow_run_id": row["flow_run_id"],
        "task_run_id": row["task_run_id"],
    }


def artifact_collection(row: dict) -> dict:
    out = artifact(row)
    out["latest_id"] = row["latest_id"]
    return out

"""Request bodies, validated with pydantic (the error shape Prefect's clients print).

Unknown keys are ignored, as the real server effectively does for several bodies the
clients send. Values are normalised for the domain functions: UUIDs as canonical
strings, datetimes as naive UTC.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)

from db.states import STATE_TYPES, parse_datetime


def _to_dt(value):
    if value is None or isinstance(value, dt.datetime):
        return parse_datetime(value)
    if not isinstance(value, str):
        raise ValueError("Input should be a valid datetime")
    try:
        return parse_datetime(value)
    except ValueError:
        raise ValueError("Input should be a valid datetime") from None


UTCDatetime = Annotated[dt.datetime, BeforeValidator(_to_dt)]
UUIDStr = Annotated[uuid.UUID, PlainSerializer(str, return_type=str)]
StateType = Literal[STATE_TYPES]  # type: ignore[valid-type]

BANNED_NAME_CHARS = re.compile(r"[/%&><]")


def _check_name(value: str) -> str:
    if BANNED_NAME_CHARS.search(value):
        raise ValueError("Name cannot contain any of these characters: / % & > <")
    return value


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore")

    def values(self, **kwargs) -> dict:
        """The fields the client set, JSON-ready (UUIDs as strings)."""
        return self.model_dump(mode="python", exclude_unset=True, **kwargs)


def uuid_str(value) -> str | None:
    return None if value is None else str(value)


class FlowCreate(Body):
    name: Annotated[str, Field(min_length=1, max_length=5000)]
    tags: list[str] = Field(default_factory=list)
    labels: dict[str, Any] | None = None

    _name = field_validator("name")(_check_name)


class FlowUpdate(Body):
    tags: list[str] | None = None
    labels: dict[str, Any] | None = None


class StateCreate(Body):
    type: StateType
    name: str | None = None
    message: str | None = None
    data: Any = None
    state_details: dict[str, Any] | None = None

    @field_validator("state_details")
    @classmethod
    def _details(cls, value):
        value = dict(value or {})
        for key in ("scheduled_time", "pause_timeout", "cache_expiration"):
            if value.get(key) is not None:
                try:
                    value[key] = parse_datetime(value[key])
                except (ValueError, TypeError):
                    raise ValueError(f"state_details.{key}: Input should be a valid datetime") from None
        return value

    def proposal(self) -> dict:
        return {
            "type": self.type,
            "name": self.name,
            "message": self.message,
            "data": self.data,
            "state_details": self.state_details or {},
        }


class SetState(Body):
    state: StateCreate
    force: bool = False


def _deprecated_retry_fields(values):
    """Prefect fills ``retries``/``retry_delay`` from the deprecated ``max_retries``/
    ``retry_delay_seconds`` when only those are given (older clients)."""
    if isinstance(values, dict):
        values = dict(values)
        if not values.get("retries") and values.get("max_retries", 0) not in (0, None):
            values["retries"] = values["max_retries"]
        if not values.get("retry_delay") and values.get("retry_delay_seconds", 0) not in (0, None):
            values["retry_delay"] = values["retry_delay_seconds"]
    return values


class FlowRunPolicy(Body):
    _deprecated = model_validator(mode="before")(_deprecated_retry_fields)

    max_retries: int | None = None
    retry_delay_seconds: float | None = None
    retries: int | None = None
    retry_delay: int | float | None = None
    pause_keys: list[str] | None = None
    resuming: bool | None = None
    retry_type: Literal["in_process", "reschedule"] | None = None


class FlowRunCreate(Body):
    state: StateCreate | None = None
    name: Annotated[str, Field(max_length=5000)] | None = None
    flow_id: UUIDStr
    flow_version: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    parent_task_run_id: UUIDStr | None = None
    infrastructure_document_id: UUIDStr | None = None
    empirical_policy: FlowRunPolicy | None = None
    tags: list[str] = Field(default_factory=list)
    labels: dict[str, Any] | None = None
    idempotency_key: str | None = None
    work_pool_name: str | None = None
    work_queue_name: str | None = None
    job_variables: dict[str, Any] | None = None
    deployment_id: UUIDStr | None = None

    def domain(self) -> dict:
        data = self.model_dump(exclude={"state", "empirical_policy"})
        for key in ("flow_id", "parent_task_run_id", "infrastructure_document_id", "deployment_id"):
            data[key] = uuid_str(data[key])
        data["state"] = self.state.proposal() if self.state else None
        if self.empirical_policy is not None:
            data["empirical_policy"] = self.empirical_policy.model_dump(exclude_unset=True)
        return data


class FlowRunUpdate(Body):
    name: str | None = None
    flow_version: str | None = None
    parameters: dict[str, Any] | None = None
    empirical_policy: FlowRunPolicy | None = None
    tags: list[str] | None = None
    infrastructure_pid: str | int | None = None
    job_variables: dict[str, Any] | None = None

    def domain(self) -> dict:
        data = self.model_dump(exclude_unset=True, exclude={"empirical_policy"})
        if "infrastructure_pid" in data and data["infrastructure_pid"] is not None:
            data["infrastructure_pid"] = str(data["infrastructure_pid"])
        if "empirical_policy" in self.model_fields_set and self.empirical_policy is not None:
            data["empirical_policy"] = self.empirical_policy.model_dump(exclude_unset=True)
        return data


class TaskRunPolicy(Body):
    _deprecated = model_validator(mode="before")(_deprecated_retry_fields)

    max_retries: int | None = None
    retry_delay_seconds: float | None = None
    retries: int | None = None
    retry_delay: int | float | list[int | float] | None = None
    retry_jitter_factor: float | None = None


class TaskRunCreate(Body):
    id: UUIDStr | None = None
    state: StateCreate | None = None
    name: str | None = None
    flow_run_id: UUIDStr | None = None
    task_key: Annotated[str, Field(min_length=1)]
    dynamic_key: str
    cache_key: str | None = None
    cache_expiration: UTCDatetime | None = None
    task_version: str | None = None
    empirical_policy: TaskRunPolicy | None = None
    tags: list[str] = Field(default_factory=list)
    labels: dict[str, Any] | None = None
    task_inputs: dict[str, Any] = Field(default_factory=dict)

    def domain(self) -> dict:
        data = self.model_dump(exclude={"state", "empirical_policy"})
        data["id"] = uuid_str(data["id"])
        data["flow_run_id"] = uuid_str(data["flow_run_id"])
        data["state"] = self.state.proposal() if self.state else None
        if self.empirical_policy is not None:
            data["empirical_policy"] = self.empirical_policy.model_dump(exclude_unset=True)
        return data


class TaskRunUpdate(Body):
    name: str | None = None


ARTIFACT_KEY = re.compile(r"^[a-z0-9-]+$")
MAX_METADATA_VALUE = 500


def _truncate_metadata(value: dict | None) -> dict | None:
    """Prefect keeps artifact metadata values to 500 characters (+ "...") instead of refusing."""
    if value is None:
        return None
    return {k: v if len(v) <= MAX_METADATA_VALUE else v[:MAX_METADATA_VALUE] + "..." for k, v in value.items()}


class ArtifactCreate(Body):
    key: str | None = None
    type: str | None = None
    description: str | None = None
    data: Any = None
    metadata_: dict[str, str] | None = None
    flow_run_id: UUIDStr | None = None
    task_run_id: UUIDStr | None = None

    _metadata = field_validator("metadata_")(_truncate_metadata)

    @field_validator("key")
    @classmethod
    def _key(cls, value):
        if value is not None and not ARTIFACT_KEY.match(value):
            raise ValueError("Artifact key must only contain lowercase letters, numbers, and dashes.")
        return value

    def domain(self) -> dict:
        data = self.model_dump()
        data["flow_run_id"] = uuid_str(data["flow_run_id"])
        data["task_run_id"] = uuid_str(data["task_run_id"])
        return data


class ArtifactUpdate(Body):
    data: Any = None
    description: str | None = None
    metadata_: dict[str, str] | None = None

    _metadata = field_validator("metadata_")(_truncate_metadata)


MAX_INTERVAL_SECONDS = dt.timedelta.max.total_seconds()


class HistoryRequest(Body):
    history_start: UTCDatetime
    history_end: UTCDatetime
    history_interval_seconds: float | None = Field(None, gt=0)
    history_interval: float | str | None = None

    def interval(self) -> float:
        value = self.history_interval_seconds
        if value is None and self.history_interval is not None:
            value = _duration_seconds(self.history_interval)
        if value is None:
            raise ValueError("history_interval_seconds is required")
        if not value < MAX_INTERVAL_SECONDS:
            raise ValueError("History interval is too large.")
        return float(value)


def _duration_seconds(value) -> float:
    if isinstance(value, int | float):
        return float(value)
    match = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:([\d.]+)S)?)?", value)
    if not match:
        raise ValueError(f"invalid duration {value!r}")
    d, h, m, s = match.groups()
    return int(d or 0) * 86400 + int(h or 0) * 3600 + int(m or 0) * 60 + float(s or 0)

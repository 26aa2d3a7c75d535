from pilotlab.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateTokenRequest(_message.Message):
    __slots__ = ("role", "expires_in_s", "max_uses")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_S_FIELD_NUMBER: _ClassVar[int]
    MAX_USES_FIELD_NUMBER: _ClassVar[int]
    role: str
    expires_in_s: int
    max_uses: int
    def __init__(self, role: _Optional[str] = ..., expires_in_s: _Optional[int] = ..., max_uses: _Optional[int] = ...) -> None: ...

class CreateTokenResponse(_message.Message):
    __slots__ = ("token", "role", "id")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    token: str
    role: str
    id: str
    def __init__(self, token: _Optional[str] = ..., role: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class ListTokensRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TokenInfo(_message.Message):
    __slots__ = ("id", "role", "created_ms", "expires_ms", "revoked_ms", "uses", "max_uses", "device", "issued_by")
    ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CREATED_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_MS_FIELD_NUMBER: _ClassVar[int]
    REVOKED_MS_FIELD_NUMBER: _ClassVar[int]
    USES_FIELD_NUMBER: _ClassVar[int]
    MAX_USES_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    ISSUED_BY_FIELD_NUMBER: _ClassVar[int]
    id: str
    role: str
    created_ms: int
    expires_ms: int
    revoked_ms: int
    uses: int
    max_uses: int
    device: str
    issued_by: str
    def __init__(self, id: _Optional[str] = ..., role: _Optional[str] = ..., created_ms: _Optional[int] = ..., expires_ms: _Optional[int] = ..., revoked_ms: _Optional[int] = ..., uses: _Optional[int] = ..., max_uses: _Optional[int] = ..., device: _Optional[str] = ..., issued_by: _Optional[str] = ...) -> None: ...

class ListTokensResponse(_message.Message):
    __slots__ = ("tokens",)
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedCompositeFieldContainer[TokenInfo]
    def __init__(self, tokens: _Optional[_Iterable[_Union[TokenInfo, _Mapping]]] = ...) -> None: ...

class RevokeTokenRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListDevicesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Device(_message.Message):
    __slots__ = ("id", "name", "device_class", "status", "region", "tags", "capabilities", "last_seen_unix_ms", "state", "infra_errors")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DEVICE_CLASS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    INFRA_ERRORS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    device_class: str
    status: str
    region: str
    tags: _containers.ScalarMap[str, str]
    capabilities: _common_pb2.Capabilities
    last_seen_unix_ms: int
    state: str
    infra_errors: int
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., device_class: _Optional[str] = ..., status: _Optional[str] = ..., region: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., capabilities: _Optional[_Union[_common_pb2.Capabilities, _Mapping]] = ..., last_seen_unix_ms: _Optional[int] = ..., state: _Optional[str] = ..., infra_errors: _Optional[int] = ...) -> None: ...

class SetDeviceStateRequest(_message.Message):
    __slots__ = ("name", "state")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: str
    def __init__(self, name: _Optional[str] = ..., state: _Optional[str] = ...) -> None: ...

class ListDevicesResponse(_message.Message):
    __slots__ = ("devices",)
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[Device]
    def __init__(self, devices: _Optional[_Iterable[_Union[Device, _Mapping]]] = ...) -> None: ...

class ListSuitesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SuiteInfo(_message.Message):
    __slots__ = ("id", "version", "title", "digest", "suite_json")
    ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SUITE_JSON_FIELD_NUMBER: _ClassVar[int]
    id: str
    version: str
    title: str
    digest: str
    suite_json: str
    def __init__(self, id: _Optional[str] = ..., version: _Optional[str] = ..., title: _Optional[str] = ..., digest: _Optional[str] = ..., suite_json: _Optional[str] = ...) -> None: ...

class ListSuitesResponse(_message.Message):
    __slots__ = ("suites",)
    SUITES_FIELD_NUMBER: _ClassVar[int]
    suites: _containers.RepeatedCompositeFieldContainer[SuiteInfo]
    def __init__(self, suites: _Optional[_Iterable[_Union[SuiteInfo, _Mapping]]] = ...) -> None: ...

class GetSuiteRequest(_message.Message):
    __slots__ = ("id", "version")
    ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    id: str
    version: str
    def __init__(self, id: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class SubmitRunRequest(_message.Message):
    __slots__ = ("suite_id", "suite_version", "device", "select", "priority", "any_device", "queue_timeout_s")
    SUITE_ID_FIELD_NUMBER: _ClassVar[int]
    SUITE_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    SELECT_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    ANY_DEVICE_FIELD_NUMBER: _ClassVar[int]
    QUEUE_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    suite_id: str
    suite_version: str
    device: str
    select: str
    priority: int
    any_device: bool
    queue_timeout_s: float
    def __init__(self, suite_id: _Optional[str] = ..., suite_version: _Optional[str] = ..., device: _Optional[str] = ..., select: _Optional[str] = ..., priority: _Optional[int] = ..., any_device: _Optional[bool] = ..., queue_timeout_s: _Optional[float] = ...) -> None: ...

class Attempt(_message.Message):
    __slots__ = ("id", "number", "device", "status", "outcome", "reason", "started_unix_ms", "finished_unix_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STARTED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    FINISHED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    id: str
    number: int
    device: str
    status: _common_pb2.Status
    outcome: str
    reason: str
    started_unix_ms: int
    finished_unix_ms: int
    def __init__(self, id: _Optional[str] = ..., number: _Optional[int] = ..., device: _Optional[str] = ..., status: _Optional[_Union[_common_pb2.Status, str]] = ..., outcome: _Optional[str] = ..., reason: _Optional[str] = ..., started_unix_ms: _Optional[int] = ..., finished_unix_ms: _Optional[int] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("id", "name", "status", "verdict", "device", "attempts", "phase", "progress", "metrics_json", "reason", "attempt_history")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    METRICS_JSON_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_HISTORY_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    status: _common_pb2.Status
    verdict: _common_pb2.Verdict
    device: str
    attempts: int
    phase: str
    progress: float
    metrics_json: str
    reason: str
    attempt_history: _containers.RepeatedCompositeFieldContainer[Attempt]
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., status: _Optional[_Union[_common_pb2.Status, str]] = ..., verdict: _Optional[_Union[_common_pb2.Verdict, str]] = ..., device: _Optional[str] = ..., attempts: _Optional[int] = ..., phase: _Optional[str] = ..., progress: _Optional[float] = ..., metrics_json: _Optional[str] = ..., reason: _Optional[str] = ..., attempt_history: _Optional[_Iterable[_Union[Attempt, _Mapping]]] = ...) -> None: ...

class Run(_message.Message):
    __slots__ = ("id", "suite_id", "suite_version", "suite_digest", "status", "verdict", "priority", "submitted_unix_ms", "finished_unix_ms", "tasks", "reason", "submitted_by", "kind")
    ID_FIELD_NUMBER: _ClassVar[int]
    SUITE_ID_FIELD_NUMBER: _ClassVar[int]
    SUITE_VERSION_FIELD_NUMBER: _ClassVar[int]
    SUITE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    FINISHED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_BY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    id: str
    suite_id: str
    suite_version: str
    suite_digest: str
    status: _common_pb2.Status
    verdict: _common_pb2.Verdict
    priority: int
    submitted_unix_ms: int
    finished_unix_ms: int
    tasks: _containers.RepeatedCompositeFieldContainer[Task]
    reason: str
    submitted_by: str
    kind: str
    def __init__(self, id: _Optional[str] = ..., suite_id: _Optional[str] = ..., suite_version: _Optional[str] = ..., suite_digest: _Optional[str] = ..., status: _Optional[_Union[_common_pb2.Status, str]] = ..., verdict: _Optional[_Union[_common_pb2.Verdict, str]] = ..., priority: _Optional[int] = ..., submitted_unix_ms: _Optional[int] = ..., finished_unix_ms: _Optional[int] = ..., tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ..., reason: _Optional[str] = ..., submitted_by: _Optional[str] = ..., kind: _Optional[str] = ...) -> None: ...

class GetRunRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListRunsRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class ListRunsResponse(_message.Message):
    __slots__ = ("runs",)
    RUNS_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[Run]
    def __init__(self, runs: _Optional[_Iterable[_Union[Run, _Mapping]]] = ...) -> None: ...

class CancelRunRequest(_message.Message):
    __slots__ = ("id", "reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    reason: str
    def __init__(self, id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class GetReportRequest(_message.Message):
    __slots__ = ("run_id", "amend_reason")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    AMEND_REASON_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    amend_reason: str
    def __init__(self, run_id: _Optional[str] = ..., amend_reason: _Optional[str] = ...) -> None: ...

class ReportChunk(_message.Message):
    __slots__ = ("path", "data", "last", "bundle_bytes")
    PATH_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    path: str
    data: bytes
    last: bool
    bundle_bytes: int
    def __init__(self, path: _Optional[str] = ..., data: _Optional[bytes] = ..., last: _Optional[bool] = ..., bundle_bytes: _Optional[int] = ...) -> None: ...

class GetLabInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LabInfo(_message.Message):
    __slots__ = ("name", "version", "public_key_pem")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_PEM_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    public_key_pem: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., public_key_pem: _Optional[str] = ...) -> None: ...

class ListAuditRequest(_message.Message):
    __slots__ = ("target", "limit")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    target: str
    limit: int
    def __init__(self, target: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class AuditEntry(_message.Message):
    __slots__ = ("time_ms", "actor", "role", "action", "target", "detail")
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    time_ms: int
    actor: str
    role: str
    action: str
    target: str
    detail: str
    def __init__(self, time_ms: _Optional[int] = ..., actor: _Optional[str] = ..., role: _Optional[str] = ..., action: _Optional[str] = ..., target: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class ListAuditResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[AuditEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[AuditEntry, _Mapping]]] = ...) -> None: ...

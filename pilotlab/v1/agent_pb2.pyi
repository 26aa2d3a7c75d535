from pilotlab.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTCOME_UNSPECIFIED: _ClassVar[Outcome]
    OUTCOME_OK: _ClassVar[Outcome]
    OUTCOME_REFUSED: _ClassVar[Outcome]
    OUTCOME_ERROR: _ClassVar[Outcome]
    OUTCOME_CANCELLED: _ClassVar[Outcome]
    OUTCOME_FAULT: _ClassVar[Outcome]
OUTCOME_UNSPECIFIED: Outcome
OUTCOME_OK: Outcome
OUTCOME_REFUSED: Outcome
OUTCOME_ERROR: Outcome
OUTCOME_CANCELLED: Outcome
OUTCOME_FAULT: Outcome

class EnrolRequest(_message.Message):
    __slots__ = ("name", "device_class", "tags", "region", "capabilities", "public_key")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DEVICE_CLASS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    name: str
    device_class: str
    tags: _containers.ScalarMap[str, str]
    region: str
    capabilities: _common_pb2.Capabilities
    public_key: bytes
    def __init__(self, name: _Optional[str] = ..., device_class: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., region: _Optional[str] = ..., capabilities: _Optional[_Union[_common_pb2.Capabilities, _Mapping]] = ..., public_key: _Optional[bytes] = ...) -> None: ...

class EnrolResponse(_message.Message):
    __slots__ = ("device_id", "device_token")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    device_token: str
    def __init__(self, device_id: _Optional[str] = ..., device_token: _Optional[str] = ...) -> None: ...

class AgentMessage(_message.Message):
    __slots__ = ("hello", "heartbeat", "progress", "results", "finished", "result_batches")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    RESULT_BATCHES_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    heartbeat: Heartbeat
    progress: TaskProgress
    results: ResultBatch
    finished: TaskFinished
    result_batches: ResultBatches
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., progress: _Optional[_Union[TaskProgress, _Mapping]] = ..., results: _Optional[_Union[ResultBatch, _Mapping]] = ..., finished: _Optional[_Union[TaskFinished, _Mapping]] = ..., result_batches: _Optional[_Union[ResultBatches, _Mapping]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("capabilities", "running_attempt_ids", "features")
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    RUNNING_ATTEMPT_IDS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    capabilities: _common_pb2.Capabilities
    running_attempt_ids: _containers.RepeatedScalarFieldContainer[str]
    features: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, capabilities: _Optional[_Union[_common_pb2.Capabilities, _Mapping]] = ..., running_attempt_ids: _Optional[_Iterable[str]] = ..., features: _Optional[_Iterable[str]] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("sent_unix_ms", "running_attempt_ids")
    SENT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_ATTEMPT_IDS_FIELD_NUMBER: _ClassVar[int]
    sent_unix_ms: int
    running_attempt_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, sent_unix_ms: _Optional[int] = ..., running_attempt_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class TaskProgress(_message.Message):
    __slots__ = ("attempt_id", "phase", "fraction", "message")
    ATTEMPT_ID_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    attempt_id: str
    phase: str
    fraction: float
    message: str
    def __init__(self, attempt_id: _Optional[str] = ..., phase: _Optional[str] = ..., fraction: _Optional[float] = ..., message: _Optional[str] = ...) -> None: ...

class ResultBatch(_message.Message):
    __slots__ = ("attempt_id", "seq", "kind", "index", "sample_index", "t_ns", "value", "signature", "aux", "fvalue")
    ATTEMPT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_INDEX_FIELD_NUMBER: _ClassVar[int]
    T_NS_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    AUX_FIELD_NUMBER: _ClassVar[int]
    FVALUE_FIELD_NUMBER: _ClassVar[int]
    attempt_id: str
    seq: int
    kind: str
    index: _containers.RepeatedScalarFieldContainer[int]
    sample_index: _containers.RepeatedScalarFieldContainer[int]
    t_ns: _containers.RepeatedScalarFieldContainer[int]
    value: _containers.RepeatedScalarFieldContainer[int]
    signature: bytes
    aux: _containers.RepeatedScalarFieldContainer[int]
    fvalue: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, attempt_id: _Optional[str] = ..., seq: _Optional[int] = ..., kind: _Optional[str] = ..., index: _Optional[_Iterable[int]] = ..., sample_index: _Optional[_Iterable[int]] = ..., t_ns: _Optional[_Iterable[int]] = ..., value: _Optional[_Iterable[int]] = ..., signature: _Optional[bytes] = ..., aux: _Optional[_Iterable[int]] = ..., fvalue: _Optional[_Iterable[float]] = ...) -> None: ...

class ResultBatches(_message.Message):
    __slots__ = ("batches",)
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    batches: _containers.RepeatedCompositeFieldContainer[ResultBatch]
    def __init__(self, batches: _Optional[_Iterable[_Union[ResultBatch, _Mapping]]] = ...) -> None: ...

class TaskFinished(_message.Message):
    __slots__ = ("attempt_id", "outcome", "reason", "batches", "effective_settings_json", "environment_json", "execution_provider", "providers_used", "phases_json", "observations_json")
    ATTEMPT_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_SETTINGS_JSON_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_JSON_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    PROVIDERS_USED_FIELD_NUMBER: _ClassVar[int]
    PHASES_JSON_FIELD_NUMBER: _ClassVar[int]
    OBSERVATIONS_JSON_FIELD_NUMBER: _ClassVar[int]
    attempt_id: str
    outcome: Outcome
    reason: str
    batches: int
    effective_settings_json: str
    environment_json: str
    execution_provider: str
    providers_used: _containers.RepeatedScalarFieldContainer[str]
    phases_json: str
    observations_json: str
    def __init__(self, attempt_id: _Optional[str] = ..., outcome: _Optional[_Union[Outcome, str]] = ..., reason: _Optional[str] = ..., batches: _Optional[int] = ..., effective_settings_json: _Optional[str] = ..., environment_json: _Optional[str] = ..., execution_provider: _Optional[str] = ..., providers_used: _Optional[_Iterable[str]] = ..., phases_json: _Optional[str] = ..., observations_json: _Optional[str] = ...) -> None: ...

class LabMessage(_message.Message):
    __slots__ = ("welcome", "assignment", "cancel", "ack", "acks")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    ACKS_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    assignment: Assignment
    cancel: Cancel
    ack: Ack
    acks: Acks
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., assignment: _Optional[_Union[Assignment, _Mapping]] = ..., cancel: _Optional[_Union[Cancel, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ..., acks: _Optional[_Union[Acks, _Mapping]] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("device_id", "device_name", "heartbeat_interval_ms", "features")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    device_name: str
    heartbeat_interval_ms: int
    features: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, device_id: _Optional[str] = ..., device_name: _Optional[str] = ..., heartbeat_interval_ms: _Optional[int] = ..., features: _Optional[_Iterable[str]] = ...) -> None: ...

class Assignment(_message.Message):
    __slots__ = ("attempt_id", "task_id", "run_id", "task_name", "model", "dataset", "scenario", "settings_json", "execution_provider", "accuracy_json", "golden", "conformance_json")
    ATTEMPT_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    SCENARIO_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_JSON_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_JSON_FIELD_NUMBER: _ClassVar[int]
    GOLDEN_FIELD_NUMBER: _ClassVar[int]
    CONFORMANCE_JSON_FIELD_NUMBER: _ClassVar[int]
    attempt_id: str
    task_id: str
    run_id: str
    task_name: str
    model: _common_pb2.ArtifactRef
    dataset: _common_pb2.ArtifactRef
    scenario: str
    settings_json: str
    execution_provider: str
    accuracy_json: str
    golden: _common_pb2.ArtifactRef
    conformance_json: str
    def __init__(self, attempt_id: _Optional[str] = ..., task_id: _Optional[str] = ..., run_id: _Optional[str] = ..., task_name: _Optional[str] = ..., model: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., dataset: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., scenario: _Optional[str] = ..., settings_json: _Optional[str] = ..., execution_provider: _Optional[str] = ..., accuracy_json: _Optional[str] = ..., golden: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., conformance_json: _Optional[str] = ...) -> None: ...

class Cancel(_message.Message):
    __slots__ = ("attempt_id", "reason")
    ATTEMPT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    attempt_id: str
    reason: str
    def __init__(self, attempt_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("attempt_id", "seq", "finished", "error")
    ATTEMPT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    attempt_id: str
    seq: int
    finished: bool
    error: str
    def __init__(self, attempt_id: _Optional[str] = ..., seq: _Optional[int] = ..., finished: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class Acks(_message.Message):
    __slots__ = ("acks",)
    ACKS_FIELD_NUMBER: _ClassVar[int]
    acks: _containers.RepeatedCompositeFieldContainer[Ack]
    def __init__(self, acks: _Optional[_Iterable[_Union[Ack, _Mapping]]] = ...) -> None: ...

from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STATUS_UNSPECIFIED: _ClassVar[Status]
    STATUS_QUEUED: _ClassVar[Status]
    STATUS_RUNNING: _ClassVar[Status]
    STATUS_COMPLETED: _ClassVar[Status]
    STATUS_CANCELLED: _ClassVar[Status]
    STATUS_ERROR: _ClassVar[Status]

class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_UNSPECIFIED: _ClassVar[Verdict]
    VERDICT_PASS: _ClassVar[Verdict]
    VERDICT_FAIL: _ClassVar[Verdict]
STATUS_UNSPECIFIED: Status
STATUS_QUEUED: Status
STATUS_RUNNING: Status
STATUS_COMPLETED: Status
STATUS_CANCELLED: Status
STATUS_ERROR: Status
VERDICT_UNSPECIFIED: Verdict
VERDICT_PASS: Verdict
VERDICT_FAIL: Verdict

class EnergySensor(_message.Message):
    __slots__ = ("kind", "name", "path", "readable")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    READABLE_FIELD_NUMBER: _ClassVar[int]
    kind: str
    name: str
    path: str
    readable: bool
    def __init__(self, kind: _Optional[str] = ..., name: _Optional[str] = ..., path: _Optional[str] = ..., readable: _Optional[bool] = ...) -> None: ...

class Capabilities(_message.Message):
    __slots__ = ("os", "os_release", "arch", "cpu_model", "cpu_cores", "memory_bytes", "onnxruntime_version", "providers", "energy_sensors", "agent_version", "hostname", "slots", "python_version", "cpu_flags")
    OS_FIELD_NUMBER: _ClassVar[int]
    OS_RELEASE_FIELD_NUMBER: _ClassVar[int]
    ARCH_FIELD_NUMBER: _ClassVar[int]
    CPU_MODEL_FIELD_NUMBER: _ClassVar[int]
    CPU_CORES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    ONNXRUNTIME_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    ENERGY_SENSORS_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    CPU_FLAGS_FIELD_NUMBER: _ClassVar[int]
    os: str
    os_release: str
    arch: str
    cpu_model: str
    cpu_cores: int
    memory_bytes: int
    onnxruntime_version: str
    providers: _containers.RepeatedScalarFieldContainer[str]
    energy_sensors: _containers.RepeatedCompositeFieldContainer[EnergySensor]
    agent_version: str
    hostname: str
    slots: int
    python_version: str
    cpu_flags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, os: _Optional[str] = ..., os_release: _Optional[str] = ..., arch: _Optional[str] = ..., cpu_model: _Optional[str] = ..., cpu_cores: _Optional[int] = ..., memory_bytes: _Optional[int] = ..., onnxruntime_version: _Optional[str] = ..., providers: _Optional[_Iterable[str]] = ..., energy_sensors: _Optional[_Iterable[_Union[EnergySensor, _Mapping]]] = ..., agent_version: _Optional[str] = ..., hostname: _Optional[str] = ..., slots: _Optional[int] = ..., python_version: _Optional[str] = ..., cpu_flags: _Optional[_Iterable[str]] = ...) -> None: ...

class ArtifactRef(_message.Message):
    __slots__ = ("name", "kind", "sha256", "size")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    sha256: str
    size: int
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., sha256: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

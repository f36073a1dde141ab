"""ROS 2 message types as Cyclone DDS IDL structs, declared independently of dosod's Rust ones.

Each class carries the DDS type name a ROS 2 RMW uses (`<pkg>::msg::dds_::<Name>_`) and the
fields of the ROS IDL in order (Humble / Jazzy, vision_msgs 4.x), so plain CDR written by one
side is read by the other. `uint8[]` image data is declared as `bytes` (a sequence of octets:
the same bytes on the wire, and fast in Python).
"""
from dataclasses import dataclass, field

from cyclonedds.idl import IdlStruct
from cyclonedds.idl import types as t


@dataclass
class Time(IdlStruct, typename="builtin_interfaces::msg::dds_::Time_"):
    sec: t.int32 = 0
    nanosec: t.uint32 = 0


@dataclass
class Header(IdlStruct, typename="std_msgs::msg::dds_::Header_"):
    stamp: Time = field(default_factory=Time)
    frame_id: str = ""


@dataclass
class String(IdlStruct, typename="std_msgs::msg::dds_::String_"):
    data: str = ""


@dataclass
class Image(IdlStruct, typename="sensor_msgs::msg::dds_::Image_"):
    header: Header
    height: t.uint32
    width: t.uint32
    encoding: str
    is_bigendian: t.uint8
    step: t.uint32
    data: t.sequence[t.uint8]


@dataclass
class CompressedImage(IdlStruct, typename="sensor_msgs::msg::dds_::CompressedImage_"):
    header: Header
    format: str
    data: t.sequence[t.uint8]


@dataclass
class HeaderOnlyImage(IdlStruct, typename="sensor_msgs::msg::dds_::Image_"):
    """A deliberately wrong `Image`: only the header, so a reader runs out of bytes."""

    header: Header


@dataclass
class Point2D(IdlStruct, typename="vision_msgs::msg::dds_::Point2D_"):
    x: t.float64
    y: t.float64


@dataclass
class Pose2D(IdlStruct, typename="vision_msgs::msg::dds_::Pose2D_"):
    position: Point2D
    theta: t.float64


@dataclass
class BoundingBox2D(IdlStruct, typename="vision_msgs::msg::dds_::BoundingBox2D_"):
    center: Pose2D
    size_x: t.float64
    size_y: t.float64


@dataclass
class ObjectHypothesis(IdlStruct, typename="vision_msgs::msg::dds_::ObjectHypothesis_"):
    class_id: str
    score: t.float64


@dataclass
class Point(IdlStruct, typename="geometry_msgs::msg::dds_::Point_"):
    x: t.float64
    y: t.float64
    z: t.float64


@dataclass
class Quaternion(IdlStruct, typename="geometry_msgs::msg::dds_::Quaternion_"):
    x: t.float64
    y: t.float64
    z: t.float64
    w: t.float64


@dataclass
class Pose(IdlStruct, typename="geometry_msgs::msg::dds_::Pose_"):
    position: Point
    orientation: Quaternion


@dataclass
class PoseWithCovariance(IdlStruct, typename="geometry_msgs::msg::dds_::PoseWithCovariance_"):
    pose: Pose
    covariance: t.array[t.float64, 36]


@dataclass
class ObjectHypothesisWithPose(IdlStruct, typename="vision_msgs::msg::dds_::ObjectHypothesisWithPose_"):
    hypothesis: ObjectHypothesis
    pose: PoseWithCovariance


@dataclass
class Detection2D(IdlStruct, typename="vision_msgs::msg::dds_::Detection2D_"):
    header: Header
    results: t.sequence[ObjectHypothesisWithPose]
    bbox: BoundingBox2D
    id: str


@dataclass
class Detection2DArray(IdlStruct, typename="vision_msgs::msg::dds_::Detection2DArray_"):
    header: Header
    detections: t.sequence[Detection2D]


# rcl_interfaces: parameters, and the SetParameters service (request / reply topics).
@dataclass
class ParameterValue(IdlStruct, typename="rcl_interfaces::msg::dds_::ParameterValue_"):
    type: t.uint8 = 0
    bool_value: bool = False
    integer_value: t.int64 = 0
    double_value: t.float64 = 0.0
    string_value: str = ""
    byte_array_value: t.sequence[t.uint8] = field(default_factory=list)
    bool_array_value: t.sequence[bool] = field(default_factory=list)
    integer_array_value: t.sequence[t.int64] = field(default_factory=list)
    double_array_value: t.sequence[t.float64] = field(default_factory=list)
    string_array_value: t.sequence[str] = field(default_factory=list)


@dataclass
class Parameter(IdlStruct, typename="rcl_interfaces::msg::dds_::Parameter_"):
    name: str
    value: ParameterValue


@dataclass
class SetParametersResult(IdlStruct, typename="rcl_interfaces::msg::dds_::SetParametersResult_"):
    successful: bool
    reason: str


@dataclass
class SetParametersRequest(IdlStruct, typename="rcl_interfaces::srv::dds_::SetParameters_Request_"):
    parameters: t.sequence[Parameter]


@dataclass
class SetParametersResponse(IdlStruct, typename="rcl_interfaces::srv::dds_::SetParameters_Response_"):
    results: t.sequence[SetParametersResult]


# rcl_interfaces/ParameterType codes.
PARAMETER_TYPES = {"bool": 1, "integer": 2, "double": 3, "string": 4, "string_array": 9}


def parameter(name: str, kind: str, value) -> Parameter:
    """A `Parameter` of the given kind (`bool`, `integer`, `double`, `string`, `string_array`)."""
    v = ParameterValue(type=PARAMETER_TYPES[kind])
    slot = {"bool": "bool_value", "integer": "integer_value", "double": "double_value",
            "string": "string_value", "string_array": "string_array_value"}[kind]
    setattr(v, slot, value)
    return Parameter(name, v)

//! Kafka error codes of the group protocol.

use kafka_protocol::ResponseError;

/// `NOT_COORDINATOR`: the group's coordinator is another broker (clients look it up again).
pub const NOT_COORDINATOR: i16 = ResponseError::NotCoordinator.code();
/// `COORDINATOR_NOT_AVAILABLE`.
pub const COORDINATOR_NOT_AVAILABLE: i16 = ResponseError::CoordinatorNotAvailable.code();
/// `ILLEGAL_GENERATION`.
pub const ILLEGAL_GENERATION: i16 = ResponseError::IllegalGeneration.code();
/// `INCONSISTENT_GROUP_PROTOCOL`.
pub const INCONSISTENT_GROUP_PROTOCOL: i16 = ResponseError::InconsistentGroupProtocol.code();
/// `INVALID_GROUP_ID`.
pub const INVALID_GROUP_ID: i16 = ResponseError::InvalidGroupId.code();
/// `UNKNOWN_MEMBER_ID`.
pub const UNKNOWN_MEMBER_ID: i16 = ResponseError::UnknownMemberId.code();
/// `INVALID_SESSION_TIMEOUT`.
pub const INVALID_SESSION_TIMEOUT: i16 = ResponseError::InvalidSessionTimeout.code();
/// `REBALANCE_IN_PROGRESS`.
pub const REBALANCE_IN_PROGRESS: i16 = ResponseError::RebalanceInProgress.code();
/// `NON_EMPTY_GROUP`.
pub const NON_EMPTY_GROUP: i16 = ResponseError::NonEmptyGroup.code();
/// `GROUP_ID_NOT_FOUND`.
pub const GROUP_ID_NOT_FOUND: i16 = ResponseError::GroupIdNotFound.code();
/// `MEMBER_ID_REQUIRED`.
pub const MEMBER_ID_REQUIRED: i16 = ResponseError::MemberIdRequired.code();
/// `GROUP_MAX_SIZE_REACHED`.
pub const GROUP_MAX_SIZE_REACHED: i16 = ResponseError::GroupMaxSizeReached.code();
/// `FENCED_INSTANCE_ID`.
pub const FENCED_INSTANCE_ID: i16 = ResponseError::FencedInstanceId.code();
/// `GROUP_SUBSCRIBED_TO_TOPIC`.
pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = ResponseError::GroupSubscribedToTopic.code();
/// `OFFSET_METADATA_TOO_LARGE`.
pub const OFFSET_METADATA_TOO_LARGE: i16 = ResponseError::OffsetMetadataTooLarge.code();

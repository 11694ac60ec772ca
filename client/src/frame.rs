//! Kafka's framing, without connection state: encode a request frame, read one bounded
//! response frame from any byte stream, decode a response and check its correlation id.
//! [`Connection`](crate::Connection) is built from these; tests that need exact bytes
//! on a raw socket use them directly.
//!
//! | bytes | request frame                               | response frame               |
//! |-------|---------------------------------------------|------------------------------|
//! | 0..4  | size of the rest: i32, big-endian           | size of the rest: i32        |
//! | 4..   | RequestHeader (v1 or v2 by API and version) | ResponseHeader (v0 or v1)    |
//! |       | then the request body                       | then the response body       |
//!
//! A request header carries api key (i16), api version (i16), correlation id (i32) and
//! client id (nullable string; v2 adds tagged fields); a response header carries the
//! correlation id (v1 adds tagged fields). A response's size is checked against the
//! caller's maximum ([`checked_frame_len`]) before its buffer is allocated.

use bytes::buf::BufMut;
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::error::FrameError;

/// Bytes of the size prefix.
const SIZE_PREFIX: usize = 4;
/// Room for a request header beyond the client id: key, version, correlation id,
/// string length and tagged fields.
const HEADER_ROOM: usize = 16;

/// The bytes of one request frame: size prefix, header, body.
///
/// Fails with [`FrameError::Encode`] when the codec cannot encode `request` at
/// `version` or the frame would exceed `i32::MAX` bytes.
pub fn encode_request<R: Request>(
    request: &R,
    version: i16,
    correlation_id: i32,
    client_id: &StrBytes,
) -> Result<Bytes, FrameError> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(client_id.clone()));
    // The body's size is a capacity hint only (a large Produce is then copied once);
    // the size prefix is what was actually encoded.
    let body_hint = request.compute_size(version).unwrap_or(0);
    let mut frame = BytesMut::with_capacity(
        SIZE_PREFIX
            .saturating_add(HEADER_ROOM + client_id.len())
            .saturating_add(body_hint),
    );
    frame.put_i32(0);
    header
        .encode(&mut frame, R::header_version(version))
        .map_err(|e| FrameError::Encode(e.into()))?;
    request
        .encode(&mut frame, version)
        .map_err(|e| FrameError::Encode(e.into()))?;
    let size = i32::try_from(frame.len() - SIZE_PREFIX).map_err(|_| {
        FrameError::Encode(format!("{} bytes do not fit a Kafka frame", frame.len()).into())
    })?;
    frame[..SIZE_PREFIX].copy_from_slice(&size.to_be_bytes());
    Ok(frame.freeze())
}

/// Validates a response's size prefix: `Ok(len)` when `0 <= size <= max`, else
/// `Err(size)`. The one place a client turns a wire length into a buffer length.
pub fn checked_frame_len(size: i32, max: u32) -> Result<usize, i32> {
    match u32::try_from(size) {
        Ok(len) if len <= max => usize::try_from(len).map_err(|_| size),
        _ => Err(size),
    }
}

/// Reads one frame and returns its body (header and message, without the size prefix).
///
/// The size prefix is checked against `max` before anything is allocated. End of stream
/// (before or inside the frame) is [`FrameError::Closed`]. Not cancel-safe: a read
/// dropped midway leaves the stream inside a frame.
pub async fn read_frame<S: AsyncRead + Unpin + ?Sized>(
    stream: &mut S,
    max: u32,
) -> Result<Bytes, FrameError> {
    let mut prefix = [0u8; SIZE_PREFIX];
    stream
        .read_exact(&mut prefix)
        .await
        .map_err(FrameError::from_io)?;
    let size = i32::from_be_bytes(prefix);
    let len = checked_frame_len(size, max).map_err(|size| FrameError::Size { size, max })?;
    // Read into uninitialised capacity: a large Fetch response is not zeroed first.
    let mut body = BytesMut::with_capacity(len);
    while body.len() < len {
        let missing = len - body.len();
        let mut rest = (&mut body).limit(missing);
        let read = stream
            .read_buf(&mut rest)
            .await
            .map_err(FrameError::from_io)?;
        if read == 0 {
            return Err(FrameError::Closed);
        }
    }
    Ok(body.freeze())
}

/// Decodes a response frame body (header and message) of request type `R` sent at
/// `version`, and checks that it answers `correlation_id`.
pub fn decode_response<R: Request>(
    mut body: Bytes,
    version: i16,
    correlation_id: i32,
) -> Result<R::Response, FrameError> {
    let header = ResponseHeader::decode(&mut body, R::Response::header_version(version))
        .map_err(|e| FrameError::Decode(e.into()))?;
    if header.correlation_id != correlation_id {
        return Err(FrameError::CorrelationMismatch {
            expected: correlation_id,
            got: header.correlation_id,
        });
    }
    R::Response::decode(&mut body, version).map_err(|e| FrameError::Decode(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse, MetadataRequest};

    #[test]
    fn frame_length_is_bounded_before_allocation() {
        let max = 1024;
        assert_eq!(checked_frame_len(1023, max), Ok(1023));
        assert_eq!(checked_frame_len(1024, max), Ok(1024));
        assert_eq!(checked_frame_len(1025, max), Err(1025));
        assert_eq!(checked_frame_len(-1, max), Err(-1));
        assert_eq!(checked_frame_len(i32::MIN, max), Err(i32::MIN));
        assert_eq!(checked_frame_len(0, max), Ok(0));
        assert_eq!(checked_frame_len(i32::MAX, u32::MAX), Ok(2_147_483_647));
    }

    #[test]
    fn a_v1_header_request_frame_has_golden_bytes() {
        let frame = encode_request(
            &ApiVersionsRequest::default(),
            0,
            7,
            &StrBytes::from_static_str("me"),
        )
        .unwrap();
        assert_eq!(
            &frame[..],
            &[
                0, 0, 0, 12, // size of the rest
                0, 18, // api key: ApiVersions
                0, 0, // api version 0
                0, 0, 0, 7, // correlation id
                0, 2, b'm', b'e', // client id
            ]
        );
    }

    #[test]
    fn a_v2_header_request_frame_has_golden_bytes() {
        // Metadata v9+ is flexible: header v2 (tagged fields after the client id) and a
        // compact body. v12 with no topic list: null topics (0), auto-creation false,
        // include topic authorized operations false, tagged fields 0.
        let request = MetadataRequest::default()
            .with_topics(None)
            .with_allow_auto_topic_creation(false);
        let frame = encode_request(&request, 12, 258, &StrBytes::from_static_str("c")).unwrap();
        assert_eq!(
            &frame[..],
            &[
                0, 0, 0, 16, // size of the rest
                0, 3, 0, 12, // Metadata v12
                0, 0, 1, 2, // correlation id 258
                0, 1, b'c', // client id (a plain nullable string even in header v2)
                0,    // header tagged fields
                0,    // topics: null compact array
                0,    // allow_auto_topic_creation
                0,    // include_topic_authorized_operations
                0,    // body tagged fields
            ]
        );
    }

    #[test]
    fn responses_answer_their_correlation_id_only() {
        // ApiVersions responses always use header v0: the correlation id alone.
        let mut body = BytesMut::new();
        body.put_i32(5);
        body.put_i16(0); // error code
        body.put_i32(0); // api keys: empty array (v0)
        let body = body.freeze();
        let decoded = decode_response::<ApiVersionsRequest>(body.clone(), 0, 5).unwrap();
        assert_eq!(decoded, ApiVersionsResponse::default());
        let error = decode_response::<ApiVersionsRequest>(body, 0, 6).unwrap_err();
        assert!(
            matches!(
                error,
                FrameError::CorrelationMismatch {
                    expected: 6,
                    got: 5
                }
            ),
            "{error}"
        );
        let truncated = decode_response::<ApiVersionsRequest>(Bytes::from_static(&[0, 0]), 0, 5);
        assert!(matches!(truncated, Err(FrameError::Decode(_))));
    }

    #[tokio::test]
    async fn frames_are_read_whole_and_bounded() {
        let mut wire: &[u8] = &[0, 0, 0, 3, b'a', b'b', b'c', 0, 0, 0, 9];
        assert_eq!(
            read_frame(&mut wire, 3).await.unwrap(),
            Bytes::from_static(b"abc")
        );
        // The next prefix announces 9 bytes with a maximum of 3: refused unread.
        let mut next = wire;
        assert!(matches!(
            read_frame(&mut next, 3).await,
            Err(FrameError::Size { size: 9, max: 3 })
        ));
        // 9 allowed, but the stream ends first.
        assert!(matches!(
            read_frame(&mut wire, 9).await,
            Err(FrameError::Closed)
        ));
        let mut empty: &[u8] = &[];
        assert!(matches!(
            read_frame(&mut empty, 9).await,
            Err(FrameError::Closed)
        ));
        let mut negative: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut negative, 9).await,
            Err(FrameError::Size { size: -1, .. })
        ));
    }
}

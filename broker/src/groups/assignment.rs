//! Reading the consumer protocol's subscription metadata (the bytes members send in
//! JoinGroup for protocol type "consumer"): `version: i16` then the versioned body.

use bytes::{Buf, Bytes};
use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::protocol::Decodable;

/// The topics a consumer subscription names; empty when the bytes are not a consumer
/// subscription this broker can read.
pub fn subscribed_topics(metadata: &Bytes) -> Vec<String> {
    let mut buf = metadata.clone();
    if buf.remaining() < 2 {
        return Vec::new();
    }
    let version = buf.get_i16().clamp(0, 3);
    // Client bytes kept by the group: their counts are bounded like a request's.
    if crate::bounds::check_body("ConsumerProtocolSubscription", version, &buf).is_err() {
        return Vec::new();
    }
    ConsumerProtocolSubscription::decode(&mut buf, version)
        .map(|s| s.topics.iter().map(|t| t.to_string()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    #[test]
    fn reads_the_subscribed_topics() -> anyhow::Result<()> {
        let sub = ConsumerProtocolSubscription::default().with_topics(vec![
            StrBytes::from_static_str("a"),
            StrBytes::from_static_str("b"),
        ]);
        let mut buf = BytesMut::new();
        buf.put_i16(1);
        sub.encode(&mut buf, 1)?;
        assert_eq!(subscribed_topics(&buf.freeze()), ["a", "b"]);
        assert!(subscribed_topics(&Bytes::from_static(&[0, 1, 0xff])).is_empty());
        // v0, topics announcing 2^31-1 entries: refused before the codec reserves 64 GB.
        let hostile = Bytes::from_static(&[0, 0, 0x7f, 0xff, 0xff, 0xff, 0, 1, b'a']);
        assert!(subscribed_topics(&hostile).is_empty());
        Ok(())
    }
}

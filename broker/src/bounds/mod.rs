//! The bounds pre-pass: every length and count in a request body is checked against the
//! bytes left in the frame before the codec sees the body.
//!
//! The `kafka-protocol` decoders reserve `Vec::with_capacity(count)` for an array from
//! the count on the wire before reading an element, so a 19-byte request announcing
//! 2^31 topics asks the allocator for over 100 GB and aborts the process. This pass
//! walks the body by the layout in `requests.schema` (the same wire grammar as Kafka's
//! message specs) and refuses it when
//!
//! - an array announces more elements than the bytes left could hold, each element
//!   taking at least its smallest encoding (`count × min_size ≤ remaining`),
//! - a string, bytes or tagged-field length is longer than the bytes left, or negative
//!   (other than the null marker),
//! - a known tagged field's value does not fill exactly the size its header declares
//!   (so the codec, which reads known tags without that bound, reads what was checked),
//! - the body ends inside a field.
//!
//! It allocates nothing and costs one pass over the field headers (record batches inside
//! a Produce request are one `bytes` field and are skipped, not read). Trailing bytes
//! after the body are left to the codec, which ignores them as Kafka does.
//!
//! Varints are read exactly as the codec reads them (at most five bytes, the excess
//! bits dropped), so both see the same numbers.

mod schema;
#[cfg(test)]
mod tests;

pub use schema::{messages, FieldType, Message, SchemaError};

/// Why a request body was refused before decoding.
#[derive(Debug, thiserror::Error)]
pub enum BoundsError {
    /// The schema has no layout for this API (a defect: every served API has one).
    #[error("no request layout is known for {api}")]
    UnknownApi {
        /// The API key's name.
        api: String,
    },
    /// The compiled-in schema does not parse (a defect of the build).
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// An array announces more elements than the remaining bytes can hold.
    #[error("{field}: {count} elements of at least {min_element} bytes each, with {remaining} bytes left")]
    CountTooLarge {
        /// The array's field name.
        field: &'static str,
        /// The announced count.
        count: u64,
        /// The smallest encoding of one element.
        min_element: usize,
        /// Bytes left in the body.
        remaining: usize,
    },
    /// A string, bytes or tagged value is longer than the remaining bytes.
    #[error("{field}: a length of {len} bytes, with {remaining} bytes left")]
    LengthTooLarge {
        /// The field name.
        field: &'static str,
        /// The announced length.
        len: u64,
        /// Bytes left in the body.
        remaining: usize,
    },
    /// A length or count is negative and not the null marker -1.
    #[error("{field}: the length {len} is negative")]
    NegativeLength {
        /// The field name.
        field: &'static str,
        /// The length on the wire.
        len: i64,
    },
    /// The body ends inside a field.
    #[error("{field}: the request ends inside this field")]
    Truncated {
        /// The field name.
        field: &'static str,
    },
    /// A known tagged field's value does not fill the size its header declares.
    #[error("tagged field {field}: {declared} bytes declared, its value takes {used}")]
    TagSize {
        /// The field name.
        field: &'static str,
        /// The size in the tag header.
        declared: usize,
        /// The bytes its value took.
        used: usize,
    },
}

/// Checks `body` of the message `api` at `version` before it is decoded: a request
/// after its header (`api` is the API key's name, the version one that is served), or
/// another message a client sent as bytes (`ConsumerProtocolSubscription`).
pub fn check_body(api: &str, version: i16, body: &[u8]) -> Result<(), BoundsError> {
    let message = messages()?
        .get(api)
        .ok_or_else(|| BoundsError::UnknownApi {
            api: api.to_string(),
        })?;
    let mut walker = Walker {
        buf: body,
        at: 0,
        version,
        flexible: message.flexible(version),
        message,
    };
    walker.walk_struct(0)
}

/// A cursor over one body, following one message's layout at one version.
struct Walker<'a> {
    buf: &'a [u8],
    at: usize,
    version: i16,
    flexible: bool,
    message: &'static Message,
}

impl Walker<'_> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.at
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&[u8], BoundsError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.buf.len())
            .ok_or(BoundsError::Truncated { field })?;
        let bytes = &self.buf[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn int(&mut self, width: usize, field: &'static str) -> Result<i64, BoundsError> {
        let bytes = self.take(width, field)?;
        Ok(bytes
            .iter()
            .fold(0i64, |acc, b| (acc << 8) | i64::from(*b))
            .wrapping_shl(64 - 8 * width as u32)
            .wrapping_shr(64 - 8 * width as u32))
    }

    /// An unsigned varint exactly as the codec reads it: at most five bytes.
    fn uvarint(&mut self, field: &'static str) -> Result<u32, BoundsError> {
        let mut value = 0u32;
        for i in 0..5 {
            let b = u32::from(self.take(1, field)?[0]);
            value |= (b & 0x7f) << (i * 7);
            if b < 0x80 {
                break;
            }
        }
        Ok(value)
    }

    /// A length or count: `None` for null, else how many units follow.
    fn length(&mut self, width: usize, field: &'static str) -> Result<Option<u64>, BoundsError> {
        if self.flexible {
            // Compact: length + 1, zero for null.
            return Ok(self.uvarint(field)?.checked_sub(1).map(u64::from));
        }
        match self.int(width, field)? {
            -1 => Ok(None),
            n if n < 0 => Err(BoundsError::NegativeLength { field, len: n }),
            n => Ok(Some(n.unsigned_abs())),
        }
    }

    fn skip_bytes(&mut self, len: u64, field: &'static str) -> Result<(), BoundsError> {
        let remaining = self.remaining();
        let n = usize::try_from(len)
            .ok()
            .filter(|n| *n <= remaining)
            .ok_or(BoundsError::LengthTooLarge {
                field,
                len,
                remaining,
            })?;
        self.at += n;
        Ok(())
    }

    fn walk(&mut self, ty: &FieldType, field: &'static str) -> Result<(), BoundsError> {
        match ty {
            FieldType::Fixed(n) => self.take(*n, field).map(drop),
            FieldType::String => match self.length(2, field)? {
                Some(len) => self.skip_bytes(len, field),
                None => Ok(()),
            },
            FieldType::Bytes => match self.length(4, field)? {
                Some(len) => self.skip_bytes(len, field),
                None => Ok(()),
            },
            FieldType::Struct(index) => self.walk_struct(*index),
            FieldType::Array(element) => {
                let Some(count) = self.length(4, field)? else {
                    return Ok(());
                };
                let min_element = self.min_size(element).max(1);
                let remaining = self.remaining();
                let fits = count
                    .checked_mul(min_element as u64)
                    .is_some_and(|need| need <= remaining as u64);
                if !fits {
                    return Err(BoundsError::CountTooLarge {
                        field,
                        count,
                        min_element,
                        remaining,
                    });
                }
                for _ in 0..count {
                    self.walk(element, field)?;
                }
                Ok(())
            }
        }
    }

    fn walk_struct(&mut self, index: usize) -> Result<(), BoundsError> {
        let message = self.message;
        let Some(structure) = message.structs.get(index) else {
            return Ok(());
        };
        for field in &structure.fields {
            if field.tag.is_none() && field.present(self.version) {
                self.walk(&field.ty, &field.name)?;
            }
        }
        if !self.flexible {
            return Ok(());
        }
        let section = "tagged fields";
        let count = self.uvarint(section)?;
        // A tagged field takes at least two bytes: its tag and its size.
        let remaining = self.remaining();
        if u64::from(count) * 2 > remaining as u64 {
            return Err(BoundsError::CountTooLarge {
                field: section,
                count: u64::from(count),
                min_element: 2,
                remaining,
            });
        }
        for _ in 0..count {
            let tag = self.uvarint(section)?;
            let size = self.uvarint(section)?;
            let known = structure
                .fields
                .iter()
                .find(|f| f.tag == Some(tag) && f.present(self.version));
            let Some(field) = known else {
                self.skip_bytes(u64::from(size), section)?;
                continue;
            };
            let declared = size as usize;
            let end = self
                .at
                .checked_add(declared)
                .filter(|end| *end <= self.buf.len())
                .ok_or(BoundsError::LengthTooLarge {
                    field: &field.name,
                    len: u64::from(size),
                    remaining: self.remaining(),
                })?;
            let start = self.at;
            let whole = self.buf;
            self.buf = &whole[..end];
            let walked = self.walk(&field.ty, &field.name);
            self.buf = whole;
            walked?;
            if self.at != end {
                return Err(BoundsError::TagSize {
                    field: &field.name,
                    declared,
                    used: self.at - start,
                });
            }
        }
        Ok(())
    }

    /// The fewest bytes one value of `ty` takes at this version.
    fn min_size(&self, ty: &FieldType) -> usize {
        match ty {
            FieldType::Fixed(n) => *n,
            FieldType::String if !self.flexible => 2,
            FieldType::Bytes | FieldType::Array(_) if !self.flexible => 4,
            FieldType::String | FieldType::Bytes | FieldType::Array(_) => 1,
            FieldType::Struct(index) => {
                let Some(structure) = self.message.structs.get(*index) else {
                    return 0;
                };
                let fields: usize = structure
                    .fields
                    .iter()
                    .filter(|f| f.tag.is_none() && f.present(self.version))
                    .map(|f| self.min_size(&f.ty))
                    .sum();
                fields + usize::from(self.flexible)
            }
        }
    }
}

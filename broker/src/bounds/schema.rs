//! The request layouts of `requests.schema`, parsed once into a table the pre-pass walks.
//! The text format is described at the top of that file.

use std::collections::HashMap;
use std::sync::OnceLock;

/// The layout text, compiled into the binary.
const SCHEMA_TEXT: &str = include_str!("requests.schema");

/// A field's wire type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldType {
    /// A fixed-width value of this many bytes (i8, i16, i32, i64, bool, uuid).
    Fixed(usize),
    /// A string: i16 length, or an unsigned varint length + 1 in flexible versions.
    String,
    /// Bytes: i32 length, or an unsigned varint length + 1 in flexible versions.
    Bytes,
    /// A struct of the same message, by its index in [`Message::structs`].
    Struct(usize),
    /// An array: i32 count, or an unsigned varint count + 1 in flexible versions.
    Array(Box<FieldType>),
}

/// One field of a struct.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Kafka's name for it, for error messages.
    pub name: String,
    /// Its wire type.
    pub ty: FieldType,
    /// First version that carries it.
    pub min_version: i16,
    /// Last version that carries it.
    pub max_version: i16,
    /// `Some(tag)` for a tagged field of the flexible versions.
    pub tag: Option<u32>,
}

impl Field {
    /// Whether the field is on the wire at `version`.
    pub fn present(&self, version: i16) -> bool {
        (self.min_version..=self.max_version).contains(&version)
    }
}

/// A struct: its fields in wire order (tagged fields are read from the tag section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Struct {
    /// Kafka's name for it (`""` for the request body).
    pub name: String,
    /// Fields in wire order.
    pub fields: Vec<Field>,
}

/// One request: the body is `structs[0]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The API key's name, as `ApiKey`'s `Debug` prints it.
    pub api: String,
    /// First flexible version (compact lengths, tag sections), if any.
    pub flexible_from: Option<i16>,
    /// The body first, then the structs it uses.
    pub structs: Vec<Struct>,
}

impl Message {
    /// Whether `version` uses the flexible encoding.
    pub fn flexible(&self, version: i16) -> bool {
        self.flexible_from.is_some_and(|f| version >= f)
    }
}

/// Why the schema text does not parse (a defect of the build, caught by a unit test).
#[derive(Debug, Clone, thiserror::Error)]
#[error("requests.schema line {line}: {reason}")]
pub struct SchemaError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong there.
    pub reason: String,
}

/// Every message of the schema by API name, parsed on first use.
pub fn messages() -> Result<&'static HashMap<String, Message>, SchemaError> {
    static PARSED: OnceLock<Result<HashMap<String, Message>, SchemaError>> = OnceLock::new();
    PARSED
        .get_or_init(|| parse(SCHEMA_TEXT))
        .as_ref()
        .map_err(Clone::clone)
}

/// A message being parsed: its structs by name, with their fields still unresolved.
type Pending = (Message, Vec<(String, Vec<RawField>)>);

/// A field line before struct names are resolved.
struct RawField {
    line: usize,
    name: String,
    ty: String,
    min_version: i16,
    max_version: i16,
    tag: Option<u32>,
}

/// Parses the schema text.
pub fn parse(text: &str) -> Result<HashMap<String, Message>, SchemaError> {
    let mut out = HashMap::new();
    let mut current: Option<Pending> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let err = |reason: &str| SchemaError {
            line,
            reason: reason.to_string(),
        };
        let content = raw.split('#').next().unwrap_or("");
        if content.trim().is_empty() {
            continue;
        }
        let words: Vec<&str> = content.split_whitespace().collect();
        if !content.starts_with(' ') {
            match words.as_slice() {
                ["message", api, "flexible", from] => {
                    if let Some(done) = current.take() {
                        let m = resolve(done)?;
                        out.insert(m.api.clone(), m);
                    }
                    let flexible_from = match *from {
                        "none" => None,
                        v => Some(v.parse().map_err(|_| err("bad flexible version"))?),
                    };
                    let message = Message {
                        api: api.to_string(),
                        flexible_from,
                        structs: Vec::new(),
                    };
                    current = Some((message, vec![(String::new(), Vec::new())]));
                }
                ["struct", name] => {
                    let (_, structs) = current
                        .as_mut()
                        .ok_or_else(|| err("struct before message"))?;
                    structs.push((name.to_string(), Vec::new()));
                }
                _ => return Err(err("expected `message` or `struct`")),
            }
            continue;
        }
        let (_, structs) = current
            .as_mut()
            .ok_or_else(|| err("field before message"))?;
        let (_, fields) = structs
            .last_mut()
            .ok_or_else(|| err("field before struct"))?;
        fields.push(parse_field(line, &words)?);
    }
    if let Some(done) = current.take() {
        let m = resolve(done)?;
        out.insert(m.api.clone(), m);
    }
    Ok(out)
}

fn parse_field(line: usize, words: &[&str]) -> Result<RawField, SchemaError> {
    let err = |reason: &str| SchemaError {
        line,
        reason: reason.to_string(),
    };
    let (name, ty, rest) = match words {
        [name, ty, rest @ ..] => (name, ty, rest),
        _ => return Err(err("a field needs a name and a type")),
    };
    let (mut min_version, mut max_version, mut tag) = (0i16, i16::MAX, None);
    let mut rest = rest.iter();
    while let Some(word) = rest.next() {
        if *word == "tag" {
            let n = rest.next().ok_or_else(|| err("`tag` needs a number"))?;
            tag = Some(n.parse().map_err(|_| err("bad tag"))?);
        } else if let Some(from) = word.strip_suffix('+') {
            min_version = from.parse().map_err(|_| err("bad version"))?;
        } else if let Some((lo, hi)) = word.split_once('-') {
            min_version = lo.parse().map_err(|_| err("bad version"))?;
            max_version = hi.parse().map_err(|_| err("bad version"))?;
        } else {
            return Err(err("expected versions or `tag n`"));
        }
    }
    Ok(RawField {
        line,
        name: name.to_string(),
        ty: ty.to_string(),
        min_version,
        max_version,
        tag,
    })
}

/// Turns struct names into indexes.
fn resolve((mut message, structs): Pending) -> Result<Message, SchemaError> {
    let names: Vec<String> = structs.iter().map(|(n, _)| n.clone()).collect();
    for (name, raw_fields) in structs {
        let mut fields = Vec::with_capacity(raw_fields.len());
        for f in raw_fields {
            let ty = field_type(&f.ty, &names).ok_or_else(|| SchemaError {
                line: f.line,
                reason: format!("unknown type `{}`", f.ty),
            })?;
            fields.push(Field {
                name: f.name,
                ty,
                min_version: f.min_version,
                max_version: f.max_version,
                tag: f.tag,
            });
        }
        message.structs.push(Struct { name, fields });
    }
    Ok(message)
}

fn field_type(word: &str, structs: &[String]) -> Option<FieldType> {
    if let Some(inner) = word.strip_prefix('[').and_then(|w| w.strip_suffix(']')) {
        return Some(FieldType::Array(Box::new(field_type(inner, structs)?)));
    }
    Some(match word {
        "i8" | "bool" => FieldType::Fixed(1),
        "i16" => FieldType::Fixed(2),
        "i32" => FieldType::Fixed(4),
        "i64" => FieldType::Fixed(8),
        "uuid" => FieldType::Fixed(16),
        "string" => FieldType::String,
        "bytes" => FieldType::Bytes,
        name => FieldType::Struct(structs.iter().position(|s| s == name && !s.is_empty())?),
    })
}

//! The JSON body of `POST /classify` (`Content-Type: application/json`).
//!
//! Exactly one image source per body — inline base64, an absolute path, or a directory and a
//! file name (the original Greengrass sample's form) — plus the options `top_k` and
//! `threshold`. A client builds one of the three variants; what it leaves out is not sent, and
//! the service uses its configured default.
//!
//! The document is read by one reader, [`ClassifyJson::from_value`] (which serde's
//! `Deserialize` also goes through), in the service for JSON bodies and in the IPC adapter for
//! pub/sub messages. It reads field by field so that each mistake gets a [`RequestError`]
//! naming the field and what is accepted. The rules, once for every side:
//! * exactly one image source: `image_base64`, `path`, or `image_dir` with a non-empty `fname`;
//! * `top_k` a whole number from 1 to 2^31-1, also when written `3.0` or `3e0` (JSON Schema
//!   counts a number without a fractional part as an integer); `threshold` a number from 0
//!   to 1;
//! * no field is nullable: a field is given with its value or left out (left out, the
//!   service's configured default applies), so `null` is refused like any other wrong type;
//! * any other field is refused by name.
//!
//! The same types are the source of the request schemas in the service's OpenAPI document.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A tiny red PNG, so that the prefilled JSON example in Swagger UI classifies as is.
pub const EXAMPLE_PNG_BASE64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAEUlEQVR42mO4IyKHFTEMLQkAj85DgTY7KIkAAAAASUVORK5CYII=";

/// JSON body of `POST /classify`: exactly one image source, plus the options.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum ClassifyJson {
    /// The image itself, base64-encoded.
    Base64(ClassifyBase64),
    /// An image file inside a directory the service was started with (`--allowed-dir`).
    Path(ClassifyPath),
    /// A directory and a file name in it, inside an allowed directory.
    DirAndName(ClassifyDirAndName),
}

/// The image itself, base64-encoded.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
// Read by `ClassifyJson::from_fields`, which refuses unknown fields; the attribute puts
// `additionalProperties: false` in the schema.
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", schema(title = "ClassifyBase64"))]
pub struct ClassifyBase64 {
    /// The image, base64 (standard alphabet; a `data:image/...;base64,` prefix is accepted).
    #[cfg_attr(feature = "openapi", schema(example = json!(EXAMPLE_PNG_BASE64)))]
    pub image_base64: String,
    /// Number of predictions to return (larger than the class count returns all).
    // Wider than the reader accepts (1 to 2^31-1), so that a hand-built body still reaches
    // the service, whose 422 names the bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = u32, minimum = 1, example = 3))]
    pub top_k: Option<u64>,
    /// Minimum probability of returned predictions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = f64, minimum = 0.0, maximum = 1.0, example = 0.0)
    )]
    pub threshold: Option<f64>,
}

/// An image file by absolute path, inside an allowed directory.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
// Read by `ClassifyJson::from_fields`, which refuses unknown fields; the attribute puts
// `additionalProperties: false` in the schema.
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", schema(title = "ClassifyPath"))]
pub struct ClassifyPath {
    /// Absolute path of the image file.
    #[cfg_attr(feature = "openapi", schema(example = "/tmp/images/pelican.jpeg"))]
    pub path: String,
    /// Number of predictions to return (larger than the class count returns all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = u32, minimum = 1, example = 3))]
    pub top_k: Option<u64>,
    /// Minimum probability of returned predictions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = f64, minimum = 0.0, maximum = 1.0, example = 0.0)
    )]
    pub threshold: Option<f64>,
}

/// A directory and a file name in it (the form the original Greengrass sample used), inside
/// an allowed directory.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
// Read by `ClassifyJson::from_fields`, which refuses unknown fields; the attribute puts
// `additionalProperties: false` in the schema.
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", schema(title = "ClassifyDirAndName"))]
pub struct ClassifyDirAndName {
    /// Absolute path of the directory.
    #[cfg_attr(feature = "openapi", schema(example = "/tmp/images"))]
    pub image_dir: String,
    /// File name inside `image_dir`.
    #[cfg_attr(feature = "openapi", schema(example = "pelican.jpeg", min_length = 1))]
    pub fname: String,
    /// Number of predictions to return (larger than the class count returns all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = u32, minimum = 1, example = 3))]
    pub top_k: Option<u64>,
    /// Minimum probability of returned predictions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = f64, minimum = 0.0, maximum = 1.0, example = 0.0)
    )]
    pub threshold: Option<f64>,
}

/// The request document's field names, written once (the adapter and the requester refer to
/// them, never to their own literals).
pub mod field {
    /// The image, base64.
    pub const IMAGE_BASE64: &str = "image_base64";
    /// An image file's absolute path.
    pub const PATH: &str = "path";
    /// A directory, with [`FNAME`].
    pub const IMAGE_DIR: &str = "image_dir";
    /// A file name in [`IMAGE_DIR`].
    pub const FNAME: &str = "fname";
    /// Number of predictions wanted.
    pub const TOP_K: &str = "top_k";
    /// Minimum probability of returned predictions.
    pub const THRESHOLD: &str = "threshold";
    /// Every field of the document, in the order messages list them.
    pub const ALL: [&str; 6] = [IMAGE_BASE64, PATH, IMAGE_DIR, FNAME, TOP_K, THRESHOLD];
}

/// Largest `top_k` accepted: the documented schema is an int32.
pub const MAX_TOP_K: u64 = i32::MAX as u64;

/// What a request document must look like, for error messages.
pub const SHAPE: &str = "a JSON object with one image source (image_base64, path, or \
    image_dir with fname) and optionally top_k and threshold";

/// A request document that cannot be read: the field at fault (when one is) and a message in
/// plain words naming it and what is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError {
    field: Option<String>,
    message: String,
}

impl RequestError {
    fn new(field: Option<&str>, message: String) -> Self {
        Self {
            field: field.map(str::to_owned),
            message,
        }
    }

    /// The field at fault; `None` when the document as a whole is wrong (not an object, no
    /// image source or several).
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// The message for the client.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RequestError {}

/// `top_k` given as text (a query string, a multipart part, a JSON number's digits): a whole
/// number from 1 to [`MAX_TOP_K`], also when written `3.0` or `3e0` (a number with no
/// fractional part is an integer to JSON Schema, and clients that only have doubles,
/// JavaScript's among them, may write it so).
pub fn top_k_from_text(text: &str) -> Result<u64, RequestError> {
    let trimmed = text.trim();
    let whole = match trimmed.parse::<i64>() {
        Ok(n) => Some(n),
        Err(_) => trimmed
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && x.fract() == 0.0 && x.abs() <= 2f64.powi(53))
            .map(|x| x as i64),
    };
    match whole {
        Some(n) if (1..=MAX_TOP_K as i64).contains(&n) => Ok(n as u64),
        _ => Err(RequestError::new(
            Some(field::TOP_K),
            format!("top_k must be a whole number from 1 to {MAX_TOP_K}, got {text:?}"),
        )),
    }
}

/// `threshold` given as text: a number from 0 to 1.
pub fn threshold_from_text(text: &str) -> Result<f64, RequestError> {
    match text.trim().parse::<f64>() {
        Ok(t) if (0.0..=1.0).contains(&t) => Ok(t),
        _ => Err(RequestError::new(
            Some(field::THRESHOLD),
            format!("threshold must be a number from 0 to 1, got {text:?}"),
        )),
    }
}

impl ClassifyJson {
    /// Reads a request document (see the module docs for the rules).
    pub fn from_value(value: Value) -> Result<Self, RequestError> {
        match value {
            Value::Object(fields) => Self::from_fields(fields, &[]),
            other => Err(RequestError::new(
                None,
                format!("the JSON body is {}; send {SHAPE}", describe(&other)),
            )),
        }
    }

    /// Reads the fields of a request document. `also_accepted` names fields a caller has
    /// already taken out of `fields` for itself (the IPC adapter's `request_id` and
    /// `reply_topic`), so that the message for an unknown field lists them too.
    pub fn from_fields(
        fields: Map<String, Value>,
        also_accepted: &[&str],
    ) -> Result<Self, RequestError> {
        let mut image_base64 = None;
        let mut path = None;
        let mut image_dir = None;
        let mut fname = None;
        let mut top_k = None;
        let mut threshold = None;
        for (name, value) in fields {
            let text_slot = match name.as_str() {
                field::IMAGE_BASE64 => Some(&mut image_base64),
                field::PATH => Some(&mut path),
                field::IMAGE_DIR => Some(&mut image_dir),
                field::FNAME => Some(&mut fname),
                _ => None,
            };
            if let Some(slot) = text_slot {
                let Value::String(text) = value else {
                    return Err(RequestError::new(
                        Some(&name),
                        format!("{name} must be a string, got {}", describe(&value)),
                    ));
                };
                *slot = Some(text);
                continue;
            }
            let number = |value: Value| match value {
                Value::Number(number) => Ok(number.to_string()),
                other => Err(RequestError::new(
                    Some(&name),
                    format!("{name} must be a number, got {}", describe(&other)),
                )),
            };
            match name.as_str() {
                field::TOP_K => top_k = Some(top_k_from_text(&number(value)?)?),
                field::THRESHOLD => threshold = Some(threshold_from_text(&number(value)?)?),
                _ => {
                    let accepted = field::ALL
                        .iter()
                        .chain(also_accepted)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ");
                    return Err(RequestError::new(
                        Some(&name),
                        format!("unknown field {name:?}; accepted: {accepted}"),
                    ));
                }
            }
        }

        let given = [
            image_base64.is_some(),
            path.is_some(),
            image_dir.is_some() || fname.is_some(),
        ]
        .into_iter()
        .filter(|&given| given)
        .count();
        if given != 1 {
            return Err(RequestError::new(
                None,
                format!(
                    "give exactly one image source: image_base64, path, or image_dir with fname \
                     ({given} given)"
                ),
            ));
        }
        if let Some(image_base64) = image_base64 {
            return Ok(Self::Base64(ClassifyBase64 {
                image_base64,
                top_k,
                threshold,
            }));
        }
        if let Some(path) = path {
            return Ok(Self::Path(ClassifyPath {
                path,
                top_k,
                threshold,
            }));
        }
        match (image_dir, fname) {
            (Some(image_dir), Some(fname)) if !fname.is_empty() => {
                Ok(Self::DirAndName(ClassifyDirAndName {
                    image_dir,
                    fname,
                    top_k,
                    threshold,
                }))
            }
            (image_dir, _) => Err(RequestError::new(
                Some(if image_dir.is_some() {
                    field::FNAME
                } else {
                    field::IMAGE_DIR
                }),
                "image_dir and fname must be given together, fname not empty".into(),
            )),
        }
    }

    /// One document of each form — base64 (a red PNG that classifies as is), path, directory
    /// and name — for documentation: the service's OpenAPI examples.
    pub fn examples() -> [Self; 3] {
        [
            Self::Base64(ClassifyBase64 {
                image_base64: EXAMPLE_PNG_BASE64.into(),
                top_k: Some(3),
                threshold: None,
            }),
            Self::Path(ClassifyPath {
                path: "/tmp/images/pelican.jpeg".into(),
                top_k: Some(3),
                threshold: None,
            }),
            Self::DirAndName(ClassifyDirAndName {
                image_dir: "/tmp/images".into(),
                fname: "pelican.jpeg".into(),
                top_k: None,
                threshold: None,
            }),
        ]
    }

    /// The number of predictions asked for, if any.
    pub fn top_k(&self) -> Option<u64> {
        match self {
            Self::Base64(b) => b.top_k,
            Self::Path(p) => p.top_k,
            Self::DirAndName(d) => d.top_k,
        }
    }

    /// The minimum probability asked for, if any.
    pub fn threshold(&self) -> Option<f64> {
        match self {
            Self::Base64(b) => b.threshold,
            Self::Path(p) => p.threshold,
            Self::DirAndName(d) => d.threshold,
        }
    }
}

/// Reading goes through [`ClassifyJson::from_value`], so a client that deserialises gets the
/// service's rules and messages.
impl<'de> Deserialize<'de> for ClassifyJson {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Self::from_value(value).map_err(serde::de::Error::custom)
    }
}

/// How a JSON value is described in error messages.
pub fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("{b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.chars().count() <= 40 => format!("the string {s:?}"),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_is_an_int32_as_json_schema_counts_integers() {
        for (text, n) in [
            ("3", 3),
            ("3.0", 3),
            ("3e0", 3),
            (" 4 ", 4),
            ("2147483647.0", MAX_TOP_K),
        ] {
            assert_eq!(top_k_from_text(text), Ok(n), "{text}");
        }
        for text in [
            "0",
            "-1",
            "2.5",
            "2147483648",
            "2147483648.0",
            "1e10",
            "1e300",
            "NaN",
            "inf",
            "",
            "three",
        ] {
            let error = top_k_from_text(text).unwrap_err();
            assert_eq!(error.field(), Some("top_k"), "{text}");
        }
    }

    #[test]
    fn options_left_out_are_not_sent_and_each_form_reads_back_as_itself() {
        let bodies = [
            ClassifyJson::Base64(ClassifyBase64 {
                image_base64: EXAMPLE_PNG_BASE64.into(),
                top_k: Some(3),
                threshold: None,
            }),
            ClassifyJson::Path(ClassifyPath {
                path: "/tmp/images/a.jpg".into(),
                top_k: None,
                threshold: Some(0.25),
            }),
            ClassifyJson::DirAndName(ClassifyDirAndName {
                image_dir: "/tmp/images".into(),
                fname: "a.jpg".into(),
                top_k: None,
                threshold: None,
            }),
        ];
        let texts = bodies.each_ref().map(|b| serde_json::to_string(b).unwrap());
        assert_eq!(
            texts[0],
            format!(r#"{{"image_base64":"{EXAMPLE_PNG_BASE64}","top_k":3}}"#)
        );
        assert_eq!(texts[1], r#"{"path":"/tmp/images/a.jpg","threshold":0.25}"#);
        assert_eq!(texts[2], r#"{"image_dir":"/tmp/images","fname":"a.jpg"}"#);
        for (body, text) in bodies.iter().zip(&texts) {
            assert_eq!(&serde_json::from_str::<ClassifyJson>(text).unwrap(), body);
        }
        // Two sources in one body match no form.
        assert!(serde_json::from_str::<ClassifyJson>(r#"{"path":"/a","fname":"b"}"#).is_err());
    }
}

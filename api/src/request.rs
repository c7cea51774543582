//! The JSON body of `POST /classify` (`Content-Type: application/json`).
//!
//! Exactly one image source per body — inline base64, an absolute path, or a directory and a
//! file name (the original Greengrass sample's form) — plus the options `top_k` and
//! `threshold`. A client builds one of the three variants; what it leaves out is not sent, and
//! the service uses its configured default.
//!
//! The service itself does not deserialise into these types: it reads the body field by field
//! so that each mistake gets an answer naming the field (and takes `top_k` written as `3.0`,
//! which JSON Schema counts as an integer; these types, when reading, do not). They are its
//! contract for clients, and the source of the request schemas in its OpenAPI document.

use serde::{Deserialize, Serialize};

/// A tiny red PNG, so that the prefilled JSON example in Swagger UI classifies as is.
pub const EXAMPLE_PNG_BASE64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAEUlEQVR42mO4IyKHFTEMLQkAj85DgTY7KIkAAAAASUVORK5CYII=";

/// JSON body of `POST /classify`: exactly one image source, plus the options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ClassifyBase64 {
    /// The image, base64 (standard alphabet; a `data:image/...;base64,` prefix is accepted).
    #[cfg_attr(feature = "openapi", schema(example = json!(EXAMPLE_PNG_BASE64)))]
    pub image_base64: String,
    /// Number of predictions to return (larger than the class count returns all).
    // Wider than the service accepts (1 to 2^31-1), so that a client passes any count on and
    // the service's 422 names the bound.
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
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

#[cfg(test)]
mod tests {
    use super::*;

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

//! RFC 9457 problem documents (`application/problem+json`) and the kinds of problem.
//!
//! A problem's `type` is the stable contract: `urn:classify-service:problem:<slug>`, one of
//! [`ProblemType`]. Clients branch on it, not on the status (two kinds share 400, 403, 404, 413
//! and 503) and never on `detail`, which is prose for humans. [`Problem::type_`] stays a plain
//! string so that a document from a newer service, with a kind this build does not know, still
//! parses: [`Problem::kind`] is then `None` and a client falls back to the status.

use serde::{Deserialize, Serialize};

/// Media type of problem documents.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Prefix of every problem `type`.
pub const TYPE_PREFIX: &str = "urn:classify-service:problem:";

/// An RFC 9457 problem document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Problem {
    /// Stable identifier of the problem kind, e.g. `urn:classify-service:problem:overloaded`.
    #[serde(rename = "type")]
    #[cfg_attr(
        feature = "openapi",
        schema(example = "urn:classify-service:problem:invalid-options")
    )]
    pub type_: String,
    /// Short summary of the problem kind.
    // RFC 9457 makes every member optional; a client still gets the rest of a terse document.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(required = true, example = "Invalid options")
    )]
    pub title: String,
    /// HTTP status code, the same as the response's.
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = u32, minimum = 400, maximum = 599, example = 422)
    )]
    pub status: u16,
    /// What went wrong with this request, naming the field and what is accepted.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(
            required = true,
            example = "top_k must be a whole number from 1 to 2147483647, got \"0\""
        )
    )]
    pub detail: String,
    /// The request's id (from `x-request-id` or generated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = String, example = "9b2c0f4e-3d1a-4c8e-9f57-2a6a1c0d7e11")
    )]
    pub request_id: Option<String>,
}

impl Problem {
    /// The document for `kind`: its `type` URI, title and status, with this request's detail.
    pub fn new(kind: ProblemType, detail: impl Into<String>, request_id: Option<String>) -> Self {
        Self {
            type_: kind.uri().to_owned(),
            title: kind.title().to_owned(),
            status: kind.status(),
            detail: detail.into(),
            request_id,
        }
    }

    /// The kind named by `type`, or `None` for a type this build does not know.
    pub fn kind(&self) -> Option<ProblemType> {
        ProblemType::from_uri(&self.type_)
    }
}

/// Declares [`ProblemType`] from one table, so that a kind's slug, status and title cannot be
/// added in one place and forgotten in another.
macro_rules! problem_types {
    ($(
        $(#[$doc:meta])*
        $kind:ident = $slug:literal, $status:literal, $title:literal;
    )*) => {
        /// Every kind of problem the service answers with.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ProblemType {
            $($(#[$doc])* $kind,)*
        }

        impl ProblemType {
            /// Every kind, in the order of the table.
            pub const ALL: &[ProblemType] = &[$(Self::$kind,)*];

            /// The last part of the `type` URI, e.g. `overloaded`.
            pub const fn slug(self) -> &'static str {
                match self {
                    $(Self::$kind => $slug,)*
                }
            }

            /// The `type` URI: [`TYPE_PREFIX`] followed by the slug.
            pub const fn uri(self) -> &'static str {
                match self {
                    $(Self::$kind => concat!("urn:classify-service:problem:", $slug),)*
                }
            }

            /// The HTTP status every answer of this kind has.
            pub const fn status(self) -> u16 {
                match self {
                    $(Self::$kind => $status,)*
                }
            }

            /// The document's `title`: the kind in words, the same for every request.
            pub const fn title(self) -> &'static str {
                match self {
                    $(Self::$kind => $title,)*
                }
            }
        }
    };
}

problem_types! {
    /// The bytes are not a supported image.
    UndecodableImage = "undecodable-image", 400, "The image cannot be decoded";
    /// Malformed JSON, multipart or base64.
    InvalidBody = "invalid-body", 400, "The request body is malformed";
    /// A file reference outside the allowed directories.
    PathForbidden = "path-forbidden", 403, "The path is outside the allowed directories";
    /// A referenced file does not exist.
    FileNotFound = "file-not-found", 404, "The file does not exist";
    /// No such route (a wrong base URL, not a missing image).
    NotFound = "not-found", 404, "Not found";
    /// The route exists, the method does not.
    MethodNotAllowed = "method-not-allowed", 405, "Method not allowed";
    /// The body or the file is larger than the configured limit.
    PayloadTooLarge = "payload-too-large", 413, "The request is too large";
    /// The image's dimensions exceed the configured limits.
    ImageTooLarge = "image-too-large", 413, "The image is too large";
    /// A Content-Type this endpoint does not take.
    UnsupportedMediaType = "unsupported-media-type", 415, "Unsupported media type";
    /// Well-formed, but an option or field has a value that is not accepted.
    InvalidOptions = "invalid-options", 422, "Invalid options";
    /// The model is loading or warming up; worth retrying after `Retry-After`.
    NotReady = "not-ready", 503, "The model is not ready";
    /// The queue (or the decode memory budget) is full; `Retry-After` says when to try again.
    Overloaded = "overloaded", 503, "The service is overloaded";
    /// The request's deadline passed.
    DeadlineExceeded = "deadline-exceeded", 504, "The request took too long";
    /// The service failed; the cause is logged under the request id, never sent.
    Internal = "internal", 500, "Internal server error";
    /// The `Host` is not one this service answers for (DNS rebinding guard).
    MisdirectedRequest = "misdirected-request", 421, "This server does not serve that host";
    /// A browser request from an origin that is not allowed.
    OriginForbidden = "origin-forbidden", 403, "Cross-origin requests from this origin are not allowed";
}

impl ProblemType {
    /// The kind with this slug (`overloaded`), if there is one.
    pub fn from_slug(slug: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|kind| kind.slug() == slug)
    }

    /// The kind with this `type` URI (`urn:classify-service:problem:overloaded`), if there is one.
    pub fn from_uri(uri: &str) -> Option<Self> {
        uri.strip_prefix(TYPE_PREFIX).and_then(Self::from_slug)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_slug_and_uri_and_an_error_status() {
        for (i, kind) in ProblemType::ALL.iter().enumerate() {
            assert_eq!(kind.uri(), format!("{TYPE_PREFIX}{}", kind.slug()));
            assert_eq!(ProblemType::from_uri(kind.uri()), Some(*kind));
            assert!((400..600).contains(&kind.status()), "{kind:?}");
            assert!(!kind.title().is_empty(), "{kind:?}");
            assert!(
                ProblemType::ALL[..i]
                    .iter()
                    .all(|k| k.slug() != kind.slug()),
                "{kind:?} repeats a slug"
            );
        }
        assert_eq!(ProblemType::from_uri("about:blank"), None);
        assert_eq!(
            ProblemType::from_uri("overloaded"),
            None,
            "the prefix is required"
        );
    }

    #[test]
    fn a_document_round_trips_and_an_unknown_type_still_parses() {
        let problem = Problem::new(ProblemType::Overloaded, "queue full", Some("r1".into()));
        let text = serde_json::to_string(&problem).unwrap();
        assert_eq!(
            text,
            r#"{"type":"urn:classify-service:problem:overloaded","title":"The service is overloaded","status":503,"detail":"queue full","request_id":"r1"}"#
        );
        assert_eq!(serde_json::from_str::<Problem>(&text).unwrap(), problem);

        let newer: Problem = serde_json::from_str(
            r#"{"type":"urn:classify-service:problem:brand-new","status":429}"#,
        )
        .unwrap();
        assert_eq!((newer.kind(), newer.status), (None, 429));
        assert_eq!((newer.title.as_str(), newer.detail.as_str()), ("", ""));
        let without_id = Problem::new(ProblemType::Internal, "x", None);
        assert!(
            !serde_json::to_string(&without_id)
                .unwrap()
                .contains("request_id")
        );
    }
}

//! What each fuzz target checks, as plain functions: the libFuzzer targets in `fuzz_targets/`
//! call them with generated inputs, and `tests/tests/fuzz_replay.rs` (stable, part of the test
//! command) calls them with every committed corpus file. Each function must return for any
//! input — an answer or a described error — without panicking, and whatever it accepts must
//! satisfy the documented bounds.

use std::sync::OnceLock;

use classify_ipc_adapter::messages::parse_request;
use classify_service::backend::Tensor;
use classify_service::config::{ChannelOrder, HexColour, ResizeFilter, ResizeMode};
use classify_service::http::check_json_body;
use classify_service::preprocess::{
    DecodeBudget, InputDType, InputSpec, Layout, PreprocessOptions, decode, to_tensor,
};
use greengrass_ipc::frame::{self, FrameReader, ReadOutcome};
use greengrass_ipc::pubsub::Payload;

/// Limits for the decode target: small enough that each run is fast, and under test.
const MAX_DIMENSION: u32 = 2048;
const MAX_PIXELS: u64 = 1 << 20;

/// Image bytes → upright RGB → a model tensor. The first byte picks the model input (layout,
/// dtype, size, channel order, filter), the rest is the image.
pub fn decode_preprocess(data: &[u8]) {
    let Some((&selector, image)) = data.split_first() else {
        return;
    };
    let options = PreprocessOptions {
        channel_order: if selector & 1 == 0 {
            ChannelOrder::Rgb
        } else {
            ChannelOrder::Bgr
        },
        filter: [
            ResizeFilter::Nearest,
            ResizeFilter::Bilinear,
            ResizeFilter::CatmullRom,
            ResizeFilter::Lanczos3,
        ][usize::from(selector >> 1 & 3)],
        resize: if selector & 0x20 == 0 {
            ResizeMode::Squash
        } else {
            ResizeMode::CentreCrop
        },
        background: HexColour([255, 255, 255]),
        max_dimension: MAX_DIMENSION,
        max_pixels: MAX_PIXELS,
        min_decoded_side: 2 * 224,
        budget: decode_budget(),
    };
    let (layout, dtype, height, width) = match selector >> 3 & 3 {
        0 => (Layout::Nhwc, InputDType::F32, 224, 224),
        1 => (Layout::Nchw, InputDType::F32, 120, 160),
        2 => (Layout::Nhwc, InputDType::U8, 64, 64),
        _ => (Layout::Nchw, InputDType::U8, 1, 3),
    };
    let shape = match layout {
        Layout::Nhwc => vec![1, i64::from(height), i64::from(width), 3],
        Layout::Nchw => vec![1, 3, i64::from(height), i64::from(width)],
    };
    let spec = InputSpec {
        name: "data".into(),
        shape,
        layout,
        height,
        width,
        dtype,
    };
    let decoded = match decode(image, &options) {
        Ok(decoded) => decoded,
        Err(e) => {
            assert!(!e.to_string().is_empty(), "errors say what is wrong");
            return;
        }
    };
    let (w, h) = decoded.dimensions();
    assert!(w > 0 && h > 0, "a decoded image has pixels");
    assert!(
        w <= MAX_DIMENSION && h <= MAX_DIMENSION,
        "{w}x{h} passed the dimension limit"
    );
    assert!(
        u64::from(w) * u64::from(h) <= MAX_PIXELS,
        "{w}x{h} passed the area limit"
    );
    let elements = (height * width * 3) as usize;
    match to_tensor(decoded, &spec, &options).expect("any decoded image can be preprocessed") {
        Tensor::F32(v) => {
            assert_eq!(v.len(), elements);
            assert!(
                v.iter().all(|x| (0.0..=255.0).contains(x)),
                "pixels stay in 0..=255"
            );
        }
        Tensor::U8(v) => assert_eq!(v.len(), elements),
    }
}

/// One budget for all runs, larger than any image the limits above let through.
fn decode_budget() -> std::sync::Arc<DecodeBudget> {
    static BUDGET: OnceLock<std::sync::Arc<DecodeBudget>> = OnceLock::new();
    BUDGET
        .get_or_init(|| {
            std::sync::Arc::new(DecodeBudget::new(256 << 20, std::time::Duration::ZERO))
        })
        .clone()
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime")
    })
}

/// Request bodies: the first byte chooses a JSON body (the service's `ClassifyJson`) or a
/// multipart body read field by field through axum's `Multipart`, as `POST /classify` does.
pub fn body_parsing(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    if selector & 1 == 0 {
        if let Err(message) = check_json_body(body) {
            assert!(!message.is_empty(), "a refused body is told why");
        }
        return;
    }
    let request = axum::http::Request::builder()
        .method("POST")
        .uri("/classify")
        .header("content-type", "multipart/form-data; boundary=fuzzboundary")
        .body(axum::body::Body::from(body.to_vec()))
        .expect("a valid request");
    runtime().block_on(async move {
        use axum::extract::{FromRequest, Multipart};
        let Ok(mut multipart) = Multipart::from_request(request, &()).await else {
            return;
        };
        let mut seen = 0usize;
        while let Ok(Some(field)) = multipart.next_field().await {
            let _name = field.name().map(str::to_owned);
            if let Ok(bytes) = field.bytes().await {
                seen += bytes.len();
            }
        }
        assert!(seen <= body.len(), "fields cannot hold more than the body");
    });
}

/// Labels files (`synset.txt` as a Python dict, one per line, JSON).
pub fn labels(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match classify_service::labels::parse(&text) {
        Ok(labels) => assert!(labels.len() <= text.len() + 1, "no labels from nothing"),
        Err(e) => assert!(!e.is_empty(), "errors say what is wrong"),
    }
}

/// Greengrass IPC frames: the whole-frame decoder (a decoded frame re-encodes to a frame that
/// decodes equal) and the streaming reader with its size bound.
pub fn ipc_frame(data: &[u8]) {
    if let Ok(decoded) = frame::decode(data) {
        let encoded = frame::encode(&decoded, usize::MAX).expect("a decoded frame re-encodes");
        assert_eq!(frame::decode(&encoded).expect("round trip"), decoded);
    }
    const MAX: usize = 4096;
    runtime().block_on(async {
        let mut reader = FrameReader::new(data, MAX);
        for _ in 0..64 {
            match reader.read().await {
                Ok(ReadOutcome::Frame(_)) => {}
                Ok(ReadOutcome::Eof) => break,
                Err(frame::FrameError::TooLarge { len, max }) => {
                    assert!(len > max && max == MAX);
                    if reader.skip(len).await.is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    });
}

/// Request messages on `local/inference`, as `binaryMessage` bytes and, when the bytes are
/// JSON, as `jsonMessage`.
pub fn ipc_message(data: &[u8]) {
    const TOPIC: &str = "local/inference";
    let binary = parse_request(&Payload::Binary(data.to_vec()), TOPIC);
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let json = parse_request(&Payload::Json(value), TOPIC);
        assert_eq!(json.is_ok(), binary.is_ok(), "both forms agree");
    }
    if let Err(rejected) = binary {
        assert!(!rejected.message.is_empty(), "rejections say why");
    }
}

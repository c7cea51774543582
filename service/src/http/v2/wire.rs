//! An infer request and its answer on the wire.
//!
//! The request is a JSON document, optionally followed by raw buffers (the binary tensor
//! extension): `Inference-Header-Content-Length` gives the JSON's length, and the bytes after
//! it belong, in order, to the inputs that carry `parameters.binary_data_size`. A BYTES
//! element is a 4-byte little-endian length followed by that many bytes; in JSON it is a
//! string. The answer is built the same way: outputs asked for in binary have their buffers
//! after the JSON, the others their `data` inside it, and no `parameters` object (Triton's C++
//! client refuses one without `binary_data_size`).

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::backend::Tensor;
use crate::http::problem::ApiError;

/// The header that gives the JSON part's length when binary data follows it.
pub(crate) const HEADER_LENGTH: &str = "inference-header-content-length";

/// The shape of a request, for error messages.
const REQUEST_SHAPE: &str = "{\"inputs\": [{\"name\", \"shape\", \"datatype\", and \"data\" or \
                             parameters.binary_data_size}], \"outputs\"?: [{\"name\"}]}";

/// The JSON part of an infer request; keys not listed here (kserve's client adds
/// `model_name`) are ignored.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"id": "frame-1", "inputs": [{"name": "data", "shape": [1],
    "datatype": "BYTES", "data": ["(an encoded image: send it binary, see the description)"]}],
    "outputs": [{"name": "logits", "parameters": {"classification": 5}}]}))]
pub struct InferRequest {
    /// Echoed in the answer (the request's `x-request-id` when absent).
    #[serde(default)]
    #[schema(value_type = String)]
    pub(crate) id: Option<String>,
    /// Request parameters: `binary_data_output: true` sends every output binary.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub(crate) parameters: Option<Map<String, Value>>,
    /// The input tensors.
    pub(crate) inputs: Vec<RequestInput>,
    /// The outputs asked for; none means every output.
    #[serde(default)]
    #[schema(value_type = Vec<RequestedOutput>)]
    pub(crate) outputs: Option<Vec<RequestedOutput>>,
}

/// One input tensor of a request: encoded images as `BYTES` with shape `[N]`, or the model's
/// own tensor (its datatype, N in place of the batch dimension).
#[derive(Debug, Deserialize, ToSchema)]
pub struct RequestInput {
    /// The model's input name.
    pub(crate) name: String,
    /// `[N]` for encoded images; the model's shape with N first for its tensor.
    pub(crate) shape: Vec<i64>,
    /// `BYTES`, or the model's input datatype.
    pub(crate) datatype: String,
    /// `binary_data_size`: the input's bytes after the JSON.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub(crate) parameters: Option<Map<String, Value>>,
    /// The elements in JSON, flat or nested; absent when they travel binary.
    #[serde(default)]
    #[schema(value_type = Vec<serde_json::Value>)]
    pub(crate) data: Option<JsonData>,
}

/// One output asked for.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RequestedOutput {
    /// The model's output name.
    pub(crate) name: String,
    /// `binary_data: true` sends it binary; `classification: K` sends the top K classes as
    /// BYTES `"probability:index:label"`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub(crate) parameters: Option<Map<String, Value>>,
}

/// Where an input's elements are.
#[derive(Debug)]
pub(crate) enum InputData {
    /// The JSON `data`, flattened as it was read.
    Json(JsonData),
    /// Its share of the bytes after the JSON.
    Binary(Bytes),
}

/// `parameters[key]` as a boolean (absent is false); anything else is the client's mistake.
pub(crate) fn flag(
    parameters: Option<&Map<String, Value>>,
    key: &str,
    whose: &str,
) -> Result<bool, ApiError> {
    match parameters.and_then(|p| p.get(key)) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(ApiError::InvalidBody(format!(
            "{whose}: parameters.{key} must be true or false, got {other}"
        ))),
    }
}

/// `parameters[key]` as a whole number, if present.
pub(crate) fn count(
    parameters: Option<&Map<String, Value>>,
    key: &str,
    whose: &str,
) -> Result<Option<u64>, ApiError> {
    match parameters.and_then(|p| p.get(key)) {
        None => Ok(None),
        Some(value) => value.as_u64().map(Some).ok_or_else(|| {
            ApiError::InvalidBody(format!(
                "{whose}: parameters.{key} must be a whole number of at least 0, got {value}"
            ))
        }),
    }
}

/// Splits a request body into its JSON document and each input's data.
pub(crate) fn parse(
    body: Bytes,
    header_length: Option<&str>,
) -> Result<(InferRequest, Vec<InputData>), ApiError> {
    let json_length = match header_length {
        None => body.len(),
        Some(text) => {
            let length: usize = text.trim().parse().map_err(|_| {
                ApiError::InvalidBody(format!(
                    "Inference-Header-Content-Length is {text:?}; it must be the JSON part's \
                     length in bytes"
                ))
            })?;
            if length > body.len() {
                return Err(ApiError::InvalidBody(format!(
                    "Inference-Header-Content-Length is {length}, but the body has only {} \
                     bytes",
                    body.len()
                )));
            }
            length
        }
    };
    let mut binary = body.clone();
    let json = binary.split_to(json_length);
    let mut request: InferRequest = serde_json::from_slice(&json).map_err(|e| {
        ApiError::InvalidBody(format!(
            "the inference request is not a valid JSON document ({e}); send {REQUEST_SHAPE}"
        ))
    })?;
    if request.inputs.is_empty() {
        return Err(ApiError::InvalidBody(format!(
            "the inference request has no inputs; send {REQUEST_SHAPE}"
        )));
    }
    let mut data = Vec::with_capacity(request.inputs.len());
    for input in &mut request.inputs {
        let whose = format!("input {:?}", input.name);
        let size = count(input.parameters.as_ref(), "binary_data_size", &whose)?;
        data.push(match (size, input.data.take()) {
            (Some(_), Some(_)) => {
                return Err(ApiError::InvalidBody(format!(
                    "{whose} has both data and parameters.binary_data_size; send one of them"
                )));
            }
            (None, None) => {
                return Err(ApiError::InvalidBody(format!(
                    "{whose} has no data: give \"data\", or parameters.binary_data_size and \
                     its bytes after the JSON (with Inference-Header-Content-Length)"
                )));
            }
            (None, Some(json)) => InputData::Json(json),
            (Some(size), None) => {
                let size = usize::try_from(size).unwrap_or(usize::MAX);
                if size > binary.len() {
                    return Err(ApiError::InvalidBody(format!(
                        "{whose} has binary_data_size {size}, but only {} bytes of binary data \
                         are left after the JSON{}",
                        binary.len(),
                        if header_length.is_none() {
                            " (send Inference-Header-Content-Length with the JSON's length)"
                        } else {
                            ""
                        }
                    )));
                }
                InputData::Binary(binary.split_to(size))
            }
        });
    }
    if !binary.is_empty() {
        return Err(ApiError::InvalidBody(format!(
            "{} bytes after the JSON belong to no input; each binary input's \
             parameters.binary_data_size must count its bytes",
            binary.len()
        )));
    }
    Ok((request, data))
}

/// The elements of a BYTES input: strings in JSON, length-prefixed in binary.
pub(crate) fn bytes_elements(data: InputData, whose: &str) -> Result<Vec<Bytes>, ApiError> {
    match data {
        InputData::Binary(mut buffer) => {
            let mut elements = Vec::new();
            while !buffer.is_empty() {
                let index = elements.len();
                if buffer.len() < 4 {
                    return Err(ApiError::InvalidBody(format!(
                        "{whose}: BYTES element {index} is cut short: {} bytes left where its \
                         4-byte length should be",
                        buffer.len()
                    )));
                }
                let prefix = buffer.split_to(4);
                let length = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
                let length = usize::try_from(length).unwrap_or(usize::MAX);
                if length > buffer.len() {
                    return Err(ApiError::InvalidBody(format!(
                        "{whose}: BYTES element {index} is cut short: its length says {length} \
                         bytes, {} are left",
                        buffer.len()
                    )));
                }
                elements.push(buffer.split_to(length));
            }
            Ok(elements)
        }
        InputData::Json(data) => {
            if let Some((index, what)) = data.first_not(Leaf::String) {
                return Err(ApiError::InvalidBody(format!(
                    "{whose}: BYTES element {index} is {what}; in JSON each element is a string \
                     (an encoded image can only travel binary)"
                )));
            }
            Ok(data.strings)
        }
    }
}

/// The elements of a numeric input in the model's own element type, flat and row-major:
/// `expected` of them, else an error naming both counts.
pub(crate) fn tensor_elements(
    data: InputData,
    datatype: TensorType,
    expected: usize,
    whose: &str,
) -> Result<Tensor, ApiError> {
    let name = datatype.name();
    match data {
        InputData::Binary(buffer) => {
            let bytes = expected * datatype.size();
            if buffer.len() != bytes {
                return Err(ApiError::InvalidBody(format!(
                    "{whose} has {} bytes of binary data; {expected} {name} elements are \
                     {bytes} bytes",
                    buffer.len()
                )));
            }
            Ok(match datatype {
                TensorType::Fp32 => Tensor::F32(
                    buffer
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect(),
                ),
                TensorType::Uint8 => Tensor::U8(buffer.to_vec()),
            })
        }
        InputData::Json(data) => {
            if data.count != expected {
                return Err(ApiError::InvalidBody(format!(
                    "{whose} has {} elements in data; its shape holds {expected}",
                    data.count
                )));
            }
            let takes = match datatype {
                TensorType::Fp32 => "numbers",
                TensorType::Uint8 => "whole numbers from 0 to 255",
            };
            let refused = |index: usize, what: &str| {
                ApiError::InvalidBody(format!(
                    "{whose}: element {index} is {what}; {name} takes {takes}"
                ))
            };
            if let Some((index, what)) = data.first_not(Leaf::Number) {
                return Err(refused(index, &what));
            }
            Ok(match datatype {
                TensorType::Fp32 => Tensor::F32(data.numbers),
                TensorType::Uint8 => Tensor::U8(
                    data.numbers
                        .iter()
                        .enumerate()
                        .map(|(index, &v)| {
                            if v.fract() == 0.0 && (0.0..=255.0).contains(&v) {
                                Ok(v as u8)
                            } else {
                                Err(refused(index, &v.to_string()))
                            }
                        })
                        .collect::<Result<_, _>>()?,
                ),
            })
        }
    }
}

/// The element types a model input can have here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TensorType {
    Fp32,
    Uint8,
}

impl TensorType {
    /// The v2 datatype.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Fp32 => "FP32",
            Self::Uint8 => "UINT8",
        }
    }

    /// Bytes per element.
    fn size(self) -> usize {
        match self {
            Self::Fp32 => 4,
            Self::Uint8 => 1,
        }
    }
}

/// What a leaf of JSON `data` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leaf {
    Number,
    String,
}

/// An input's JSON `data`, flattened row-major while it is read — no tree of JSON values, so
/// a tensor in JSON takes at most its numbers as f32 (4 bytes each, no more than twice the
/// text) or its strings as bytes. Numbers and strings are kept apart; the first leaf of the
/// other kind, or of neither (`true`, `null`, an object), is remembered with its index for the
/// error message.
#[derive(Debug, Default)]
pub(crate) struct JsonData {
    /// Every leaf.
    pub(crate) count: usize,
    numbers: Vec<f32>,
    strings: Vec<Bytes>,
    /// The first leaf that is not a number, and the first that is not a string.
    not_number: Option<(usize, String)>,
    not_string: Option<(usize, String)>,
}

impl JsonData {
    /// The first leaf that is not of `kind`: its index and what it is.
    fn first_not(&self, kind: Leaf) -> Option<(usize, String)> {
        match kind {
            Leaf::Number => self.not_number.clone(),
            Leaf::String => self.not_string.clone(),
        }
    }

    fn number(&mut self, value: f64) {
        let index = self.next();
        if !(value as f32).is_finite() {
            self.not_number
                .get_or_insert((index, format!("{value}, beyond FP32's range")));
        }
        self.not_string
            .get_or_insert((index, format!("the number {value}")));
        self.numbers.push(value as f32);
    }

    fn string(&mut self, value: &str) {
        let index = self.next();
        self.not_number
            .get_or_insert((index, format!("the string {value:?}")));
        self.strings.push(Bytes::copy_from_slice(value.as_bytes()));
    }

    fn other(&mut self, what: &str) {
        let index = self.next();
        self.not_number.get_or_insert((index, what.to_owned()));
        self.not_string.get_or_insert((index, what.to_owned()));
    }

    fn next(&mut self) -> usize {
        self.count += 1;
        self.count - 1
    }
}

impl<'de> Deserialize<'de> for JsonData {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut data = JsonData::default();
        serde::de::DeserializeSeed::deserialize(Leaves(&mut data), deserializer)?;
        Ok(data)
    }
}

/// Reads nested arrays into a [`JsonData`], leaf by leaf.
struct Leaves<'a>(&'a mut JsonData);

impl<'de> serde::de::DeserializeSeed<'de> for Leaves<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Leaves<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of numbers or strings, flat or nested")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Leaves(&mut *self.0))?.is_some() {}
        Ok(())
    }

    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        self.0.number(v);
        Ok(())
    }

    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.0.number(v as f64);
        Ok(())
    }

    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.0.number(v as f64);
        Ok(())
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.0.string(v);
        Ok(())
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.0.other(&v.to_string());
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.0.other("null");
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        self.0.other("an object");
        Ok(())
    }
}

/// An output's elements, in the type the answer carries them.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum OutputData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    U8(Vec<u8>),
    I8(Vec<i8>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    Bytes(Vec<String>),
}

impl OutputData {
    /// `values` in the model's output element type (the runtimes widen every type they
    /// produce to f64 without loss); a type they do not produce is answered as FP32.
    pub(crate) fn numbers(dtype: &str, values: Vec<f64>) -> Self {
        match dtype {
            "float64" => Self::F64(values),
            "uint8" => Self::U8(values.into_iter().map(|v| v as u8).collect()),
            "int8" => Self::I8(values.into_iter().map(|v| v as i8).collect()),
            "int32" => Self::I32(values.into_iter().map(|v| v as i32).collect()),
            "int64" => Self::I64(values.into_iter().map(|v| v as i64).collect()),
            _ => Self::F32(values.into_iter().map(|v| v as f32).collect()),
        }
    }

    /// The v2 datatype.
    pub(crate) fn datatype(&self) -> &'static str {
        match self {
            Self::F32(_) => "FP32",
            Self::F64(_) => "FP64",
            Self::U8(_) => "UINT8",
            Self::I8(_) => "INT8",
            Self::I32(_) => "INT32",
            Self::I64(_) => "INT64",
            Self::Bytes(_) => "BYTES",
        }
    }

    /// The raw little-endian buffer of the binary extension.
    fn write(&self, into: &mut BytesMut) {
        fn each<T: Copy, const N: usize>(
            into: &mut BytesMut,
            values: &[T],
            bytes: fn(T) -> [u8; N],
        ) {
            values
                .iter()
                .for_each(|&v| into.extend_from_slice(&bytes(v)));
        }
        match self {
            Self::F32(v) => each(into, v, f32::to_le_bytes),
            Self::F64(v) => each(into, v, f64::to_le_bytes),
            Self::U8(v) => into.extend_from_slice(v),
            Self::I8(v) => each(into, v, i8::to_le_bytes),
            Self::I32(v) => each(into, v, i32::to_le_bytes),
            Self::I64(v) => each(into, v, i64::to_le_bytes),
            Self::Bytes(v) => v.iter().for_each(|s| {
                into.extend_from_slice(&(s.len() as u32).to_le_bytes());
                into.extend_from_slice(s.as_bytes());
            }),
        }
    }
}

/// One output of an answer.
#[derive(Debug)]
pub(crate) struct OutputTensor {
    pub(crate) name: String,
    pub(crate) shape: Vec<usize>,
    pub(crate) data: OutputData,
    /// Sent after the JSON instead of inside it.
    pub(crate) binary: bool,
}

/// The JSON part of an infer answer.
#[derive(Serialize, ToSchema)]
#[schema(as = InferResponse, example = json!({"model_name": "efficientnet-lite0",
    "model_version": "1", "id": "frame-1", "outputs": [{"name": "logits", "datatype": "BYTES",
    "shape": [1, 2], "data": ["0.790548:285:Egyptian cat", "0.088007:282:tiger cat"]}]}))]
pub struct AnswerHeader<'a> {
    /// The model's name.
    model_name: &'a str,
    /// Its version.
    model_version: &'a str,
    /// The request's `id`, or its `x-request-id`.
    id: &'a str,
    /// The outputs asked for (every output when none were named).
    outputs: Vec<OutputHeader<'a>>,
}

/// One output of an answer: its `data` here, or `parameters.binary_data_size` bytes after the
/// JSON.
#[derive(Serialize, ToSchema)]
#[schema(as = InferOutput)]
pub struct OutputHeader<'a> {
    /// The output's name.
    name: &'a str,
    /// The model's output datatype, or `BYTES` for a classification.
    datatype: &'static str,
    /// `[N, classes]`, or `[N, K]` for a classification.
    #[schema(value_type = Vec<usize>)]
    shape: &'a [usize],
    /// Present only for a binary output.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = BinarySize, required = false)]
    parameters: Option<BinarySize>,
    /// The elements, row-major: numbers, or strings for BYTES (absent for a binary output).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Vec<serde_json::Value>, required = false)]
    data: Option<&'a OutputData>,
}

/// The size of a binary output after the JSON.
#[derive(Serialize, ToSchema)]
pub struct BinarySize {
    /// Bytes.
    binary_data_size: usize,
}

/// An encoded answer: the body, and the JSON part's length when binary data follows it.
#[derive(Debug)]
pub(crate) struct EncodedAnswer {
    pub(crate) body: Bytes,
    pub(crate) header_length: Option<usize>,
}

/// Encodes an answer: JSON only, or JSON then the binary outputs' buffers in order.
pub(crate) fn encode(
    model_name: &str,
    model_version: &str,
    id: &str,
    outputs: &[OutputTensor],
) -> Result<EncodedAnswer, serde_json::Error> {
    let mut buffers = BytesMut::new();
    let mut headers = Vec::with_capacity(outputs.len());
    for output in outputs {
        let (parameters, data) = if output.binary {
            let before = buffers.len();
            output.data.write(&mut buffers);
            let size = buffers.len() - before;
            (
                Some(BinarySize {
                    binary_data_size: size,
                }),
                None,
            )
        } else {
            (None, Some(&output.data))
        };
        headers.push(OutputHeader {
            name: &output.name,
            datatype: output.data.datatype(),
            shape: &output.shape,
            parameters,
            data,
        });
    }
    let json = serde_json::to_vec(&AnswerHeader {
        model_name,
        model_version,
        id,
        outputs: headers,
    })?;
    if buffers.is_empty() && outputs.iter().all(|o| !o.binary) {
        return Ok(EncodedAnswer {
            body: json.into(),
            header_length: None,
        });
    }
    let header_length = json.len();
    let mut body = BytesMut::from(&json[..]);
    body.extend_from_slice(&buffers);
    Ok(EncodedAnswer {
        body: body.freeze(),
        header_length: Some(header_length),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binary_request(json: &str, tail: &[u8]) -> (Bytes, String) {
        let mut body = json.as_bytes().to_vec();
        body.extend_from_slice(tail);
        (body.into(), json.len().to_string())
    }

    fn message(e: ApiError) -> String {
        e.to_string()
    }

    fn json_data(text: &str) -> InputData {
        InputData::Json(serde_json::from_str(text).unwrap())
    }

    #[test]
    fn binary_inputs_take_their_bytes_in_order_and_bytes_elements_split() {
        let json = r#"{"inputs":[
            {"name":"a","shape":[2],"datatype":"BYTES","parameters":{"binary_data_size":11}},
            {"name":"b","shape":[1],"datatype":"BYTES","data":["hi"]}],"model_name":"x"}"#;
        let mut tail = Vec::new();
        for element in [&b"abc"[..], &b""[..]] {
            tail.extend_from_slice(&(element.len() as u32).to_le_bytes());
            tail.extend_from_slice(element);
        }
        assert_eq!(tail.len(), 11);
        let (body, length) = binary_request(json, &tail);
        let (request, mut data) = parse(body, Some(&length)).unwrap();
        assert_eq!(request.inputs.len(), 2);
        let b = bytes_elements(data.pop().unwrap(), "b").unwrap();
        assert_eq!(b, vec![Bytes::from_static(b"hi")]);
        let a = bytes_elements(data.pop().unwrap(), "a").unwrap();
        assert_eq!(a, vec![Bytes::from_static(b"abc"), Bytes::new()]);
    }

    #[test]
    fn sizes_that_do_not_add_up_are_named() {
        let json = r#"{"inputs":[{"name":"a","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":8}}]}"#;
        let (body, length) = binary_request(json, b"1234");
        let e = message(parse(body.clone(), Some(&length)).unwrap_err());
        assert!(
            e.contains("binary_data_size 8") && e.contains("only 4"),
            "{e}"
        );
        // Without the header the whole body is JSON: the tail makes it invalid.
        let e = message(parse(body, None).unwrap_err());
        assert!(e.contains("not a valid JSON document"), "{e}");

        let (body, length) = binary_request(json, b"123456789");
        let e = message(parse(body, Some(&length)).unwrap_err());
        assert!(
            e.contains("1 bytes after the JSON belong to no input"),
            "{e}"
        );

        let e = message(parse(Bytes::from_static(b"{}"), Some("99")).unwrap_err());
        assert!(e.contains("Inference-Header-Content-Length is 99"), "{e}");
        let e = message(parse(Bytes::from_static(br#"{"inputs":[]}"#), None).unwrap_err());
        assert!(e.contains("no inputs"), "{e}");
    }

    #[test]
    fn a_cut_bytes_element_is_named() {
        let mut tail = 10u32.to_le_bytes().to_vec();
        tail.extend_from_slice(b"short");
        let e = message(bytes_elements(InputData::Binary(tail.into()), "input \"a\"").unwrap_err());
        assert!(
            e.contains("element 0 is cut short") && e.contains("says 10"),
            "{e}"
        );
        let e = message(bytes_elements(json_data("[[1]]"), "input \"a\"").unwrap_err());
        assert!(e.contains("element 0 is the number 1"), "{e}");
    }

    #[test]
    fn tensors_are_read_exactly_from_binary_or_nested_json() {
        let floats: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let read = tensor_elements(
            InputData::Binary(floats.into()),
            TensorType::Fp32,
            2,
            "input \"x\"",
        );
        assert_eq!(read.unwrap(), Tensor::F32(vec![1.5, -2.0]));
        let e = message(
            tensor_elements(
                InputData::Binary(Bytes::from_static(&[0; 7])),
                TensorType::Fp32,
                2,
                "input \"x\"",
            )
            .unwrap_err(),
        );
        assert!(
            e.contains("7 bytes") && e.contains("2 FP32 elements are 8 bytes"),
            "{e}"
        );

        let read = tensor_elements(
            json_data("[[[1, 2]], [[3, 255]]]"),
            TensorType::Uint8,
            4,
            "x",
        );
        assert_eq!(read.unwrap(), Tensor::U8(vec![1, 2, 3, 255]));
        let e =
            message(tensor_elements(json_data("[1, 256]"), TensorType::Uint8, 2, "x").unwrap_err());
        assert!(
            e.contains("element 1 is 256") && e.contains("0 to 255"),
            "{e}"
        );
        let e = message(tensor_elements(json_data("[1.0]"), TensorType::Fp32, 2, "x").unwrap_err());
        assert!(e.contains("1 elements in data; its shape holds 2"), "{e}");
    }

    #[test]
    fn json_data_is_read_flat_and_names_its_first_wrong_leaf() {
        let InputData::Json(data) = json_data(r#"[["a", "b"], [1.5, true, {"x": [1]}]]"#) else {
            unreachable!()
        };
        assert_eq!(data.count, 5);
        assert_eq!(
            data.first_not(Leaf::Number),
            Some((0, "the string \"a\"".into()))
        );
        assert_eq!(
            data.first_not(Leaf::String),
            Some((2, "the number 1.5".into()))
        );
        let strings = bytes_elements(json_data(r#"[["a"], ["bc"]]"#), "x").unwrap();
        assert_eq!(
            strings,
            vec![Bytes::from_static(b"a"), Bytes::from_static(b"bc")]
        );
        let e =
            message(tensor_elements(json_data("[1, null]"), TensorType::Fp32, 2, "x").unwrap_err());
        assert!(e.contains("element 1 is null; FP32 takes numbers"), "{e}");
        let e =
            message(tensor_elements(json_data("[1e300]"), TensorType::Fp32, 1, "x").unwrap_err());
        assert!(e.contains("beyond FP32's range"), "{e}");
        let e =
            message(tensor_elements(json_data("[2.5]"), TensorType::Uint8, 1, "x").unwrap_err());
        assert!(e.contains("element 0 is 2.5"), "{e}");
    }

    #[test]
    fn answers_put_binary_outputs_after_the_json_and_no_parameters_on_json_ones() {
        let outputs = [
            OutputTensor {
                name: "scores".into(),
                shape: vec![1, 2],
                data: OutputData::numbers("float32", vec![0.1, 2.0]),
                binary: true,
            },
            OutputTensor {
                name: "labels".into(),
                shape: vec![1, 1],
                data: OutputData::Bytes(vec!["0.9:1:cat".into()]),
                binary: false,
            },
        ];
        let answer = encode("m", "1", "r", &outputs).unwrap();
        let length = answer.header_length.unwrap();
        let header: Value = serde_json::from_slice(&answer.body[..length]).unwrap();
        assert_eq!(
            header,
            serde_json::json!({"model_name": "m", "model_version": "1", "id": "r", "outputs": [
                {"name": "scores", "datatype": "FP32", "shape": [1, 2],
                 "parameters": {"binary_data_size": 8}},
                {"name": "labels", "datatype": "BYTES", "shape": [1, 1], "data": ["0.9:1:cat"]},
            ]})
        );
        let tail = &answer.body[length..];
        assert_eq!(&tail[..4], &0.1f32.to_le_bytes());
        assert_eq!(&tail[4..], &2.0f32.to_le_bytes());

        let json_only = encode("m", "1", "r", &outputs[1..]).unwrap();
        assert_eq!(json_only.header_length, None);
        // f32 values keep their shortest form in JSON.
        let scores = OutputTensor {
            binary: false,
            ..outputs.into_iter().next().unwrap()
        };
        let text =
            String::from_utf8(encode("m", "1", "r", &[scores]).unwrap().body.to_vec()).unwrap();
        assert!(text.contains("\"data\":[0.1,2.0]"), "{text}");
    }
}

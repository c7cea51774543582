//! What each generated model is: its input contract and the arithmetic that fixes its answers.

pub use dlr_sys::{DType, Layout};

/// One generated model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColourModel {
    /// Directory name under the models folder.
    pub name: &'static str,
    /// Input layout.
    pub layout: Layout,
    /// Input height in pixels.
    pub height: i64,
    /// Input width in pixels.
    pub width: i64,
    /// Input element type: `float32` raw 0..255 pixel values, or `uint8` pixels.
    pub dtype: DType,
    /// Rounds of 3x3 box blur before pooling: 0 for the light models; the heavy model's
    /// count sets its run time (see `cargo xtask setup --heavy-passes`).
    pub blur_passes: u32,
    /// A gate before the dense layer (`kernels/gate.c`): each run waits while `gate-closed`
    /// exists in the model directory, so a test can hold a worker for as long as it needs.
    pub gated: bool,
}

/// Input name of every generated model (as the ModelStore ResNet-50's).
pub const INPUT_NAME: &str = "data";

impl ColourModel {
    /// The demo model: exactly the ModelStore ResNet-50's input/output contract
    /// (`data`, float32 `[1,224,224,3]` NHWC raw pixels, float32 `[1,N]` logits).
    pub const COLOUR: ColourModel = ColourModel {
        name: "colour",
        layout: Layout::Nhwc,
        height: 224,
        width: 224,
        dtype: DType::F32,
        blur_passes: 0,
        gated: false,
    };
    /// NCHW layout and a non-square size, to pin layout and resizing.
    pub const COLOUR_NCHW: ColourModel = ColourModel {
        name: "colour-nchw",
        layout: Layout::Nchw,
        height: 120,
        width: 160,
        dtype: DType::F32,
        blur_passes: 0,
        gated: false,
    };
    /// A uint8 input, to exercise the binding's non-float path.
    pub const COLOUR_U8: ColourModel = ColourModel {
        name: "colour-u8",
        layout: Layout::Nhwc,
        height: 64,
        width: 64,
        dtype: DType::U8,
        blur_passes: 0,
        gated: false,
    };
    /// Default blur rounds of the heavy model (about 100–300 ms per run on a 2-core machine).
    pub const DEFAULT_HEAVY_PASSES: u32 = 1000;

    /// The compute-heavy model for benchmarks; same contract as [`Self::COLOUR`].
    pub const fn heavy(blur_passes: u32) -> ColourModel {
        ColourModel {
            name: "heavy",
            layout: Layout::Nhwc,
            height: 224,
            width: 224,
            dtype: DType::F32,
            blur_passes,
            gated: false,
        }
    }

    /// The gated model: [`Self::COLOUR`] with the gate kernel (see [`Self::gated`]'s field).
    pub const GATED: ColourModel = ColourModel {
        name: "gated",
        gated: true,
        ..Self::COLOUR
    };

    /// The input shape as DLR reports it.
    pub fn input_shape(&self) -> [i64; 4] {
        match self.layout {
            Layout::Nhwc => [1, self.height, self.width, 3],
            Layout::Nchw => [1, 3, self.height, self.width],
        }
    }

    /// The output shape: `[1, number of classes]`.
    pub fn output_shape(&self) -> [i64; 2] {
        [1, CLASSES.len() as i64]
    }
}

/// Every model `generate_all` writes, the heavy one with the given blur rounds.
pub fn all_models(heavy_passes: u32) -> Vec<ColourModel> {
    vec![
        ColourModel::COLOUR,
        ColourModel::COLOUR_NCHW,
        ColourModel::COLOUR_U8,
        ColourModel::heavy(heavy_passes),
        ColourModel::GATED,
    ]
}

/// The classes: a label and its prototype colour (RGB). One label has an apostrophe, as
/// ImageNet's "jack-o'-lantern" does, to exercise `synset.txt` quoting.
pub const CLASSES: [(&str, [u8; 3]); 10] = [
    ("black", [0, 0, 0]),
    ("white", [255, 255, 255]),
    ("red", [255, 0, 0]),
    ("green", [0, 255, 0]),
    ("blue", [0, 0, 255]),
    ("yellow", [255, 255, 0]),
    ("cyan", [0, 255, 255]),
    ("magenta", [255, 0, 255]),
    ("grey", [128, 128, 128]),
    ("jack-o'-lantern", [255, 128, 0]),
];

/// Per-channel mean subtracted inside the graph (ImageNet's, in 0..255 units, RGB order).
pub const MEAN: [f32; 3] = [123.68, 116.779, 103.939];
/// Per-channel standard deviation divided inside the graph.
pub const STD: [f32; 3] = [58.393, 57.12, 57.375];

/// A class colour in the normalised space the graph pools in.
pub fn normalised_prototype(rgb: [u8; 3]) -> [f64; 3] {
    std::array::from_fn(|c| (f64::from(rgb[c]) - f64::from(MEAN[c])) / f64::from(STD[c]))
}

/// The dense layer: row `k` is `2·p_k` and bias `k` is `-|p_k|²`, so that
/// `logit_k = |x|² - |x - p_k|²`: the nearest class colour has the largest logit.
pub(crate) fn dense_weights() -> (Vec<f32>, Vec<f32>) {
    let mut weight = Vec::with_capacity(CLASSES.len() * 3);
    let mut bias = Vec::with_capacity(CLASSES.len());
    for (_, rgb) in CLASSES {
        let p = normalised_prototype(rgb);
        weight.extend(p.iter().map(|v| (2.0 * v) as f32));
        bias.push(-(p.iter().map(|v| v * v).sum::<f64>()) as f32);
    }
    (weight, bias)
}

/// The logits a colour model outputs for an image whose mean colour (RGB, 0..255) is
/// `mean_rgb`, computed in `f64` from the same f32 parameters the model holds.
pub fn expected_logits(mean_rgb: [f64; 3]) -> Vec<f64> {
    let x: [f64; 3] =
        std::array::from_fn(|c| (mean_rgb[c] - f64::from(MEAN[c])) / f64::from(STD[c]));
    let (weight, bias) = dense_weights();
    (0..CLASSES.len())
        .map(|k| {
            f64::from(bias[k])
                + (0..3)
                    .map(|c| f64::from(weight[k * 3 + c]) * x[c])
                    .sum::<f64>()
        })
        .collect()
}

/// `synset.txt` as the ModelStore ships it: a Python dict literal over several lines, labels
/// in single quotes unless they contain one, no trailing newline.
pub fn synset_text() -> String {
    let entries: Vec<String> = CLASSES
        .iter()
        .enumerate()
        .map(|(i, (label, _))| {
            if label.contains('\'') {
                format!("{i}: \"{label}\"")
            } else {
                format!("{i}: '{label}'")
            }
        })
        .collect();
    format!("{{{}}}", entries.join(",\n "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argmax(v: &[f64]) -> usize {
        (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap()
    }

    #[test]
    fn each_prototype_is_its_own_class() {
        for (k, (label, rgb)) in CLASSES.iter().enumerate() {
            let logits = expected_logits(rgb.map(f64::from));
            assert_eq!(argmax(&logits), k, "{label}");
        }
    }

    #[test]
    fn swapped_channels_turn_red_into_blue() {
        assert_eq!(
            CLASSES[argmax(&expected_logits([0.0, 0.0, 255.0]))].0,
            "blue"
        );
    }

    #[test]
    fn synset_looks_like_the_model_store_one() {
        let text = synset_text();
        assert!(text.starts_with("{0: 'black',\n 1: 'white',"), "{text}");
        assert!(text.contains("9: \"jack-o'-lantern\"}"), "{text}");
        assert!(!text.ends_with('\n'));
    }
}

//! Generated DLR test models: complete TVM graph-executor model directories (graph JSON, params
//! file, kernel library, `compiled.meta`, `synset.txt`) that load and run through the real
//! libdlr exactly like the Greengrass ModelStore's ResNet-50, but whose answers are predictable.
//!
//! Every model here is a "colour" classifier: it normalises raw 0..255 pixels inside the
//! graph, averages each channel, and scores the mean colour against [`CLASSES`] with a dense
//! layer whose logits are `-(distance to the class colour)²` up to a per-image constant. So a
//! uniform red image is class "red", a BGR mix-up turns it "blue", and a layout mix-up turns it
//! into a grey. [`expected_logits`] computes the exact answer for any mean colour.
//!
//! Nothing here is downloaded or committed: `cargo xtask setup` generates the models into the
//! git-ignored `generated/` folder (see [`paths`]), compiling the kernels in `kernels/` with
//! the system C compiler.

mod generate;
mod graph;
mod params;
pub mod paths;
mod spec;

pub use generate::{
    GATE_KERNEL_SOURCE, GenerateError, KERNEL_FILE_NAME, KERNEL_SOURCE, compile_kernels_with,
    generate, generate_all, model_files,
};
pub use spec::{
    CLASSES, ColourModel, DType, INPUT_NAME, Layout, MEAN, STD, all_models, expected_logits,
    normalised_prototype, synset_text,
};

//! The two nucleus implementations and the limits that tell them apart.

use crate::frame;

/// Which nucleus implementation is on the other end of the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Flavour {
    /// The Java Greengrass nucleus: frames up to 24 MiB.
    Classic,
    /// Greengrass nucleus lite: frames under 10000 bytes (a limit that is also safe for classic).
    Lite,
}

impl Flavour {
    /// Largest frame the nucleus of this flavour accepts from a client.
    pub fn max_outgoing_frame(self) -> usize {
        match self {
            Self::Classic => frame::CLASSIC_MAX_FRAME,
            Self::Lite => frame::LITE_MAX_FRAME,
        }
    }
}

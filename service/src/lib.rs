//! Local HTTP image-classification service backed by DLR.

//! Architecture templates: IR graphs of known networks with their framework's
//! module names, so weights from any format can be bound by key.

pub mod inception_v3;

pub use inception_v3::{
    InceptionV3, InceptionV3Config, TemplateError, Widths, bind_state_dict, inception_v3,
};

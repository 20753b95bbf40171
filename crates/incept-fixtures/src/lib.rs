//! The committed fixtures (`fixtures/`) and their golden data, for tests.
//!
//! Tests open fixtures only through this crate, so paths and file layouts
//! live in one place. Missing committed files are a broken checkout and
//! panic with a message; the optional full-size set (`fixtures/full/`) is
//! `None` when absent, and the caller prints that it skipped.

#![allow(clippy::print_stderr)]

use std::path::{Path, PathBuf};

use incept_ir::Tensor;
use incept_safetensors::SafetensorsFile;

/// The small committed models.
pub const TINY: [&str; 3] = ["tiny_aux", "tiny_noaux", "tiny_transform"];

/// The repository's `fixtures/` folder.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// One fixture model's folder.
#[derive(Clone, Debug)]
pub struct Fixture {
    /// Folder name (`tiny_aux`, `full`).
    pub name: String,
    /// The folder.
    pub dir: PathBuf,
    /// Its `meta.json`.
    pub meta: serde_json::Value,
}

impl Fixture {
    /// A committed fixture. Panics if it is not there: the checkout is broken.
    pub fn open(name: &str) -> Fixture {
        Self::try_open(name).unwrap_or_else(|| panic!("fixture {name} is missing from {}", root().display()))
    }

    /// The full-size set made by `cargo xtask fixtures --full`, if present.
    /// Prints a visible skip message when it is not.
    pub fn full() -> Option<Fixture> {
        let f = Self::try_open("full");
        if f.is_none() {
            eprintln!("skipped: fixtures/full is absent (make it with `cargo xtask fixtures --full`)");
        }
        f
    }

    fn try_open(name: &str) -> Option<Fixture> {
        let dir = root().join(name);
        let meta = std::fs::read(dir.join("meta.json")).ok()?;
        let meta = serde_json::from_slice(&meta).ok()?;
        Some(Fixture { name: name.to_string(), dir, meta })
    }

    /// A file of the fixture.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// A boolean or integer setting from `meta.json`'s `config`.
    pub fn config(&self, key: &str) -> &serde_json::Value {
        &self.meta["config"][key]
    }

    /// Whether the model was made with `transform_input=True`.
    pub fn transform_input(&self) -> bool {
        self.config("transform_input").as_bool().unwrap_or(false)
    }

    /// `golden.safetensors`: PyTorch's outputs.
    pub fn golden(&self) -> SafetensorsFile {
        read(&self.path("golden.safetensors"))
    }

    /// `ort.safetensors`: onnxruntime's outputs.
    pub fn ort(&self) -> SafetensorsFile {
        read(&self.path("ort.safetensors"))
    }

    /// The golden input batch (`input`) or the small one module outputs were
    /// recorded on (`modules_input`).
    pub fn input(&self, key: &str) -> Tensor {
        let local = self.path("input.safetensors");
        let file = if local.exists() { local } else { root().join("input.safetensors") };
        take(read(&file), key, &file)
    }
}

/// A tensor of a golden file; panics naming the key if absent.
pub fn take(file: SafetensorsFile, key: &str, path: &Path) -> Tensor {
    file.tensors
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, t)| t)
        .unwrap_or_else(|| panic!("{} has no tensor `{key}`", path.display()))
}

fn read(path: &Path) -> SafetensorsFile {
    incept_safetensors::read(path).unwrap_or_else(|e| panic!("cannot read fixture: {e}"))
}

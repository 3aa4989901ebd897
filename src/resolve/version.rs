//! The solver's vocabulary: packages, versions and version sets.
//!
//! Besides the prompt packages there are two virtual packages. The project
//! itself is the root. `base-model` stands for the frozen model: its
//! "versions" are the (fingerprint, hidden size, prompt length) combinations,
//! the project depends on the ones it accepts and every prompt version
//! depends on exactly its own. Since pubgrub picks one version per package,
//! all chosen prompts then share one base model, and a mismatch is an
//! ordinary incompatibility that shows up in pubgrub's explanation.

use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

use pubgrub::Ranges;
use registry_index::Checksum;
use semver::Version;

/// A node in the dependency graph.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pkg {
    /// The project (`attempt.toml`).
    Root,
    /// The frozen base model every prompt must be trained for.
    BaseModel,
    /// A prompt package or prompt set.
    Prompt(Arc<str>),
}

impl fmt::Display for Pkg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pkg::Root => f.write_str("the project"),
            Pkg::BaseModel => f.write_str("base-model"),
            Pkg::Prompt(name) => f.write_str(name),
        }
    }
}

/// Identity of a base model as far as a prompt is concerned.
///
/// Ordered fingerprint first, so "this fingerprint, any size" and "this
/// fingerprint and size, any length" are contiguous intervals.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelKey {
    pub fingerprint: Checksum,
    pub hidden_size: u32,
    /// 0 for prompt sets, which carry no tensor of their own.
    pub prompt_length: u32,
}

/// Short form of a fingerprint for messages: `sha256:` and 12 hex digits.
pub fn short_fingerprint(c: &Checksum) -> String {
    format!("sha256:{}…", &c.hex()[..12])
}

impl fmt::Display for ModelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", short_fingerprint(&self.fingerprint))?;
        match (self.hidden_size, self.prompt_length) {
            (0, _) => Ok(()),
            (h, 0) => write!(f, " (hidden size {h})"),
            (h, l) => write!(f, " (hidden size {h}, prompt length {l})"),
        }
    }
}

/// A version of any [`Pkg`]: semver for prompts, a [`ModelKey`] for `base-model`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PkgVersion {
    Semver(Version),
    Model(ModelKey),
}

impl fmt::Display for PkgVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PkgVersion::Semver(v) => write!(f, "{v}"),
            PkgVersion::Model(k) => write!(f, "{k}"),
        }
    }
}

pub type VersionRange = Ranges<PkgVersion>;

/// What the project accepts as its base model: the fingerprint and, where
/// known, hidden size and prompt length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRequirement {
    pub fingerprint: Checksum,
    pub hidden_size: Option<u32>,
    pub prompt_length: Option<u32>,
}

impl ModelRequirement {
    /// The interval of model keys this requirement admits.
    pub fn range(&self) -> VersionRange {
        let key = |h: u32, l: u32| {
            PkgVersion::Model(ModelKey { fingerprint: self.fingerprint.clone(), hidden_size: h, prompt_length: l })
        };
        match (self.hidden_size, self.prompt_length) {
            (Some(h), Some(l)) => VersionRange::singleton(key(h, l)),
            (Some(h), None) => between(key(h, 0), key(h, u32::MAX)),
            // A length without a size cannot be an interval; the size then
            // comes from the prompts and the length is checked on each key.
            (None, _) => between(key(0, 0), key(u32::MAX, u32::MAX)),
        }
    }

    pub fn admits(&self, key: &ModelKey) -> bool {
        key.fingerprint == self.fingerprint
            && self.hidden_size.is_none_or(|h| h == key.hidden_size)
            && self.prompt_length.is_none_or(|l| key.prompt_length == 0 || l == key.prompt_length)
    }
}

/// The model keys a package version is usable with: exactly its own for a
/// prompt; any length for a prompt set (length 0).
pub fn model_range_of(key: &ModelKey) -> VersionRange {
    if key.prompt_length == 0 {
        let k = |l: u32| {
            PkgVersion::Model(ModelKey {
                fingerprint: key.fingerprint.clone(),
                hidden_size: key.hidden_size,
                prompt_length: l,
            })
        };
        between(k(0), k(u32::MAX))
    } else {
        VersionRange::singleton(PkgVersion::Model(key.clone()))
    }
}

fn between(lo: PkgVersion, hi: PkgVersion) -> VersionRange {
    VersionRange::from_range_bounds((Bound::Included(lo), Bound::Included(hi)))
}

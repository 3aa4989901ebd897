//! What registries answer, in one set of types for both backings: the local
//! registry returns them, the server serialises them into its JSON API, and
//! the HTTP client parses them back. The CLI's `--json` output is their
//! serde form too, so a field renamed here changes three contracts at once.
//!
//! The envelopes (`…Response`) are the API's bodies. Their fields are in
//! alphabetical order on purpose: the server used to build them with
//! `serde_json::json!`, whose maps sort their keys, and the bytes stay the same.

use registry_index::{Checksum, IndexDep};
use semver::Version;
use serde::{Deserialize, Serialize};

/// The result of a successful publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub name: String,
    pub version: Version,
    pub cksum: Checksum,
    pub size: u64,
}

/// One published version, as the database knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub version: Version,
    pub cksum: Checksum,
    pub size: u64,
    pub yanked: bool,
    pub task: String,
    pub description: String,
    pub license: Option<String>,
    pub base_model_name: String,
    pub base_model: Checksum,
    pub hidden_size: u32,
    pub prompt_length: u32,
    pub dtype: Option<String>,
    pub deps: Vec<IndexDep>,
    /// Unix seconds.
    pub published_at: i64,
    /// The source data's task signature (index format 2), if the package has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<registry_index::Signature>,
}

/// A yank or unyank, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct YankEvent {
    pub version: Version,
    pub yanked: bool,
    pub at: i64,
    /// Why, if the publisher said (`yank --reason`); left out of the JSON when not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Everything about one package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackageInfo {
    pub name: String,
    /// Sorted by semver, oldest first.
    pub versions: Vec<VersionInfo>,
    pub yank_history: Vec<YankEvent>,
}

impl PackageInfo {
    /// The newest version not yanked, else the newest.
    pub fn latest(&self) -> Option<&VersionInfo> {
        self.versions.iter().rev().find(|v| !v.yanked).or_else(|| self.versions.last())
    }
}

/// One package in a listing or a search result (described by its latest version).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageSummary {
    pub name: String,
    pub latest: Version,
    pub versions: usize,
    pub task: String,
    pub description: String,
    pub base_model: Checksum,
    pub hidden_size: u32,
    pub prompt_length: u32,
    /// Every version is yanked.
    pub yanked: bool,
}

/// What a yank/unyank call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum YankOutcome {
    Changed,
    AlreadyInState,
}

/// `PUT /api/v1/prompts/new`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublishResponse {
    pub published: Published,
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// `DELETE …/yank`, `PUT …/unyank`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct YankResponse {
    pub changed: bool,
    pub ok: bool,
}

impl YankResponse {
    pub fn outcome(self) -> YankOutcome {
        if self.changed {
            YankOutcome::Changed
        } else {
            YankOutcome::AlreadyInState
        }
    }
}

/// `GET /api/v1/prompts/<name>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InfoResponse {
    pub owners: Vec<String>,
    pub package: PackageInfo,
}

/// `GET /api/v1/prompts/<name>/similar`: the package whose canonical name
/// (case and `-`/`_` folded) equals `<name>`'s, for "did you mean".
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimilarResponse {
    pub similar: Option<String>,
}

/// `GET /api/v1/prompts?q=…`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchResponse {
    pub meta: SearchMeta,
    pub prompts: Vec<PackageSummary>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchMeta {
    pub total: usize,
}

/// `GET /api/v1/prompts?page=N&per_page=M` (no `q`): one page of the
/// listing, by name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListResponse {
    pub meta: PageMeta,
    pub prompts: Vec<PackageSummary>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PageMeta {
    /// The page after this one; `None` on the last page.
    pub next_page: Option<u64>,
    /// 1-based.
    pub page: u64,
    pub per_page: u64,
}

/// Pages of the listing hold at most this many packages.
pub const MAX_PER_PAGE: u64 = 100;

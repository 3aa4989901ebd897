//! `suggest` as a library call: every registry prompt trained for the
//! project's base model is scored for the target task (`select::rank`), and
//! the proposal is turned into `[sources]` edits. The selection that chose a
//! project's sources is kept beside its manifest (`attempt.selection.json`),
//! so `train` can start from the best-ranked source and record why the lock
//! holds what it holds.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use registry_index::Checksum;

use super::project::PreparedProject;
use super::settings::TrainSection;
use crate::cache::Cache;
use crate::data::baseline::OwnTaskCheck;
use crate::package::LoadedPackage;
use crate::registry::{Registry, RegistrySource};
use crate::select::{rank, Candidate, FeatureCache, SelectConfig, Selection};

/// The record of the selection that chose a project's sources.
pub const SELECTION_FILE: &str = "attempt.selection.json";

/// A registry package that fits the project's model, before its blob is read.
#[derive(Debug, Clone)]
pub struct Listed {
    pub name: String,
    pub version: semver::Version,
    pub cksum: registry_index::Checksum,
    /// Decoded task signature, when the package records one.
    pub signature: Option<Vec<f32>>,
}

/// Candidates found in a registry, and the packages passed over with why.
pub struct Listing {
    pub listed: Vec<Listed>,
    pub skipped: Vec<(String, String)>,
    /// What the caller should tell the user (e.g. an unreadable signature).
    pub notes: Vec<String>,
}

/// The newest non-yanked version, made for the model `fingerprint` with
/// hidden size `hidden`, of every package in `registry` (prompt sets have no
/// tensor of their own and are left out). Reads the listing and the index
/// (which carries everything needed here, signatures included), not the blobs;
/// a remote registry's index files come from the revalidated index cache.
pub fn list_candidates(registry: &Registry, fingerprint: &registry_index::Checksum, hidden: usize) -> Result<Listing> {
    let mut listed = Vec::new();
    let mut skipped = Vec::new();
    let mut notes = Vec::new();
    for summary in registry.list()? {
        let mut versions = registry.versions(&summary.name)?;
        versions.sort_by(|a, b| a.vers.cmp(&b.vers));
        // Newest first: the newest non-yanked version made for this model.
        let mut fitting = versions.iter().rev().filter(|v| &v.base_model == fingerprint).peekable();
        if fitting.peek().is_none() {
            continue;
        }
        let Some(v) = fitting.find(|v| !v.yanked) else {
            skipped.push((summary.name.clone(), "every version for this model is yanked".to_string()));
            continue;
        };
        if v.prompt_length == 0 {
            skipped.push((summary.name.clone(), "a prompt set (no tensor of its own)".to_string()));
            continue;
        }
        if v.hidden_size as usize != hidden {
            skipped.push((summary.name.clone(), format!("hidden size {} (the model has {hidden})", v.hidden_size)));
            continue;
        }
        let signature = match v.sig.as_ref().map(|s| s.decode(hidden)).transpose() {
            Ok(sig) => sig,
            Err(e) => {
                notes.push(format!(
                    "{}@{}: unreadable task signature ({e}); it is scored without one",
                    summary.name, v.vers
                ));
                None
            }
        };
        listed.push(Listed { name: summary.name.clone(), version: v.vers.clone(), cksum: v.cksum.clone(), signature });
    }
    Ok(Listing { listed, skipped, notes })
}

/// Keep the `keep` candidates whose signatures are most similar to
/// `target_mean`, and every candidate without a signature (nothing to judge
/// them by); returns the kept ones and the filtered-out names with cosines.
pub fn prefilter(listed: Vec<Listed>, target_mean: &[f32], keep: usize) -> (Vec<Listed>, Vec<(String, f64)>) {
    let signed = listed.iter().filter(|l| l.signature.is_some()).count();
    if keep == 0 || signed <= keep {
        return (listed, Vec::new());
    }
    let mut scored: Vec<(f64, Listed)> = listed
        .into_iter()
        .map(|l| (l.signature.as_ref().map_or(f64::INFINITY, |s| registry_index::cosine(s, target_mean)), l))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.name.cmp(&b.1.name)));
    let unsigned = scored.iter().filter(|(c, _)| c.is_infinite()).count();
    let cut = unsigned + keep;
    let dropped = scored[cut..].iter().map(|(c, l)| (l.name.clone(), *c)).collect();
    (scored.into_iter().take(cut).map(|(_, l)| l).collect(), dropped)
}

/// Read (and verify) the blobs of `listed` as candidates: in place in a
/// registry directory, through the download cache from a server.
pub fn load_candidates(
    registry: &Registry,
    listed: &[Listed],
    cache: &Cache,
    device: &candle_core::Device,
) -> Result<Vec<Candidate>> {
    let cksums: Vec<Checksum> = listed.iter().map(|l| l.cksum.clone()).collect();
    listed
        .iter()
        .zip(registry.blob_files(&cksums, cache))
        .map(|(l, file)| {
            let file = file.with_context(|| format!("fetching {}@{}", l.name, l.version))?;
            let pkg = LoadedPackage::read_verified(&file, &l.cksum)
                .with_context(|| format!("reading {}@{} from the registry", l.name, l.version))?;
            Ok(Candidate {
                name: l.name.clone(),
                version: l.version.to_string(),
                prompt: pkg.prompt_tensor(device)?,
                signature: l.signature.clone(),
                own_task: OwnTaskCheck::from_manifest(&pkg.manifest.metrics),
            })
        })
        .collect()
}

/// The target sample's mean embedding (no prompt): what candidates'
/// signatures are compared with. The sample is the one `rank` scores, and
/// its features go through the same cache, so `rank` does not compute them again.
pub fn target_mean(
    project: &PreparedProject,
    section: &TrainSection,
    config: &SelectConfig,
    cache: Option<&dyn FeatureCache>,
) -> Result<Vec<f32>> {
    use crate::select::features::{cached_pooled_features, sample_digest, TokenisedSample};
    let tasks = project.tasks(section)?;
    let task = tasks.first().context("no task to score candidates for")?;
    let picked = crate::select::signature::sample(&task.train, config.sample, config.seed);
    let tokens = TokenisedSample::new(&picked, &project.backbone.tokenizer, config.max_length, config.batch_size)?;
    let key = sample_digest(&picked, config.max_length);
    let rows = cached_pooled_features(&tokens, &key, project.backbone.encoder(), None, &project.device, cache)?;
    Ok(crate::select::signature::mean_row(&rows))
}

/// Pooled features kept under `$ATTEMPT_HOME/cache/features/<model>/`, one
/// safetensors file per (sample, prompt) digest, written atomically.
pub struct DirFeatureCache<'a> {
    dir: PathBuf,
    /// Told when a store fails (which is not worth stopping for).
    notice: &'a dyn Fn(&str),
}

impl<'a> DirFeatureCache<'a> {
    /// The cache for the model with fingerprint `fingerprint` (`features/<hex>/`);
    /// `notice` hears of features that could not be stored.
    pub fn for_model(
        home: &crate::home::Home,
        fingerprint: &registry_index::Checksum,
        notice: &'a dyn Fn(&str),
    ) -> DirFeatureCache<'a> {
        DirFeatureCache { dir: crate::cache::Cache::from_home(home).features_dir().join(fingerprint.hex()), notice }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.safetensors"))
    }
}

impl FeatureCache for DirFeatureCache<'_> {
    fn load(&self, key: &str) -> Option<Vec<Vec<f32>>> {
        let path = self.path(key);
        if !path.is_file() {
            return None;
        }
        // A damaged entry is recomputed (and overwritten), never trusted.
        let tensors = candle_core::safetensors::load(&path, &candle_core::Device::Cpu).ok()?;
        // Touch it, so `cache gc --older-than` keeps what is in use.
        let _ = std::fs::File::options()
            .append(true)
            .open(&path)
            .and_then(|f| f.set_modified(std::time::SystemTime::now()));
        tensors.get("features")?.to_vec2::<f32>().ok()
    }

    fn store(&self, key: &str, rows: &[Vec<f32>]) {
        let write = || -> Result<()> {
            std::fs::create_dir_all(&self.dir)?;
            let (n, d) = (rows.len(), rows.first().map_or(0, Vec::len));
            let flat: Vec<f32> = rows.iter().flatten().copied().collect();
            let t = candle_core::Tensor::from_vec(flat, (n, d), &candle_core::Device::Cpu)?;
            let tensors = std::collections::HashMap::from([("features".to_string(), t)]);
            crate::fsutil::write_atomic_with(&self.path(key), |tmp| Ok(candle_core::safetensors::save(&tensors, tmp)?))
        };
        if let Err(e) = write() {
            (self.notice)(&format!("could not cache features in {}: {e:#}", self.dir.display()));
        }
    }
}

/// Score `candidates` for the one task of `section` on the project's model.
pub fn select_for_task(
    project: &PreparedProject,
    section: &TrainSection,
    candidates: &[Candidate],
    config: &SelectConfig,
    cache: Option<&dyn FeatureCache>,
    progress: &dyn Fn(&str),
) -> Result<Selection> {
    if section.tasks.len() != 1 {
        bail!(
            "suggest scores candidates for one task; pass exactly one --task (got {})",
            if section.tasks.is_empty() { "none".to_string() } else { section.tasks.join(", ") }
        );
    }
    if candidates.is_empty() {
        bail!(
            "the registry has no prompt trained for model {}; publish source prompts for it first (`attempt-pkg train-source`, then `publish`)",
            project.backbone.fingerprint
        );
    }
    let tasks = project.tasks(section)?;
    let task = &tasks[0];
    let backbone = crate::train::Backbone {
        encoder: project.backbone.encoder(),
        tokenizer: &project.backbone.tokenizer,
        device: &project.device,
    };
    rank(backbone, &task.task, &task.train, candidates, config, cache, progress)
}

/// Where a project keeps its selection record.
pub fn selection_path(project_dir: &Path) -> PathBuf {
    project_dir.join(SELECTION_FILE)
}

/// Write the selection record atomically.
pub fn save_selection(project_dir: &Path, selection: &Selection) -> Result<()> {
    let path = selection_path(project_dir);
    let text = serde_json::to_string_pretty(selection)?;
    let mut tmp = tempfile::NamedTempFile::new_in(project_dir)
        .with_context(|| format!("cannot write in {}", project_dir.display()))?;
    std::io::Write::write_all(&mut tmp, text.as_bytes())?;
    tmp.persist(&path).map_err(|e| e.error).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The project's selection record, if `suggest --apply` wrote one.
pub fn load_selection(project_dir: &Path) -> Result<Option<Selection>> {
    let path = selection_path(project_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(serde_json::from_str(&text).with_context(|| {
            format!("{} is unreadable; delete it or run `attempt-pkg suggest --apply` again", path.display())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Among `source_names` (`name@version`, the run's sources in lock order),
/// the index of the best-ranked one the selection kept.
pub fn init_source_index(selection: &Selection, source_names: &[String]) -> Option<usize> {
    selection.keep.iter().find_map(|kept| source_position(source_names, kept))
}

/// The position of `wanted` (`name` or `name@version`) among the locked
/// sources `source_names` (`name@version` each).
pub fn source_position(source_names: &[String], wanted: &str) -> Option<usize> {
    source_names.iter().position(|s| s == wanted || s.split('@').next() == Some(wanted))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(name: &str, signature: Option<Vec<f32>>) -> Listed {
        Listed {
            name: name.to_string(),
            version: semver::Version::new(1, 0, 0),
            cksum: registry_index::Checksum::from_digest(&[0; 32]),
            signature,
        }
    }

    #[test]
    fn prefilter_keeps_the_closest_signatures_and_every_unsigned_package() {
        let target = [1.0, 0.0];
        let pool = vec![
            listed("far", Some(vec![0.0, 1.0])),
            listed("near", Some(vec![1.0, 0.1])),
            listed("unsigned", None),
            listed("middle", Some(vec![1.0, 1.0])),
        ];
        let (kept, dropped) = prefilter(pool.clone(), &target, 2);
        let names: Vec<&str> = kept.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["unsigned", "near", "middle"]);
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].0, "far");
        // Nothing to cut when no more signed packages than asked for.
        assert_eq!(prefilter(pool.clone(), &target, 3).0.len(), 4);
        assert_eq!(prefilter(pool, &target, 0).0.len(), 4);
    }
}

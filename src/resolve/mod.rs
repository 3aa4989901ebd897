//! Dependency resolution with pubgrub.
//!
//! [`resolve`] takes what the project asks for (its sources and base model),
//! what the lock already pins (as preferences), and the registries, and
//! returns one version per prompt package, all for one base model, or an
//! explanation of why none exists.

mod hints;
mod provider;
mod ranges;
mod report;
mod version;

use std::collections::BTreeMap;

use pubgrub::{DefaultStringReporter, PubGrubError, Reporter};
use registry_index::Checksum;
use semver::{Version, VersionReq};
use thiserror::Error;

use crate::registry::RegistrySource;
pub use provider::model_key;
use provider::Provider;
pub use ranges::req_to_range;
pub use version::{short_fingerprint, ModelKey, ModelRequirement, Pkg, PkgVersion, VersionRange};

/// What to resolve.
#[derive(Debug, Clone, Default)]
pub struct ResolveRequest {
    /// The project name, for messages.
    pub project: String,
    /// The base model the project uses, if it names one.
    pub model: Option<ModelRequirement>,
    /// Direct requirements: `[sources]` of `attempt.toml`.
    pub sources: BTreeMap<String, VersionReq>,
    /// Versions the lock pins: kept whenever the requirements allow, and the
    /// only way a yanked version can be chosen.
    pub locked: BTreeMap<String, LockedPreference>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedPreference {
    pub version: Version,
    /// The registry it was locked from; from another registry it is no preference.
    pub source: String,
}

/// One chosen package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedPackage {
    pub name: String,
    pub version: Version,
    pub checksum: Checksum,
    /// `source_id()` of the registry it comes from.
    pub source: String,
    pub model: ModelKey,
    pub yanked: bool,
    /// Names of the packages it depends on (each resolved once).
    pub dependencies: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The base model every chosen prompt is for; `None` without prompts and
    /// without a project model.
    pub model: Option<ModelKey>,
    /// By name.
    pub packages: BTreeMap<String, ResolvedPackage>,
}

#[derive(Debug, Error)]
pub enum ResolveError {
    /// A direct requirement names a package no registry has.
    #[error("no package named `{name}` in registry {registry}{suggestion}")]
    UnknownPackage { name: String, registry: String, suggestion: String },
    /// pubgrub proved there is no solution; the text is its explanation plus hints.
    #[error("cannot resolve the project's prompt packages:\n\n{0}")]
    NoSolution(String),
    #[error(transparent)]
    Registry(anyhow::Error),
}

/// Resolves `request` against `registries` (searched in order; the first
/// registry that lists a name provides it).
pub fn resolve(request: &ResolveRequest, registries: &[Box<dyn RegistrySource>]) -> Result<Resolution, ResolveError> {
    let provider = Provider::new(request, registries);
    for name in request.sources.keys() {
        let index = provider.package(name).map_err(|e| ResolveError::Registry(e.0))?;
        if index.registry.is_none() {
            return Err(unknown_package(name, &provider)?);
        }
    }
    let root_version = PkgVersion::Semver(Version::new(0, 0, 0));
    let selected = match pubgrub::resolve(&provider, Pkg::Root, root_version) {
        Ok(s) => s,
        Err(PubGrubError::NoSolution(mut tree)) => {
            tree.collapse_no_versions();
            let formatter = report::Formatter { provider: &provider, project: request.project.clone() };
            let mut text = DefaultStringReporter::report_with_formatter(&tree, &formatter);
            for hint in hints::hints(&provider) {
                text.push_str("\n\nhint: ");
                text.push_str(&hint);
            }
            return Err(ResolveError::NoSolution(text));
        }
        Err(PubGrubError::ErrorRetrievingDependencies { source, .. })
        | Err(PubGrubError::ErrorChoosingVersion { source, .. })
        | Err(PubGrubError::ErrorInShouldCancel(source)) => return Err(ResolveError::Registry(source.0)),
    };
    let mut resolution = Resolution { model: None, packages: BTreeMap::new() };
    for (pkg, version) in &selected {
        match (pkg, version) {
            (Pkg::BaseModel, PkgVersion::Model(key)) => resolution.model = Some(key.clone()),
            (Pkg::Prompt(name), PkgVersion::Semver(v)) => {
                let index = provider.package(name).map_err(|e| ResolveError::Registry(e.0))?;
                let (Some(reg), Some(entry)) = (index.registry, index.entry(v)) else {
                    return Err(ResolveError::Registry(anyhow::anyhow!(
                        "resolver chose {name}@{v}, which no index lists"
                    )));
                };
                let mut dependencies: Vec<String> = entry.deps.iter().map(|d| d.name.clone()).collect();
                dependencies.sort();
                dependencies.dedup();
                resolution.packages.insert(
                    name.to_string(),
                    ResolvedPackage {
                        name: name.to_string(),
                        version: v.clone(),
                        checksum: entry.cksum.clone(),
                        source: provider.registry_id(reg).to_string(),
                        model: model_key(entry),
                        yanked: entry.yanked,
                        dependencies,
                    },
                );
            }
            _ => {}
        }
    }
    // Prompts are authoritative for the length; a set-only key has length 0.
    if let Some(key) = resolution.packages.values().map(|p| &p.model).find(|k| k.prompt_length != 0) {
        resolution.model = Some(key.clone());
    }
    Ok(resolution)
}

fn unknown_package(name: &str, provider: &Provider<'_>) -> Result<ResolveError, ResolveError> {
    let registry = provider.registries.iter().map(|r| r.source_id()).collect::<Vec<_>>().join(", ");
    // Cheap suggestions: the `-`/`_` twin and an `-prompt` suffix.
    let mut candidates = vec![name.replace('-', "_"), name.replace('_', "-"), format!("{name}-prompt")];
    candidates.retain(|c| c != name);
    let mut found = Vec::new();
    for c in candidates {
        if registry_index::validate_name(&c).is_ok() {
            let index = provider.package(&c).map_err(|e| ResolveError::Registry(e.0))?;
            if index.registry.is_some() && !found.contains(&c) {
                found.push(c);
            }
        }
    }
    let suggestion =
        if found.is_empty() { String::new() } else { format!("; did you mean `{}`?", found.join("` or `")) };
    Ok(ResolveError::UnknownPackage { name: name.to_string(), registry, suggestion })
}

/// The newest version of `name` worth writing into `attempt.toml` for a bare
/// `add NAME`: not yanked, a release if there is one, and usable with the
/// project's model when it names one. `None` when nothing qualifies.
pub fn newest_compatible(
    name: &str,
    model: Option<&ModelRequirement>,
    registries: &[Box<dyn RegistrySource>],
) -> anyhow::Result<Option<Version>> {
    for reg in registries {
        let entries = reg.versions(name)?;
        if entries.is_empty() {
            continue;
        }
        let ok = |e: &&registry_index::IndexEntry| !e.yanked && model.is_none_or(|m| m.admits(&model_key(e)));
        let best_release = entries.iter().filter(ok).filter(|e| e.vers.pre.is_empty()).map(|e| &e.vers).max();
        let best = best_release.or_else(|| entries.iter().filter(ok).map(|e| &e.vers).max());
        return Ok(best.cloned());
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use registry_index::{IndexDep, IndexEntry};

    use super::*;

    /// An in-memory registry.
    struct Mem {
        id: &'static str,
        entries: Vec<IndexEntry>,
    }

    impl RegistrySource for Mem {
        fn source_id(&self) -> String {
            self.id.to_string()
        }
        fn versions(&self, name: &str) -> anyhow::Result<Vec<IndexEntry>> {
            Ok(self.entries.iter().filter(|e| e.name == name).cloned().collect())
        }
        fn download_blob(&self, _: &Checksum, _: &Path) -> anyhow::Result<()> {
            anyhow::bail!("not used")
        }
    }

    fn fp(c: char) -> Checksum {
        Checksum::parse(&c.to_string().repeat(64)).unwrap()
    }

    fn entry(name: &str, vers: &str, model: char, deps: &[(&str, &str)]) -> IndexEntry {
        IndexEntry {
            name: name.into(),
            vers: vers.parse().unwrap(),
            cksum: fp('c'),
            deps: deps.iter().map(|(n, r)| IndexDep { name: n.to_string(), req: r.parse().unwrap() }).collect(),
            yanked: false,
            task: "t".into(),
            base_model: fp(model),
            hidden_size: 8,
            prompt_length: if deps.is_empty() { 4 } else { 0 },
            size: 1,
            v: 1,
            sig: None,
        }
    }

    fn request(sources: &[(&str, &str)]) -> ResolveRequest {
        ResolveRequest {
            project: "p".into(),
            model: Some(ModelRequirement { fingerprint: fp('a'), hidden_size: None, prompt_length: None }),
            sources: sources.iter().map(|(n, r)| (n.to_string(), r.parse().unwrap())).collect(),
            locked: BTreeMap::new(),
        }
    }

    #[test]
    fn first_registry_listing_a_name_provides_it() {
        let regs: Vec<Box<dyn RegistrySource>> = vec![
            Box::new(Mem { id: "one", entries: vec![entry("x", "1.0.0", 'a', &[])] }),
            Box::new(Mem { id: "two", entries: vec![entry("x", "1.5.0", 'a', &[]), entry("y", "1.0.0", 'a', &[])] }),
        ];
        let res = resolve(&request(&[("x", "^1"), ("y", "^1")]), &regs).unwrap();
        assert_eq!(res.packages["x"].version.to_string(), "1.0.0");
        assert_eq!(res.packages["x"].source, "one");
        assert_eq!(res.packages["y"].source, "two");
        let model = res.model.unwrap();
        assert_eq!((model.fingerprint, model.hidden_size, model.prompt_length), (fp('a'), 8, 4));
    }

    #[test]
    fn locked_preferences_and_yanked_versions() {
        let mut yanked = entry("x", "1.2.0", 'a', &[]);
        yanked.yanked = true;
        let regs: Vec<Box<dyn RegistrySource>> = vec![Box::new(Mem {
            id: "r",
            entries: vec![entry("x", "1.0.0", 'a', &[]), entry("x", "1.1.0", 'a', &[]), yanked],
        })];
        let mut req = request(&[("x", "^1")]);
        assert_eq!(resolve(&req, &regs).unwrap().packages["x"].version.to_string(), "1.1.0");
        let lock = |v: &str, source: &str| LockedPreference { version: v.parse().unwrap(), source: source.into() };
        req.locked.insert("x".into(), lock("1.2.0", "r"));
        let res = resolve(&req, &regs).unwrap();
        assert_eq!(res.packages["x"].version.to_string(), "1.2.0");
        assert!(res.packages["x"].yanked);
        req.locked.insert("x".into(), lock("1.0.0", "r"));
        assert_eq!(resolve(&req, &regs).unwrap().packages["x"].version.to_string(), "1.0.0");
        // Locked from another registry: no preference, and a yanked one is not usable.
        req.locked.insert("x".into(), lock("1.2.0", "elsewhere"));
        assert_eq!(resolve(&req, &regs).unwrap().packages["x"].version.to_string(), "1.1.0");
    }

    #[test]
    fn backtracks_past_versions_for_another_model() {
        let regs: Vec<Box<dyn RegistrySource>> = vec![Box::new(Mem {
            id: "r",
            entries: vec![
                entry("set", "1.0.0", 'a', &[("x", "^1")]),
                entry("set", "1.1.0", 'a', &[("x", "^2")]),
                entry("x", "1.0.0", 'a', &[]),
                entry("x", "2.0.0", 'b', &[]),
            ],
        })];
        let res = resolve(&request(&[("set", "^1")]), &regs).unwrap();
        assert_eq!(res.packages["set"].version.to_string(), "1.0.0");
        assert_eq!(res.packages["x"].version.to_string(), "1.0.0");
        assert_eq!(res.packages["set"].dependencies, vec!["x".to_string()]);
    }
}

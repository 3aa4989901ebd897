//! The pubgrub [`DependencyProvider`] over one or more registries.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;

use pubgrub::{Dependencies, DependencyConstraints, DependencyProvider, PackageResolutionStatistics};
use registry_index::IndexEntry;
use semver::Version;

use super::ranges::req_to_range;
use super::version::{model_range_of, ModelKey, Pkg, PkgVersion, VersionRange};
use super::ResolveRequest;
use crate::registry::RegistrySource;

/// Everything the registries list for one package name.
#[derive(Debug)]
pub struct PackageIndex {
    /// Index into the registry list; `None` when no registry has the name.
    pub registry: Option<usize>,
    /// Newest first.
    pub entries: Vec<IndexEntry>,
}

impl PackageIndex {
    pub fn entry(&self, v: &Version) -> Option<&IndexEntry> {
        self.entries.iter().find(|e| &e.vers == v)
    }
    fn known_versions(&self) -> Vec<Version> {
        self.entries.iter().map(|e| e.vers.clone()).collect()
    }
}

pub fn model_key(e: &IndexEntry) -> ModelKey {
    ModelKey { fingerprint: e.base_model.clone(), hidden_size: e.hidden_size, prompt_length: e.prompt_length }
}

/// A registry failure, carried through pubgrub (which wants `std::error::Error`).
#[derive(Debug)]
pub struct SourceError(pub anyhow::Error);

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for SourceError {}

pub struct Provider<'a> {
    pub request: &'a ResolveRequest,
    pub registries: &'a [Box<dyn RegistrySource>],
    /// Loaded index files; each is read at most once per resolution.
    index: RefCell<HashMap<Arc<str>, Rc<PackageIndex>>>,
    /// Requirement texts by the ranges they produced, to print `^1.2`
    /// rather than `>=1.2.0, <2.0.0` in explanations.
    labels: RefCell<HashMap<(Pkg, VersionRange), String>>,
    /// Every model key seen on a loaded prompt version.
    known_models: RefCell<BTreeSet<ModelKey>>,
    /// For each dependency name, the first package version that asked for it.
    required_by: RefCell<BTreeMap<String, String>>,
    registry_ids: Vec<String>,
}

impl<'a> Provider<'a> {
    pub fn new(request: &'a ResolveRequest, registries: &'a [Box<dyn RegistrySource>]) -> Self {
        let registry_ids = registries.iter().map(|r| r.source_id()).collect();
        Provider {
            request,
            registries,
            index: RefCell::default(),
            labels: RefCell::default(),
            known_models: RefCell::default(),
            required_by: RefCell::default(),
            registry_ids,
        }
    }

    pub fn registry_id(&self, i: usize) -> &str {
        &self.registry_ids[i]
    }

    /// The index of `name`: from the first registry that lists it.
    pub fn package(&self, name: &str) -> Result<Rc<PackageIndex>, SourceError> {
        if let Some(p) = self.index.borrow().get(name) {
            return Ok(p.clone());
        }
        let mut found = PackageIndex { registry: None, entries: Vec::new() };
        for (i, reg) in self.registries.iter().enumerate() {
            let mut entries = reg.versions(name).map_err(SourceError)?;
            if !entries.is_empty() {
                entries.sort_by(|a, b| b.vers.cmp(&a.vers));
                found = PackageIndex { registry: Some(i), entries };
                break;
            }
        }
        let found = Rc::new(found);
        self.index.borrow_mut().insert(Arc::from(name), found.clone());
        Ok(found)
    }

    /// The locked version of `name`, if it is still a preference (locked from
    /// the registry that now provides the name).
    pub fn locked_version(&self, name: &str, index: &PackageIndex) -> Option<&'a Version> {
        let lock = self.request.locked.get(name)?;
        let reg = index.registry?;
        (lock.source == self.registry_ids[reg]).then_some(&lock.version)
    }

    /// Yanked versions are usable only where the lock already has them.
    pub fn usable(&self, name: &str, index: &PackageIndex, e: &IndexEntry) -> bool {
        !e.yanked || self.locked_version(name, index) == Some(&e.vers)
    }

    /// Dependencies no registry has, with a package that needs each.
    pub fn missing_dependencies(&self) -> Vec<(String, String)> {
        let index = self.index.borrow();
        self.required_by
            .borrow()
            .iter()
            .filter(|(name, _)| index.get(name.as_str()).is_some_and(|i| i.registry.is_none()))
            .map(|(n, by)| (n.clone(), by.clone()))
            .collect()
    }

    pub fn label(&self, pkg: &Pkg, range: &VersionRange) -> Option<String> {
        self.labels.borrow().get(&(pkg.clone(), range.clone())).cloned()
    }

    fn requirement(&self, name: &str, req: &semver::VersionReq) -> Result<(Pkg, VersionRange), SourceError> {
        let index = self.package(name)?;
        let range = req_to_range(req, &index.known_versions());
        let pkg = Pkg::Prompt(Arc::from(name));
        self.labels.borrow_mut().entry((pkg.clone(), range.clone())).or_insert_with(|| req.to_string());
        Ok((pkg, range))
    }
}

impl DependencyProvider for Provider<'_> {
    type P = Pkg;
    type V = PkgVersion;
    type VS = VersionRange;
    type M = String;
    type Err = SourceError;
    /// (kind, conflicts, fewest candidates): prompts before the base model,
    /// troublemakers first, then the most constrained.
    type Priority = (u8, u32, Reverse<usize>);

    fn prioritize(&self, pkg: &Pkg, range: &VersionRange, stats: &PackageResolutionStatistics) -> Self::Priority {
        match pkg {
            Pkg::Root => (2, 0, Reverse(0)),
            // Decided last: by then the chosen prompts have narrowed it down.
            Pkg::BaseModel => (0, 0, Reverse(0)),
            Pkg::Prompt(name) => {
                let count = match self.package(name) {
                    Ok(index) => index
                        .entries
                        .iter()
                        .filter(|e| self.usable(name, &index, e) && range.contains(&PkgVersion::Semver(e.vers.clone())))
                        .count(),
                    Err(_) => 0,
                };
                (1, stats.conflict_count(), Reverse(count))
            }
        }
    }

    fn choose_version(&self, pkg: &Pkg, range: &VersionRange) -> Result<Option<PkgVersion>, SourceError> {
        match pkg {
            Pkg::Root => Ok(Some(PkgVersion::Semver(Version::new(0, 0, 0)))),
            Pkg::BaseModel => {
                let known = self.known_models.borrow();
                let hit = known.iter().map(|k| PkgVersion::Model(k.clone())).find(|v| range.contains(v));
                Ok(hit.or_else(|| match range.bounding_range() {
                    Some((std::ops::Bound::Included(lo), _)) => Some(lo.clone()),
                    _ => None,
                }))
            }
            Pkg::Prompt(name) => {
                let index = self.package(name)?;
                if let Some(locked) = self.locked_version(name, &index) {
                    let v = PkgVersion::Semver(locked.clone());
                    if index.entry(locked).is_some() && range.contains(&v) {
                        return Ok(Some(v));
                    }
                }
                Ok(index
                    .entries
                    .iter()
                    .filter(|e| self.usable(name, &index, e))
                    .map(|e| PkgVersion::Semver(e.vers.clone()))
                    .find(|v| range.contains(v)))
            }
        }
    }

    fn get_dependencies(
        &self,
        pkg: &Pkg,
        version: &PkgVersion,
    ) -> Result<Dependencies<Pkg, VersionRange, String>, SourceError> {
        let mut deps = DependencyConstraints::default();
        match (pkg, version) {
            (Pkg::Root, _) => {
                for (name, req) in &self.request.sources {
                    let (p, r) = self.requirement(name, req)?;
                    deps.insert(p, r);
                }
                if let Some(model) = &self.request.model {
                    deps.insert(Pkg::BaseModel, model.range());
                }
            }
            (Pkg::Prompt(name), PkgVersion::Semver(v)) => {
                let index = self.package(name)?;
                let Some(entry) = index.entry(v) else {
                    return Ok(Dependencies::Unavailable(format!("{name}@{v} is not in the index")));
                };
                let key = model_key(entry);
                if let Some(model) = &self.request.model {
                    if model.hidden_size.is_none() && !model.admits(&key) && key.fingerprint == model.fingerprint {
                        return Ok(Dependencies::Unavailable(format!(
                            "it has prompt length {}, but the project sets prompt-length = {}",
                            key.prompt_length,
                            model.prompt_length.unwrap_or(0)
                        )));
                    }
                }
                let mut by_name: BTreeMap<&str, VersionRange> = BTreeMap::new();
                for dep in &entry.deps {
                    if dep.name == **name {
                        continue; // a self-dependency says nothing
                    }
                    self.required_by.borrow_mut().entry(dep.name.clone()).or_insert_with(|| format!("{name}@{v}"));
                    let (_, r) = self.requirement(&dep.name, &dep.req)?;
                    // Two requirements on one name both apply.
                    let merged = match by_name.remove(dep.name.as_str()) {
                        Some(prev) => prev.intersection(&r),
                        None => r,
                    };
                    by_name.insert(&dep.name, merged);
                }
                for (n, r) in by_name {
                    deps.insert(Pkg::Prompt(Arc::from(n)), r);
                }
                deps.insert(Pkg::BaseModel, model_range_of(&key));
                self.known_models.borrow_mut().insert(key);
            }
            _ => {}
        }
        Ok(Dependencies::Available(deps))
    }
}

//! Turning pubgrub's derivation tree into sentences about prompts and models.

use pubgrub::{Derived, External, Map, ReportFormatter, Term};

use super::provider::Provider;
use super::version::{Pkg, PkgVersion, VersionRange};

pub struct Formatter<'p, 'a> {
    pub provider: &'p Provider<'a>,
    pub project: String,
}

impl Formatter<'_, '_> {
    /// `squad@1.2.0`, `squad ^1.2`, `any version of squad`, `the project`.
    fn pkg_range(&self, pkg: &Pkg, range: &VersionRange) -> String {
        match pkg {
            Pkg::Root => format!("project `{}`", self.project),
            Pkg::BaseModel => format!("base model {}", self.model_range(range)),
            Pkg::Prompt(name) => {
                if range == &VersionRange::full() {
                    format!("any version of {name}")
                } else if let Some(v) = range.as_singleton() {
                    format!("{name}@{v}")
                } else if let (None, Some(v)) = (self.provider.label(pkg, range), self.only_known_version(pkg, range)) {
                    format!("{name}@{v}")
                } else {
                    format!("{name} {}", self.range_text(pkg, range))
                }
            }
        }
    }

    /// The requirement text that produced `range` (`^1.2`), else the
    /// interval, simplified against the versions that exist.
    fn range_text(&self, pkg: &Pkg, range: &VersionRange) -> String {
        if let Some(label) = self.provider.label(pkg, range) {
            return label;
        }
        let Pkg::Prompt(name) = pkg else { return range.to_string() };
        let Ok(index) = self.provider.package(name) else { return range.to_string() };
        let known: Vec<PkgVersion> = index.entries.iter().rev().map(|e| PkgVersion::Semver(e.vers.clone())).collect();
        range.simplify(known.iter()).to_string()
    }

    /// The one published version `range` contains, if it is exactly one.
    fn only_known_version(&self, pkg: &Pkg, range: &VersionRange) -> Option<PkgVersion> {
        let Pkg::Prompt(name) = pkg else { return None };
        let index = self.provider.package(name).ok()?;
        let mut inside = index.entries.iter().map(|e| PkgVersion::Semver(e.vers.clone())).filter(|v| range.contains(v));
        let first = inside.next()?;
        inside.next().is_none().then_some(first)
    }

    fn model_range(&self, range: &VersionRange) -> String {
        if let Some(v) = range.as_singleton() {
            return v.to_string();
        }
        // Prefix intervals: "fingerprint F" or "fingerprint F, size H".
        if let Some((
            std::ops::Bound::Included(PkgVersion::Model(lo)),
            std::ops::Bound::Included(PkgVersion::Model(hi)),
        )) = range.bounding_range()
        {
            if range.iter().count() == 1 && lo.fingerprint == hi.fingerprint {
                let fp = super::version::short_fingerprint(&lo.fingerprint);
                return if lo.hidden_size == hi.hidden_size {
                    format!("{fp} (hidden size {})", lo.hidden_size)
                } else {
                    fp
                };
            }
        }
        range.to_string()
    }

    fn dependency(&self, p: &Pkg, sp: &VersionRange, dep: &Pkg, sd: &VersionRange) -> String {
        match (p, dep) {
            (Pkg::Root, Pkg::BaseModel) => {
                format!("project `{}` uses base model {}", self.project, self.model_range(sd))
            }
            (Pkg::Root, _) => format!("project `{}` requires {}", self.project, self.pkg_range(dep, sd)),
            (_, Pkg::BaseModel) => format!("{} is for base model {}", self.pkg_range(p, sp), self.model_range(sd)),
            _ => format!("{} depends on {}", self.pkg_range(p, sp), self.pkg_range(dep, sd)),
        }
    }
}

impl ReportFormatter<Pkg, VersionRange, String> for Formatter<'_, '_> {
    type Output = String;

    fn format_external(&self, external: &External<Pkg, VersionRange, String>) -> String {
        match external {
            External::NotRoot(_, _) => format!("we are resolving project `{}`", self.project),
            External::NoVersions(Pkg::Prompt(name), range) => {
                let missing = self.provider.package(name).map(|i| i.registry.is_none()).unwrap_or(false);
                if missing {
                    format!("no registry has a package named {name}")
                } else if range == &VersionRange::full() {
                    format!("{name} has no usable (published, not yanked) version")
                } else {
                    format!(
                        "no usable version of {name} matches {}",
                        self.range_text(&Pkg::Prompt(name.clone()), range)
                    )
                }
            }
            External::NoVersions(p, range) => format!("nothing provides {}", self.pkg_range(p, range)),
            External::Custom(p, range, reason) => format!("{} cannot be used: {reason}", self.pkg_range(p, range)),
            External::FromDependencyOf(p, sp, dep, sd) => self.dependency(p, sp, dep, sd),
        }
    }

    fn format_terms(&self, terms: &Map<Pkg, Term<VersionRange>>) -> String {
        let mut list: Vec<_> = terms.iter().collect();
        list.sort_by(|a, b| a.0.cmp(b.0));
        match list.as_slice() {
            [] => "no resolution exists".into(),
            [(Pkg::Root, Term::Positive(_))] => format!("project `{}` cannot be resolved", self.project),
            [(p, Term::Positive(r))] => format!("{} cannot be used", self.pkg_range(p, r)),
            [(p, Term::Negative(r))] => format!("{} is required", self.pkg_range(p, r)),
            [(Pkg::Root, Term::Positive(_)), (p, Term::Positive(r))] => {
                format!("project `{}` cannot use {}", self.project, self.pkg_range(p, r))
            }
            [(p1, Term::Positive(r1)), (p2, Term::Positive(r2))] => {
                format!("{} and {} cannot be used together", self.pkg_range(p1, r1), self.pkg_range(p2, r2))
            }
            [(p1, Term::Positive(r1)), (p2, Term::Negative(r2))] => self.dependency(p1, r1, p2, r2),
            [(p1, Term::Negative(r1)), (p2, Term::Positive(r2))] => self.dependency(p2, r2, p1, r1),
            many => {
                let parts: Vec<String> = many
                    .iter()
                    .map(|(p, t)| match t {
                        Term::Positive(r) => self.pkg_range(p, r),
                        Term::Negative(r) => format!("not {}", self.pkg_range(p, r)),
                    })
                    .collect();
                format!("{} cannot all be chosen", parts.join(", "))
            }
        }
    }

    fn explain_both_external(
        &self,
        e1: &External<Pkg, VersionRange, String>,
        e2: &External<Pkg, VersionRange, String>,
        terms: &Map<Pkg, Term<VersionRange>>,
    ) -> String {
        format!("Because {} and {}, {}.", self.format_external(e1), self.format_external(e2), self.format_terms(terms))
    }

    fn explain_both_ref(
        &self,
        id1: usize,
        d1: &Derived<Pkg, VersionRange, String>,
        id2: usize,
        d2: &Derived<Pkg, VersionRange, String>,
        terms: &Map<Pkg, Term<VersionRange>>,
    ) -> String {
        format!(
            "Because {} ({id1}) and {} ({id2}), {}.",
            self.format_terms(&d1.terms),
            self.format_terms(&d2.terms),
            self.format_terms(terms)
        )
    }

    fn explain_ref_and_external(
        &self,
        id: usize,
        d: &Derived<Pkg, VersionRange, String>,
        e: &External<Pkg, VersionRange, String>,
        terms: &Map<Pkg, Term<VersionRange>>,
    ) -> String {
        format!(
            "Because {} ({id}) and {}, {}.",
            self.format_terms(&d.terms),
            self.format_external(e),
            self.format_terms(terms)
        )
    }

    fn and_explain_external(
        &self,
        e: &External<Pkg, VersionRange, String>,
        terms: &Map<Pkg, Term<VersionRange>>,
    ) -> String {
        format!("And because {}, {}.", self.format_external(e), self.format_terms(terms))
    }

    fn and_explain_ref(
        &self,
        id: usize,
        d: &Derived<Pkg, VersionRange, String>,
        terms: &Map<Pkg, Term<VersionRange>>,
    ) -> String {
        format!("And because {} ({id}), {}.", self.format_terms(&d.terms), self.format_terms(terms))
    }

    fn and_explain_prior_and_external(
        &self,
        prior: &External<Pkg, VersionRange, String>,
        e: &External<Pkg, VersionRange, String>,
        terms: &Map<Pkg, Term<VersionRange>>,
    ) -> String {
        format!(
            "And because {} and {}, {}.",
            self.format_external(prior),
            self.format_external(e),
            self.format_terms(terms)
        )
    }
}

//! Semver requirements as pubgrub version sets.
//!
//! `semver::VersionReq` is a predicate; pubgrub needs interval sets. The
//! comparators map to intervals directly (caret, tilde, wildcards, partial
//! versions, as `semver` defines them). Pre-releases are the one place where
//! a predicate is not an interval (`^1.2` does not match `1.3.0-beta` although
//! it lies inside `[1.2.0, 2.0.0)`), so the interval is then corrected against
//! the versions the index actually lists: the result agrees with
//! `VersionReq::matches` on every known version, which is all the solver
//! ever looks at.

use std::ops::Bound;

use semver::{Comparator, Op, Version, VersionReq};

use super::version::{PkgVersion, VersionRange};

/// The set of versions `req` matches, exact on `known` versions.
pub fn req_to_range(req: &VersionReq, known: &[Version]) -> VersionRange {
    let mut range = req.comparators.iter().fold(VersionRange::full(), |acc, c| acc.intersection(&comparator_range(c)));
    for v in known {
        let inside = range.contains(&PkgVersion::Semver(v.clone()));
        if inside != req.matches(v) {
            let single = VersionRange::singleton(PkgVersion::Semver(v.clone()));
            range = if inside { range.intersection(&single.complement()) } else { range.union(&single) };
        }
    }
    range
}

fn v(major: u64, minor: u64, patch: u64) -> PkgVersion {
    PkgVersion::Semver(Version::new(major, minor, patch))
}

fn full_version(c: &Comparator) -> PkgVersion {
    let mut ver = Version::new(c.major, c.minor.unwrap_or(0), c.patch.unwrap_or(0));
    ver.pre = c.pre.clone();
    PkgVersion::Semver(ver)
}

fn half_open(lo: PkgVersion, hi: PkgVersion) -> VersionRange {
    VersionRange::from_range_bounds((Bound::Included(lo), Bound::Excluded(hi)))
}

/// The interval of versions one comparator admits (pre-release rules aside).
fn comparator_range(c: &Comparator) -> VersionRange {
    let (major, minor, patch) = (c.major, c.minor, c.patch);
    // `=1` is `[1.0.0, 2.0.0)`, `=1.2` is `[1.2.0, 1.3.0)`: partial versions are wildcards.
    let exact = || match (minor, patch) {
        (None, _) => half_open(v(major, 0, 0), v(major + 1, 0, 0)),
        (Some(mi), None) => half_open(v(major, mi, 0), v(major, mi + 1, 0)),
        (Some(_), Some(_)) => VersionRange::singleton(full_version(c)),
    };
    match c.op {
        Op::Exact | Op::Wildcard => exact(),
        Op::Greater => match (minor, patch) {
            (None, _) => VersionRange::higher_than(v(major + 1, 0, 0)),
            (Some(mi), None) => VersionRange::higher_than(v(major, mi + 1, 0)),
            (Some(_), Some(_)) => VersionRange::strictly_higher_than(full_version(c)),
        },
        Op::GreaterEq => VersionRange::higher_than(full_version(c)),
        Op::Less => VersionRange::strictly_lower_than(full_version(c)),
        Op::LessEq => match (minor, patch) {
            (None, _) => VersionRange::strictly_lower_than(v(major + 1, 0, 0)),
            (Some(mi), None) => VersionRange::strictly_lower_than(v(major, mi + 1, 0)),
            (Some(_), Some(_)) => VersionRange::lower_than(full_version(c)),
        },
        Op::Tilde => match minor {
            None => half_open(v(major, 0, 0), v(major + 1, 0, 0)),
            Some(mi) => half_open(full_version(c), v(major, mi + 1, 0)),
        },
        Op::Caret => {
            let lo = full_version(c);
            match (major, minor, patch) {
                (0, None, _) => half_open(lo, v(1, 0, 0)),
                (0, Some(0), None) => half_open(lo, v(0, 1, 0)),
                (0, Some(0), Some(p)) => half_open(lo, v(0, 0, p + 1)),
                (0, Some(mi), _) => half_open(lo, v(0, mi + 1, 0)),
                (ma, _, _) => half_open(lo, v(ma + 1, 0, 0)),
            }
        }
        // `Op` is non-exhaustive; an unknown operator is corrected by the
        // known-version pass in `req_to_range`.
        _ => VersionRange::full(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions() -> Vec<Version> {
        [
            "0.0.1",
            "0.0.2",
            "0.0.3",
            "0.1.0",
            "0.1.5",
            "0.2.0",
            "0.2.1-alpha",
            "0.9.9",
            "1.0.0-alpha",
            "1.0.0-beta.2",
            "1.0.0",
            "1.0.1",
            "1.1.0",
            "1.2.0-rc.1",
            "1.2.0",
            "1.2.3",
            "1.2.4-beta",
            "1.2.4",
            "1.3.0-alpha",
            "1.3.0",
            "1.9.9",
            "2.0.0-alpha",
            "2.0.0",
            "2.1.0",
            "3.0.0",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect()
    }

    /// Without the correction pass the interval must already agree with
    /// `matches` on every release version, and with it on every version.
    #[test]
    fn agrees_with_semver_matches() {
        let reqs = [
            "^1.2",
            "^1.2.3",
            "^1",
            "^0.1",
            "^0.0.2",
            "^0.0",
            "^0",
            "~1.2",
            "~1.2.3",
            "~1",
            "=1.2.3",
            "=1.2",
            "=1",
            "1.2.*",
            "1.*",
            "*",
            ">1.2",
            ">1.2.3",
            ">1",
            ">=1.2",
            ">=1.2.4-beta",
            "<1.2",
            "<1.2.3",
            "<2",
            "<=1.2",
            "<=1.2.3",
            "<=1",
            ">=1.0, <1.3",
            "^1.2.4-beta",
            "~1.2.4-beta",
            "^1.0.0-alpha",
            "=1.0.0-beta.2",
            ">1.0.0-alpha, <1.0.1",
        ];
        let known = versions();
        for r in reqs {
            let req: VersionReq = r.parse().unwrap();
            let interval =
                req.comparators.iter().fold(VersionRange::full(), |acc, c| acc.intersection(&comparator_range(c)));
            let corrected = req_to_range(&req, &known);
            for ver in &known {
                let pv = PkgVersion::Semver(ver.clone());
                assert_eq!(corrected.contains(&pv), req.matches(ver), "{r} vs {ver} (corrected)");
                if ver.pre.is_empty() {
                    assert_eq!(interval.contains(&pv), req.matches(ver), "{r} vs {ver} (interval)");
                }
            }
        }
    }

    #[test]
    fn caret_excludes_prereleases_of_other_versions() {
        let req: VersionReq = "^1.2".parse().unwrap();
        let range = req_to_range(&req, &versions());
        assert!(!range.contains(&PkgVersion::Semver("1.3.0-alpha".parse().unwrap())));
        assert!(range.contains(&PkgVersion::Semver("1.3.0".parse().unwrap())));
        assert!(!range.contains(&PkgVersion::Semver("2.0.0".parse().unwrap())));
    }
}

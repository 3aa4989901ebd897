use semver::{Version, VersionReq};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::Checksum;

/// One published version of a package: one line of its index file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub name: String,
    pub vers: Version,
    /// sha256 of the artifact file (the package checksum).
    pub cksum: Checksum,
    #[serde(default)]
    pub deps: Vec<IndexDep>,
    #[serde(default)]
    pub yanked: bool,
    pub task: String,
    /// Fingerprint of the frozen base model the prompt was trained for.
    pub base_model: Checksum,
    pub hidden_size: u32,
    /// Number of prompt vectors (rows of the prompt tensor); 0 for a prompt set
    /// that carries no tensor of its own.
    pub prompt_length: u32,
    /// Artifact size in bytes.
    pub size: u64,
    /// Format version of this line (see [`crate::FORMAT_VERSION`]).
    pub v: u32,
    /// The source data's task signature, when the package records one (format 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<crate::Signature>,
}

/// A dependency of a prompt set on another prompt package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexDep {
    pub name: String,
    pub req: VersionReq,
}

/// `config.json` at the root of an index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexConfig {
    /// Where blobs are downloaded from: a URL or path prefix; `{sha256}` is
    /// replaced by the blob's hex checksum, otherwise `/sha256/<hex>` is appended.
    pub dl: String,
    /// Base URL of the publish/yank API, if the registry has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    #[serde(default, rename = "auth-required")]
    pub auth_required: bool,
}

#[derive(Debug, Error)]
pub enum ParseError {
    #[error("index line {line}: {source}")]
    Json { line: usize, source: serde_json::Error },
    #[error("index line {line}: entry is for `{found}`, but this file is for `{expected}`")]
    WrongName { line: usize, expected: String, found: String },
    #[error("index line {line}: version {vers} appears twice")]
    Duplicate { line: usize, vers: Version },
}

/// Parses a package's index file. Blank lines are skipped; every other line
/// must be an entry for `name`, and each version may appear once.
pub fn parse_index_file(name: &str, text: &str) -> Result<Vec<IndexEntry>, ParseError> {
    let mut entries: Vec<IndexEntry> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let entry: IndexEntry = serde_json::from_str(raw).map_err(|source| ParseError::Json { line, source })?;
        if entry.name != name {
            return Err(ParseError::WrongName { line, expected: name.to_string(), found: entry.name });
        }
        if entries.iter().any(|e| e.vers == entry.vers) {
            return Err(ParseError::Duplicate { line, vers: entry.vers });
        }
        entries.push(entry);
    }
    Ok(entries)
}

/// Writes an index file: entries sorted by version, one JSON line each.
/// The output depends only on the set of entries, never on their order.
pub fn write_index_file(entries: &[IndexEntry]) -> String {
    let mut sorted: Vec<&IndexEntry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.vers.cmp(&b.vers));
    let mut out = String::new();
    for e in sorted {
        // Serialising a plain struct of strings and numbers cannot fail.
        out.push_str(&serde_json::to_string(e).unwrap_or_default());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(vers: &str) -> IndexEntry {
        IndexEntry {
            name: "mnli-prompt".into(),
            vers: vers.parse().unwrap(),
            cksum: Checksum::parse(&"a".repeat(64)).unwrap(),
            deps: vec![IndexDep { name: "sst2-prompt".into(), req: "^1.0".parse().unwrap() }],
            yanked: false,
            task: "mnli".into(),
            base_model: Checksum::parse(&"b".repeat(64)).unwrap(),
            hidden_size: 384,
            prompt_length: 100,
            size: 1234,
            v: crate::FORMAT_VERSION,
            sig: None,
        }
    }

    #[test]
    fn round_trip_sorted() {
        let text = write_index_file(&[entry("1.10.0"), entry("1.2.0")]);
        let back = parse_index_file("mnli-prompt", &text).unwrap();
        assert_eq!(back, vec![entry("1.2.0"), entry("1.10.0")]);
        assert_eq!(text.lines().count(), 2);
    }

    #[test]
    fn rejects_foreign_and_duplicate_lines() {
        let text = write_index_file(&[entry("1.0.0")]);
        assert!(matches!(parse_index_file("other", &text), Err(ParseError::WrongName { .. })));
        let twice = format!("{text}{text}");
        assert!(matches!(parse_index_file("mnli-prompt", &twice), Err(ParseError::Duplicate { line: 2, .. })));
        assert!(matches!(parse_index_file("mnli-prompt", "{not json"), Err(ParseError::Json { line: 1, .. })));
    }

    /// The index line as format 1 defined it, standing in for an old reader.
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct FormatOneEntry {
        name: String,
        vers: semver::Version,
        cksum: Checksum,
        #[serde(default)]
        deps: Vec<IndexDep>,
        #[serde(default)]
        yanked: bool,
        task: String,
        base_model: Checksum,
        hidden_size: u32,
        prompt_length: u32,
        size: u64,
        v: u32,
    }

    #[test]
    fn lines_with_and_without_a_signature_read_in_old_and_new_readers() {
        let plain = entry("1.0.0");
        let signed = IndexEntry { sig: Some(crate::Signature::encode(&[0.5; 384], 700)), ..entry("1.1.0") };
        let text = write_index_file(&[plain.clone(), signed.clone()]);
        assert!(text.lines().next().is_some_and(|l| !l.contains("\"sig\"")), "no field when absent: {text}");
        // New reader: both lines, the signature decoded.
        let back = parse_index_file("mnli-prompt", &text).unwrap();
        assert_eq!(back, vec![plain, signed]);
        assert_eq!(back[1].sig.as_ref().unwrap().decode(384).unwrap()[0], 0.5);
        // Old reader: ignores the new field.
        for line in text.lines() {
            let old: FormatOneEntry = serde_json::from_str(line).unwrap();
            assert_eq!(old.name, "mnli-prompt");
        }
        // A line written by a format-1 writer (no `sig`, `v` 1) reads as unsigned.
        let old_line = r#"{"name":"mnli-prompt","vers":"0.9.0","cksum":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","deps":[],"yanked":false,"task":"mnli","base_model":"sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","hidden_size":384,"prompt_length":100,"size":1,"v":1}"#;
        let parsed = parse_index_file("mnli-prompt", old_line).unwrap();
        assert_eq!((parsed[0].v, parsed[0].sig.clone()), (1, None));
    }
}

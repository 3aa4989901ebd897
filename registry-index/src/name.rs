use thiserror::Error;

pub const MAX_NAME_LEN: usize = 64;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum NameError {
    #[error("package name is empty")]
    Empty,
    #[error("package name `{0}` is longer than {MAX_NAME_LEN} characters")]
    TooLong(String),
    #[error("package name `{0}` must start with a lowercase letter (a-z)")]
    BadStart(String),
    #[error("package name `{name}` contains `{ch}`; only lowercase letters, digits, `-` and `_` are allowed")]
    BadChar { name: String, ch: char },
}

/// Checks the package-name rules: `[a-z][a-z0-9_-]{0,63}`.
///
/// These rules alone rule out path tricks (`..`, `/`, `\`), upper case and
/// anything a file system could treat specially.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    let first = name.chars().next().ok_or(NameError::Empty)?;
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(name.to_string()));
    }
    if !first.is_ascii_lowercase() {
        return Err(NameError::BadStart(name.to_string()));
    }
    if let Some(ch) = name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_')) {
        return Err(NameError::BadChar { name: name.to_string(), ch });
    }
    Ok(())
}

/// The form under which two names count as the same package (anti-squatting,
/// as on crates.io): case-folded, with `_` and `-` treated alike.
pub fn canonical_name(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_good_names() {
        for n in ["a", "mnli-prompt", "sst2_prompt", "x1-2_3"] {
            assert_eq!(validate_name(n), Ok(()), "{n}");
        }
        assert_eq!(validate_name(&"a".repeat(64)), Ok(()));
    }

    #[test]
    fn rejects_bad_names() {
        assert_eq!(validate_name(""), Err(NameError::Empty));
        assert!(matches!(validate_name(".."), Err(NameError::BadStart(_))));
        assert!(matches!(validate_name("a/b"), Err(NameError::BadChar { ch: '/', .. })));
        assert!(matches!(validate_name("a..b"), Err(NameError::BadChar { ch: '.', .. })));
        assert!(matches!(validate_name("Mnli"), Err(NameError::BadStart(_))));
        assert!(matches!(validate_name("mNli"), Err(NameError::BadChar { ch: 'N', .. })));
        assert!(matches!(validate_name("1abc"), Err(NameError::BadStart(_))));
        assert!(matches!(validate_name(&"a".repeat(65)), Err(NameError::TooLong(_))));
    }

    #[test]
    fn confusables_share_a_canonical_name() {
        assert_eq!(canonical_name("mnli_prompt"), canonical_name("mnli-prompt"));
        assert_ne!(canonical_name("mnli-prompt"), canonical_name("mnliprompt"));
    }
}

use crate::{validate_name, Checksum, NameError};

/// Path of a package's index file relative to the index root, in Cargo's
/// sparse layout: `1/a`, `2/ab`, `3/a/abc`, `ab/cd/abcd…`.
///
/// The name is validated first, so the result is always a safe relative path.
pub fn index_path(name: &str) -> Result<String, NameError> {
    validate_name(name)?;
    Ok(match name.len() {
        1 => format!("1/{name}"),
        2 => format!("2/{name}"),
        3 => format!("3/{}/{name}", &name[..1]),
        _ => format!("{}/{}/{name}", &name[..2], &name[2..4]),
    })
}

/// Path of a content-addressed blob relative to a blob store root:
/// `sha256/ab/abcdef…`.
pub fn blob_path(cksum: &Checksum) -> String {
    let hex = cksum.hex();
    format!("sha256/{}/{hex}", &hex[..2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_layout() {
        assert_eq!(index_path("a").unwrap(), "1/a");
        assert_eq!(index_path("ab").unwrap(), "2/ab");
        assert_eq!(index_path("abc").unwrap(), "3/a/abc");
        assert_eq!(index_path("mnli-prompt").unwrap(), "mn/li/mnli-prompt");
        assert!(index_path("../x").is_err());
    }

    #[test]
    fn blob_layout() {
        let c = Checksum::parse(&"ab".repeat(32)).unwrap();
        assert_eq!(blob_path(&c), format!("sha256/ab/{}", "ab".repeat(32)));
    }
}

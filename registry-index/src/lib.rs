//! The sparse index format shared by every attempt-pkg registry client and server.
//!
//! A registry's index is a directory tree in Cargo's sparse layout: one file per
//! package, one JSON line per published version. See `README.md` for the spec.

mod checksum;
mod entry;
mod name;
mod path;
mod signature;

pub use checksum::{Checksum, ChecksumError};
pub use entry::{parse_index_file, write_index_file, IndexConfig, IndexDep, IndexEntry, ParseError};
pub use name::{canonical_name, validate_name, NameError, MAX_NAME_LEN};
pub use path::{blob_path, index_path};
pub use signature::{cosine, Signature, SignatureError};

/// The value of the `v` field written by this version of the format.
/// 2 added the optional `sig` (task signature); readers of format 1 ignore it.
pub const FORMAT_VERSION: u32 = 2;

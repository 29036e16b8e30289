//! A throwaway CA for the unit tests of this crate.

use std::path::Path;

use certgate_core::Name;
use time::OffsetDateTime;

use crate::{CaInitOptions, Issuer, KeyType, init_ca};

/// A new CA of `key_type` in `dir/ca`, loaded as issuer `default`.
pub(crate) fn issuer(dir: &Path, key_type: KeyType) -> Issuer {
    let options = CaInitOptions {
        key_type,
        ..CaInitOptions::default()
    };
    let files = init_ca(&dir.join("ca"), &options, OffsetDateTime::now_utc()).unwrap();
    Issuer::load(Name::new("default").unwrap(), &files, None).unwrap()
}

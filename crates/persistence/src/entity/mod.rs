//! sea-orm entities. Private to the crate: rows never leave it.
// The sea-orm derives generate `pub` items inside this private module.
#![allow(unreachable_pub)]

pub(crate) mod history;
pub(crate) mod resource;

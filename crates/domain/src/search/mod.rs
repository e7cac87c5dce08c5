//! Search (http://hl7.org/fhir/R4/search.html): the search parameters of each resource type,
//! declared once as typed tables (`params`), the index values a stored resource yields for them
//! (`index`), partial dates as ranges (`dates`), the parsed form of a search request (`query`),
//! and how costly one may be (`limits`).
//!
//! Index values are read from the resource's JSON along the declared paths (a FHIRPath subset:
//! member access, choice types `[x]`, and `where(resolve() is Type)` as a target-type filter),
//! because the stored form is the client's text, not a fhir-sdk model.

pub mod dates;
pub mod index;
pub mod limits;
pub mod params;
pub mod query;

pub use index::{extract, IndexEntry, IndexValue};
pub use limits::Limits;
pub use params::{ParamType, SearchParam, Shape};

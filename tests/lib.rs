//! Integration tests live in `api/`, the binary they spawn in `bin/`; this library is empty on purpose.

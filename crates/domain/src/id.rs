//! Logical ids: the FHIR `id` datatype is `[A-Za-z0-9\-\.]{1,64}` (http://hl7.org/fhir/R4/datatypes.html#id).

/// Whether `id` is a valid FHIR logical id.
pub fn is_valid(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::is_valid;

    fn check(id: &str, expected: bool) {
        assert_eq!(is_valid(id), expected, "{id:?}");
    }

    #[test]
    fn ids_follow_the_fhir_id_datatype() {
        check("example", true);
        check("a-b.C9", true);
        check(&"x".repeat(64), true);
        check(&"x".repeat(65), false);
        check("", false);
        check("has space", false);
        check("slash/no", false);
        check("under_score", false);
        check("ü", false);
    }
}

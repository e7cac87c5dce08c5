//! Which top-level elements `_summary` keeps (http://hl7.org/fhir/R4/search.html#summary), taken from
//! the official R4 (4.0.1) StructureDefinition of each hosted type (generated into `elements.rs`
//! by `scripts/gen_elements.py`).
//!
//! `_summary=true` keeps the elements with `isSummary: true`; `_summary=text` keeps `text`, `id`,
//! `meta` and the top-level mandatory (`min >= 1`) elements; `_summary=data` drops `text`. A choice
//! element (`occurred[x]`) is listed under each of its JSON keys (`occurredDateTime`...).

use crate::resource::ResourceType;

/// The sorted summary keys of `ty` (generated from its StructureDefinition, `elements.rs`).
fn summary_elements(ty: ResourceType) -> &'static [&'static str] {
    ty.descriptor().elements.summary
}

/// The sorted mandatory keys of `ty`.
fn mandatory_elements(ty: ResourceType) -> &'static [&'static str] {
    ty.descriptor().elements.mandatory
}

/// The element a top-level JSON key belongs to: a primitive's extension companion `_name`
/// (http://hl7.org/fhir/R4/json.html#primitive) belongs to `name`.
fn element_of(key: &str) -> &str {
    key.strip_prefix('_').unwrap_or(key)
}

/// Whether the top-level JSON key `name` of a `ty` resource is kept by `_summary=true`.
///
/// `resourceType`, `id` and `meta` are always kept; other keys are kept when the R4
/// StructureDefinition marks the element `isSummary: true` (this includes `implicitRules`).
/// A `_name` key (a primitive's id/extensions) follows its element `name`.
pub fn is_summary_element(ty: ResourceType, name: &str) -> bool {
    if matches!(name, "resourceType" | "id" | "meta") {
        return true;
    }
    summary_elements(ty).binary_search(&element_of(name)).is_ok()
}

/// Whether the top-level JSON key `name` of a `ty` resource is a mandatory (`min >= 1`) element
/// in the R4 StructureDefinition, as `_summary=text` keeps. `resourceType` is not an element and
/// is not reported here; a `_name` key follows its element `name`.
pub fn is_mandatory_element(ty: ResourceType, name: &str) -> bool {
    mandatory_elements(ty).binary_search(&element_of(name)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ResourceType::{CarePlan, CareTeam, Task};

    /// Checks that `name` on `ty` is (or is not) summary and mandatory as expected.
    fn check(ty: ResourceType, name: &str, summary: bool, mandatory: bool) {
        assert_eq!(is_summary_element(ty, name), summary, "{ty}.{name} summary");
        assert_eq!(is_mandatory_element(ty, name), mandatory, "{ty}.{name} mandatory");
    }

    #[test]
    fn slices_are_sorted_and_hold_id_and_meta() {
        for ty in ResourceType::ALL {
            for slice in [summary_elements(ty), mandatory_elements(ty)] {
                assert!(slice.windows(2).all(|w| w[0] < w[1]), "{ty}: {slice:?}");
            }
            assert!(summary_elements(ty).contains(&"id") && summary_elements(ty).contains(&"meta"), "{ty}");
            // Mandatory elements are usually summary ones too; Provenance.agent is the exception
            // the StructureDefinition makes (min 1, not isSummary).
            for name in mandatory_elements(ty).iter().filter(|n| (ty, **n) != (ResourceType::Provenance, "agent")) {
                assert!(summary_elements(ty).contains(name), "{ty}.{name} mandatory but not summary");
            }
        }
    }

    #[test]
    fn always_kept_and_never_kept() {
        for ty in ResourceType::ALL {
            check(ty, "resourceType", true, false);
            check(ty, "id", true, false);
            check(ty, "meta", true, false);
            check(ty, "implicitRules", true, false);
            for name in ["text", "language", "contained", "extension", "modifierExtension", "note", "", "unknown"] {
                check(ty, name, false, false);
            }
        }
    }

    #[test]
    fn careplan() {
        check(CarePlan, "status", true, true);
        check(CarePlan, "intent", true, true);
        check(CarePlan, "subject", true, true);
        check(CarePlan, "_status", true, true);
        check(CarePlan, "identifier", true, false);
        check(CarePlan, "title", true, false);
        check(CarePlan, "author", true, false);
        check(CarePlan, "addresses", true, false);
        check(CarePlan, "activity", false, false);
        check(CarePlan, "careTeam", false, false);
        check(CarePlan, "contributor", false, false);
        check(CarePlan, "goal", false, false);
        check(CarePlan, "supportingInfo", false, false);
        check(CarePlan, "Status", false, false);
    }

    #[test]
    fn careteam() {
        check(CareTeam, "status", true, false);
        check(CareTeam, "name", true, false);
        check(CareTeam, "subject", true, false);
        check(CareTeam, "managingOrganization", true, false);
        check(CareTeam, "participant", false, false);
        check(CareTeam, "reasonCode", false, false);
        check(CareTeam, "telecom", false, false);
        check(CareTeam, "intent", false, false);
    }

    #[test]
    fn task() {
        check(Task, "status", true, true);
        check(Task, "intent", true, true);
        check(Task, "_intent", true, true);
        check(Task, "for", true, false);
        check(Task, "owner", true, false);
        check(Task, "lastModified", true, false);
        check(Task, "identifier", false, false);
        check(Task, "authoredOn", false, false);
        check(Task, "priority", false, false);
        check(Task, "input", false, false);
        check(Task, "output", false, false);
        check(Task, "subject", false, false);
    }
}

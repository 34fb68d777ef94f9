#!/usr/bin/env bash
# Lint the cluster files under infra/: yamllint, the Kubernetes schemas, checkov.
#
#   infra/lint.sh                    all three checks on infra/
#   infra/lint.sh CHECK [DIR]        one check on DIR (default infra/): yamllint | k8s | checkov
#   infra/lint.sh venv               only make sure the linters are installed
#
# The linters live in their own virtual environment, .venv-infra at the repository root (override
# with INFRA_VENV), created on first use from the exact pins of infra/lint-requirements.txt:
# checkov pins boto3, packaging and networkx to versions that conflict with the project's stack,
# so it cannot share .venv. Creating it needs PyPI once (about a minute); after that every check
# runs offline (checkov with --skip-download and BC_SKIP_MAPPING=TRUE) in a few seconds.
# Exit status: 0 when every check passed, non-zero otherwise.
set -euo pipefail

INFRA="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$INFRA")"
VENV="${INFRA_VENV:-$REPO/.venv-infra}"
REQUIREMENTS="$INFRA/lint-requirements.txt"
PYTHON="${PYTHON:-python3}"

ensure_venv() {
    local stamp="$VENV/.lint-requirements.sha256" want
    want="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"
    if [[ -x "$VENV/bin/checkov" && "$(cat "$stamp" 2> /dev/null)" == "$want" ]]; then
        return
    fi
    echo "lint.sh: installing the pinned linters into $VENV (once, about a minute)" >&2
    "$PYTHON" -m venv "$VENV"
    # Git ignores the whole environment, as Python 3.13's venv arranges by itself.
    printf '*\n' > "$VENV/.gitignore"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS" >&2
    echo "$want" > "$stamp"
}

run_yamllint() {
    echo "== yamllint: $1"
    "$VENV/bin/yamllint" --strict --config-file "$INFRA/.yamllint" "$1"
}

run_k8s() {
    echo "== Kubernetes schemas: $1/k8s"
    "$VENV/bin/python" "$INFRA/lint_manifests.py" validate "$1/k8s"
}

run_checkov() {
    echo "== checkov: $1 (Kubernetes, Dockerfile)"
    local scan status=0
    # One directory, so that checkov's graph checks (a NetworkPolicy for every pod) see the
    # manifests and the training job's pods together: a copy of DIR, plus those pods as Jobs in
    # k8s-pytorchjob-pods/ (checkov's container checks skip custom resources such as PyTorchJob).
    scan="$(mktemp -d)"
    cp -R "$1/." "$scan/"
    mkdir "$scan/k8s-pytorchjob-pods"
    "$VENV/bin/python" "$INFRA/lint_manifests.py" jobs "$1/k8s" "$scan/k8s-pytorchjob-pods" \
        > /dev/null || status=1
    if [[ $status -eq 0 ]]; then
        BC_SKIP_MAPPING=TRUE "$VENV/bin/checkov" --directory "$scan" \
            --framework kubernetes dockerfile --skip-download --compact --quiet || status=1
    fi
    rm -rf "$scan"
    return "$status"
}

check="${1:-all}"
dir="$(cd "${2:-$INFRA}" && pwd)"
case "$check" in
    venv) ensure_venv ;;
    yamllint) ensure_venv && run_yamllint "$dir" ;;
    k8s) ensure_venv && run_k8s "$dir" ;;
    checkov) ensure_venv && run_checkov "$dir" ;;
    all)
        ensure_venv
        status=0
        run_yamllint "$dir" || status=1
        run_k8s "$dir" || status=1
        run_checkov "$dir" || status=1
        if [[ $status -eq 0 ]]; then echo "lint.sh: all checks passed"; else echo "lint.sh: FAILED"; fi
        exit "$status"
        ;;
    *)
        echo "usage: infra/lint.sh [all|yamllint|k8s|checkov|venv] [DIR]" >&2
        exit 2
        ;;
esac

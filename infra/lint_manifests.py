"""Kubernetes checks of infra/k8s that the stock tools cannot do alone (run by infra/lint.sh).

``validate DIR``
    Every document of every manifest under DIR against the Kubernetes JSON schemas bundled with
    kubernetes-validate, strictly (an unknown field is an error, so a typo such as
    ``runAsNonroot`` cannot pass), for ``KUBERNETES_VERSION``. The kubernetes-validate command
    only warns about a kind it has no schema for; here that is an error, except for the custom
    resources in ``CUSTOM_KINDS`` (a PyTorchJob), whose pods are validated instead: each replica's
    pod template, as the batch/v1 Job that runs the same pod to completion.

``jobs DIR OUT``
    Write those Jobs to OUT, so that checkov, whose container checks skip custom resources, sees
    the training pods too. A Job keeps the custom resource's annotations (checkov suppressions).

Only PyYAML and kubernetes-validate are needed: this runs in .venv-infra and, imported by
tests/code/test_infra.py, in the project's .venv.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

# The newest Kubernetes whose schemas kubernetes-validate 1.37.0 bundles.
KUBERNETES_VERSION = "1.37.0"
# Custom resources checked through their pod templates (no schema is bundled for them).
CUSTOM_KINDS = {("kubeflow.org/v1", "PyTorchJob")}
# Files under infra/k8s that are not Kubernetes resources.
NOT_RESOURCES = {"kustomization.yaml"}
# A PyTorchJob replica's restartPolicy as the pod's own (the operator maps ExitCode to Never).
POD_RESTART_POLICY = {"OnFailure": "OnFailure", "Never": "Never", "ExitCode": "Never"}


def manifest_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.yaml") if p.name not in NOT_RESOURCES)


def documents(root: Path) -> Iterator[tuple[Path, int, dict[str, Any]]]:
    """(file, index in the file, resource) for every non-empty YAML document under ``root``."""
    for path in manifest_files(root):
        for index, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc is not None:
                yield path, index, doc


def is_custom(doc: Any) -> bool:
    return isinstance(doc, dict) and (doc.get("apiVersion"), doc.get("kind")) in CUSTOM_KINDS


def replica_jobs(custom: dict[str, Any]) -> list[dict[str, Any]]:
    """One batch/v1 Job per replica type of a PyTorchJob, running that replica's pod template."""
    meta = custom["metadata"]
    jobs = []
    for role, replica in custom["spec"]["pytorchReplicaSpecs"].items():
        template = dict(replica["template"])
        policy = replica.get("restartPolicy", "OnFailure")
        template["spec"] = {**template["spec"], "restartPolicy": POD_RESTART_POLICY[policy]}
        job_meta = {
            "name": f"{meta['name']}-{role.lower()}",
            "namespace": meta.get("namespace", "default"),
            "labels": dict(meta.get("labels") or {}),
            "annotations": dict(meta.get("annotations") or {}),
        }
        jobs.append(
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {k: v for k, v in job_meta.items() if v},
                "spec": {"template": template},
            }
        )
    return jobs


def validation_errors(root: Path, version: str = KUBERNETES_VERSION) -> list[str]:
    """Every schema violation under ``root``, as "file[document] kind/name: what is wrong"."""
    import kubernetes_validate as kv
    from kubernetes_validate.utils import SchemaNotFoundError

    errors = []
    for path, index, doc in documents(root):
        if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
            errors.append(f"{path.name}[{index}]: not a Kubernetes resource (no apiVersion, kind)")
            continue
        where = f"{path.name}[{index}] {doc['kind']}/{(doc.get('metadata') or {}).get('name')}"
        for resource in replica_jobs(doc) if is_custom(doc) else [doc]:
            try:
                kv.validate(resource, version, strict=True)
            except kv.ValidationError as exc:
                field = ".".join(str(p) for p in exc.path) or "(top level)"
                errors.append(f"{where}: {field}: {exc.message}")
            except SchemaNotFoundError as exc:
                errors.append(f"{where}: {exc.message}; no such kind in Kubernetes {version}")
    return errors


def write_jobs(root: Path, out: Path) -> list[Path]:
    """Write each custom resource's replica Jobs into ``out`` (for checkov); return the files."""
    written = []
    for path, index, doc in documents(root):
        if not is_custom(doc):
            continue
        for job in replica_jobs(doc):
            target = out / f"{path.stem}-{index}-{job['metadata']['name']}.yaml"
            target.write_text(yaml.safe_dump(job, sort_keys=False))
            written.append(target)
    return written


def main(argv: list[str]) -> int:
    usage = "usage: lint_manifests.py validate DIR | jobs DIR OUT"
    if len(argv) == 2 and argv[0] == "validate":
        errors = validation_errors(Path(argv[1]))
        for error in errors:
            print(f"ERROR {error}")
        count = sum(1 for _ in documents(Path(argv[1])))
        print(
            f"{count} resources checked against Kubernetes {KUBERNETES_VERSION}: "
            f"{len(errors)} errors"
        )
        return 1 if errors else 0
    if len(argv) == 3 and argv[0] == "jobs":
        for path in write_jobs(Path(argv[1]), Path(argv[2])):
            print(f"wrote {path}")
        return 0
    print(usage, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

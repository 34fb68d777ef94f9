"""Distributed training through Kubeflow Trainer: a ``PyTorchJob`` (``kubeflow.org/v1``) that runs
``torchrun -m stanflow.cli pipeline train-step`` on a master and ``workers`` worker pods.

The pipeline's ``train_model`` component calls :func:`train_with_pytorchjob` when its
``trainjob_workers`` parameter is above 0. The job's pods mount the PersistentVolumeClaim that
holds ``STANFLOW_HOME`` at the same path as the component does (``STANFLOW_HOME_PVC``), so the
training set goes in and the model comes out through that volume:

1. the component copies its training-set artifact to
   ``<home>/trainjobs/<job>/training_set.parquet``;
2. it creates the PyTorchJob and polls its ``status.conditions`` until ``Succeeded`` or ``Failed``
   (or the deadline, which is also the job's ``activeDeadlineSeconds``);
3. rank 0 of the job writes the model folder and ``step.json`` (what
   :func:`components.steps.train_model` returns) to ``<home>/trainjobs/<job>/model``; the
   component copies that folder into its model artifact.

The Kubeflow training operator gives every pod ``PET_NNODES``, ``PET_NODE_RANK``,
``MASTER_ADDR``, ``MASTER_PORT`` and (from ``nprocPerNode``) ``PET_NPROC_PER_NODE``; the command
passes them to ``torchrun`` as ``$(VAR)`` arguments, which Kubernetes expands (as
``infra/k8s/stan-pytorchjob.yaml`` does). Each process then joins the process group of
:mod:`stan_model.training.distributed`. The container must be named ``pytorch``.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
import uuid
from pathlib import Path

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL, KIND = "kubeflow.org", "v1", "pytorchjobs", "PyTorchJob"
JOBS_DIR = "trainjobs"
STEP_FILE = "step.json"
LABELS = {"app.kubernetes.io/name": "stan-train", "app.kubernetes.io/part-of": "stanflow"}
TRAINING_SET_FILE = "training_set.parquet"


class TrainJobError(RuntimeError):
    """The PyTorchJob could not be created, failed, or did not finish in time."""


def job_name(family: str, seed: int) -> str:
    """A fresh DNS-1123 name: ``stan-train-<family>-s<seed>-<random>``."""
    family = re.sub(r"[^a-z0-9-]", "-", family.lower())
    return f"stan-train-{family}-s{seed}-{uuid.uuid4().hex[:8]}"


def train_step_command(
    training_set: str, home: str, family: str, seed: int, epochs: int, out_dir: str
) -> list[str]:
    """What every pod runs: torchrun, its options from the variables the training operator sets
    (Kubernetes expands ``$(VAR)``), around the pipeline's own training step."""
    return [
        "torchrun",
        "--nnodes=$(PET_NNODES)",
        "--nproc-per-node=$(PET_NPROC_PER_NODE)",
        "--node-rank=$(PET_NODE_RANK)",
        "--master-addr=$(MASTER_ADDR)",
        "--master-port=$(MASTER_PORT)",
        "-m",
        "stanflow.cli",
        "--home",
        home,
        "pipeline",
        "train-step",
        "--training-set",
        training_set,
        "--family",
        family,
        "--seed",
        str(seed),
        "--epochs",
        str(epochs),
        "--out",
        out_dir,
    ]


def pytorchjob_manifest(
    name: str,
    namespace: str,
    image: str,
    command: list[str],
    home: str,
    pvc: str,
    workers: int,
    nproc_per_node: int = 1,
    cpu: str = "2",
    memory: str = "8Gi",
    deadline_s: int = 6 * 3600,
    service_account: str = "stanflow-trainer",
) -> dict:
    """The PyTorchJob: one master and ``workers`` workers, the same container on each."""
    if workers < 1:
        raise ValueError(f"a PyTorchJob needs at least 1 worker besides the master, got {workers}")
    if nproc_per_node < 1:
        raise ValueError(f"nproc_per_node must be at least 1, got {nproc_per_node}")

    def replica(count: int) -> dict:
        return {
            "replicas": count,
            "restartPolicy": "Never",  # a failed rank fails the job; the pipeline step retries
            "template": {
                # infra/k8s/training-networkpolicy.yaml admits rank-to-rank traffic by this label
                "metadata": {"labels": dict(LABELS)},
                "spec": {
                    "serviceAccountName": service_account,
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 10001,
                        "fsGroup": 10001,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "pytorch",  # the training operator looks for this name
                            "image": image,
                            "imagePullPolicy": "Always",
                            "command": command,
                            "env": [
                                {"name": "STANFLOW_HOME", "value": home},
                                {"name": "OMP_WAIT_POLICY", "value": "PASSIVE"},
                            ],
                            "resources": {
                                "requests": {"cpu": cpu, "memory": memory},
                                "limits": {"cpu": cpu, "memory": memory},
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "volumeMounts": [
                                {"name": "home", "mountPath": home},
                                {"name": "tmp", "mountPath": "/tmp"},
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "home", "persistentVolumeClaim": {"claimName": pvc}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        }

    metadata = {"name": name, "namespace": namespace, "labels": dict(LABELS)}
    if "@sha256:" not in image:  # the same suppression, and reason, as infra/k8s's manifests
        metadata["annotations"] = {
            "checkov.io/skip1": "CKV_K8S_43=Pinned by an exact release tag; the digest exists "
            "only once the image is pushed (STANFLOW_COMPONENT_IMAGE may name one)"
        }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": metadata,
        "spec": {
            "nprocPerNode": str(nproc_per_node),
            "runPolicy": {
                "backoffLimit": 0,
                "activeDeadlineSeconds": deadline_s,
                "cleanPodPolicy": "Running",
                "ttlSecondsAfterFinished": 24 * 3600,
            },
            "pytorchReplicaSpecs": {"Master": replica(1), "Worker": replica(workers)},
        },
    }


def kubernetes_api():
    """``CustomObjectsApi`` from the pod's service account (in cluster) or the kube config."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.CustomObjectsApi()


def job_state(job: dict) -> tuple[str, str]:
    """The last true condition of a PyTorchJob: (type, message); ("Pending", "") before any."""
    conditions = [c for c in job.get("status", {}).get("conditions") or [] if c["status"] == "True"]
    if not conditions:
        return "Pending", ""
    last = conditions[-1]
    return last["type"], last.get("message", "")


def wait_for_job(api, name: str, namespace: str, deadline_s: float, poll_s: float = 10.0) -> dict:
    """Poll until the job Succeeded (return it) or Failed / ran past ``deadline_s`` (raise)."""
    started, last = time.monotonic(), None
    while True:
        job = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        state, message = job_state(job)
        if state != last:
            log.info("PyTorchJob %s/%s: %s %s", namespace, name, state, message)
            last = state
        if state == "Succeeded":
            return job
        if state == "Failed":
            raise TrainJobError(f"PyTorchJob {namespace}/{name} failed: {message or 'no message'}")
        if time.monotonic() - started > deadline_s:
            raise TrainJobError(
                f"PyTorchJob {namespace}/{name} not finished after {deadline_s:.0f} s "
                f"(last state {state}); it is left for inspection"
            )
        time.sleep(poll_s)


def train_with_pytorchjob(
    dataset_path: str,
    home: str,
    family: str,
    seed: int,
    epochs: int,
    out_dir: str,
    workers: int,
    *,
    namespace: str,
    pvc: str | None,
    image: str,
    nproc_per_node: int = 1,
    deadline_s: int = 6 * 3600,
    poll_s: float = 10.0,
    api=None,
) -> dict:
    """Train ``family`` as a PyTorchJob on ``1 + workers`` pods; the model lands in ``out_dir``.

    Returns what :func:`components.steps.train_model` returns (rank 0's ``step.json``).
    ``api``: a ``CustomObjectsApi`` (default: :func:`kubernetes_api`)."""
    if not pvc:
        raise TrainJobError(
            "trainjob_workers > 0 needs STANFLOW_HOME_PVC: the PersistentVolumeClaim that holds "
            f"STANFLOW_HOME ({home}), mounted at the same path in the job's pods"
        )
    name = job_name(family, seed)
    job_dir = Path(home) / JOBS_DIR / name
    job_dir.mkdir(parents=True)
    shutil.copyfile(dataset_path, job_dir / TRAINING_SET_FILE)
    model_dir = job_dir / "model"
    command = train_step_command(
        str(job_dir / TRAINING_SET_FILE), home, family, seed, epochs, str(model_dir)
    )
    manifest = pytorchjob_manifest(
        name, namespace, image, command, home, pvc, workers, nproc_per_node, deadline_s=deadline_s
    )
    api = api or kubernetes_api()
    log.info("creating PyTorchJob %s/%s (1 master + %d workers)", namespace, name, workers)
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest)
    wait_for_job(api, name, namespace, deadline_s, poll_s)
    step = model_dir / STEP_FILE
    if not step.exists():
        raise TrainJobError(f"PyTorchJob {namespace}/{name} succeeded but wrote no {step}")
    meta = json.loads(step.read_text())
    shutil.copytree(model_dir, out_dir, dirs_exist_ok=True)
    Path(out_dir, STEP_FILE).unlink()
    return meta

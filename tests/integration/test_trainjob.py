"""Distributed training through a Kubeflow PyTorchJob, with the cluster faked.

No Kubernetes cluster runs on this machine, so :class:`FakeTrainingOperator` stands in for the
Kubernetes API and the Kubeflow training operator -- and only for them. It takes the manifest
that :func:`components.trainjob.train_with_pytorchjob` creates, and does what the operator
does with its pods, on localhost: runs the ``pytorch`` container's real command (``torchrun``
around ``stanflow pipeline train-step``) once per replica, with the variables the operator sets
(``PET_NNODES``, ``PET_NODE_RANK``, ``PET_NPROC_PER_NODE``, ``MASTER_ADDR``, ``MASTER_PORT``)
expanded into it as Kubernetes expands ``$(VAR)``, and reports the job's conditions from the
processes' exit codes. The "volume" the pods mount is the same folder on this machine.
Everything else is real: torchrun's multi-node rendezvous, DDP over gloo, the training, the model
files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from components.steps import build_training_set
from components.trainjob import (
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    TrainJobError,
    train_with_pytorchjob,
)
from feature_repo.build import build_features
from stan_model.data import raw_store
from stan_model.io import load_model

pytestmark = pytest.mark.integration
VENV_BIN = Path(sys.executable).parent


def _expand(text: str, env: dict[str, str]) -> str:
    """``$(VAR)`` replaced by ``env[VAR]``, as Kubernetes does in a container's command."""
    return re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), text)


class FakeTrainingOperator:
    """FAKE of the Kubernetes API + Kubeflow training operator (see the module docstring)."""

    def __init__(self, workdir: Path):
        self.workdir, self.jobs, self.created = workdir, {}, []

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        assert (group, version, plural, body["kind"]) == (GROUP, VERSION, PLURAL, KIND)
        self.created.append(body)
        specs = body["spec"]["pytorchReplicaSpecs"]
        pods = [("master", 0, specs["Master"])] + [
            (f"worker-{i}", i + 1, specs["Worker"]) for i in range(specs["Worker"]["replicas"])
        ]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        procs = []
        for pod, rank, spec in pods:
            (container,) = spec["template"]["spec"]["containers"]
            assert container["name"] == "pytorch"
            env = {k: v for k, v in os.environ.items() if not k.startswith("STANFLOW_")}
            env.update({e["name"]: e["value"] for e in container["env"]})
            operator_env = {
                "PET_NNODES": str(len(pods)),
                "PET_NODE_RANK": str(rank),
                "PET_NPROC_PER_NODE": body["spec"]["nprocPerNode"],
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(port),
            }
            env.update(operator_env, PATH=f"{VENV_BIN}{os.pathsep}{env['PATH']}")
            # Kubernetes expands $(VAR) in a container's command from the container's env.
            command = [_expand(part, env) for part in container["command"]]
            log = open(self.workdir / f"{body['metadata']['name']}-{pod}.log", "w")  # noqa: SIM115
            procs.append((pod, log, subprocess.Popen(command, env=env, stdout=log, stderr=log)))
        self.jobs[(namespace, body["metadata"]["name"])] = procs
        return body

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        procs = self.jobs[(namespace, name)]
        codes = [proc.poll() for _, _, proc in procs]
        conditions = [{"type": "Created", "status": "True"}]
        if any(code not in (None, 0) for code in codes):
            for _, _, proc in procs:
                proc.kill()
            failed = [pod for (pod, _, _), code in zip(procs, codes, strict=True) if code]
            message = f"pods {', '.join(failed)} exited non-zero"
            conditions.append({"type": "Failed", "status": "True", "message": message})
        elif all(code == 0 for code in codes):
            conditions.append({"type": "Succeeded", "status": "True"})
        else:
            conditions.append({"type": "Running", "status": "True"})
        return {"status": {"conditions": conditions}}

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text()[-2000:]}"
            for path in sorted(self.workdir.glob("*.log"))
        )


@pytest.fixture(scope="module")
def job_home(tiny_world, tmp_path_factory) -> tuple[Path, Path]:
    """A tiny world with its features and one training set (the pipeline's first step)."""
    home = tmp_path_factory.mktemp("trainjob_home")
    shutil.copytree(tiny_world, home, dirs_exist_ok=True)
    days = raw_store.partition_days(home)
    for day in days:
        build_features(home, day)
    dataset = home / "training_set.parquet"
    build_training_set(str(home), days[-1].isoformat(), 14, str(dataset))
    return home, dataset


def _train(operator: FakeTrainingOperator, dataset: Path, home: Path, out: Path) -> dict:
    """STAN, seed 0, 1 epoch, as a PyTorchJob of a master and one worker."""
    return train_with_pytorchjob(
        str(dataset),
        str(home),
        "stan",
        0,
        1,
        str(out),
        workers=1,
        namespace="stanflow",
        pvc="stanflow-home",
        image="ghcr.io/stanflow/stanflow:0.1.0",
        poll_s=0.5,
        deadline_s=300,
        api=operator,
    )


def test_a_pytorchjob_trains_on_two_pods_and_the_model_comes_back(job_home, tmp_path):
    home, dataset = job_home
    operator = FakeTrainingOperator(tmp_path)
    out = tmp_path / "model"
    started = time.perf_counter()
    try:
        meta = _train(operator, dataset, home, out)
    except Exception:
        print(operator.logs())
        raise
    print(f"PyTorchJob on 2 fake pods: {time.perf_counter() - started:.1f} s")
    (manifest,) = operator.created
    spec = manifest["spec"]
    assert spec["pytorchReplicaSpecs"]["Master"]["replicas"] == 1
    assert spec["pytorchReplicaSpecs"]["Worker"]["replicas"] == 1
    volumes = spec["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["volumes"]
    assert {"name": "home", "persistentVolumeClaim": {"claimName": "stanflow-home"}} in volumes
    assert meta["family"] == "stan" and meta["num_parameters"] > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2, operator.logs()  # two pods, one process each, one group
    assert not (out / "step.json").exists()  # the step record stays with the job
    loaded = load_model(out)
    assert loaded.family == "stan"
    assert loaded.model.num_parameters() == meta["num_parameters"]


def test_a_failing_pytorchjob_is_reported_with_its_pods(job_home, tmp_path):
    home, _ = job_home
    operator = FakeTrainingOperator(tmp_path)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not a parquet file")  # every pod fails to read it
    with pytest.raises(TrainJobError, match=r"failed: pods (master|worker-0).* exited non-zero"):
        _train(operator, broken, home, tmp_path / "model")
    assert not (tmp_path / "model").exists()


def test_without_the_home_volume_nothing_is_created(job_home, tmp_path):
    home, dataset = job_home
    operator = FakeTrainingOperator(tmp_path)
    with pytest.raises(TrainJobError, match="STANFLOW_HOME_PVC"):
        train_with_pytorchjob(
            str(dataset), str(home), "stan", 0, 1, str(tmp_path / "m"), workers=1,
            namespace="stanflow", pvc=None, image="img", api=operator,
        )  # fmt: skip
    assert operator.created == []

"""The model registry against a real S3-compatible server: SeaweedFS's ``weed`` on loopback.

The server (``tests/integration/seaweed.py``, the ``seaweed`` fixture of ``conftest.py``) is
started once per test session, each test works under its own prefix of one bucket, and the
server is stopped at the end.
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from components.registry import (
    ChecksumError,
    ConcurrentPromotionError,
    ModelRegistry,
    RegistryError,
    S3Options,
    VersionMetadata,
    registry_from_settings,
)
from components.registry.errors import PreconditionFailedError
from components.registry.s3 import S3Storage
from stanflow.cli import main
from stanflow.settings import Settings
from tests.integration.seaweed import ACCESS_KEY, BUCKET, SECRET_KEY, SeaweedServer

pytestmark = pytest.mark.integration

# Fail fast in tests: a dead server should not cost minutes of retries.
FAST = S3Options(max_retries=1, connect_timeout_s=2.0, read_timeout_s=10.0)


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The registry finds credentials through boto3's standard chain: here, the environment."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "STANFLOW_REGISTRY_URI"):
        monkeypatch.delenv(name, raising=False)


def _settings(server: SeaweedServer, tmp_path: Path, prefix: str) -> Settings:
    return Settings(
        home=tmp_path / "home",
        registry_uri=f"s3://{BUCKET}/{prefix}",
        s3_endpoint_url=server.endpoint,
        s3_region="us-east-1",
    )


def _registry(server: SeaweedServer, tmp_path: Path, prefix: str) -> ModelRegistry:
    return registry_from_settings(_settings(server, tmp_path, prefix), s3_options=FAST)


def _model_dir(root: Path, seed: int) -> Path:
    model_dir = root / f"model-{seed}"
    model_dir.mkdir(parents=True)
    generator = torch.Generator().manual_seed(seed)
    save_file({"w": torch.randn(16, 16, generator=generator)}, model_dir / "model.safetensors")
    (model_dir / "config.json").write_text(json.dumps({"seed": seed}))
    (model_dir / "metrics.json").write_text(json.dumps({"auc_ctr": 0.7}))
    return model_dir


def _register(registry: ModelRegistry, tmp_path: Path, seeds: range) -> list[str]:
    meta = VersionMetadata("stan", "fp-s3", gate_passed=True, gate_reasons=("beats PLE",))
    return [registry.register(_model_dir(tmp_path / "src", s), meta) for s in seeds]


def _assert_history_consistent(registry: ModelRegistry) -> None:
    history = registry.history()
    assert [r.sequence for r in history] == list(range(1, len(history) + 1))
    for before, after in zip(history, history[1:], strict=False):
        assert after.replaced == before.version
    assert registry.champion_record() == history[-1]


def test_promote_list_rollback_on_s3(seaweed, tmp_path):
    prefix = f"reg-{uuid.uuid4().hex[:8]}"
    registry = _registry(seaweed, tmp_path, prefix)
    v1, v2 = _register(registry, tmp_path, range(2))
    assert registry.list_versions() == [v1, v2]

    registry.promote(v1, "first")
    registry.promote(v2, "better")
    assert registry.champion() == v2
    assert registry.champion_uri() == f"s3://{BUCKET}/{prefix}/versions/{v2}"
    assert registry.rollback("regression").version == v1
    assert registry.champion() == v1
    assert [r.action for r in registry.history()] == ["promote", "promote", "rollback"]
    _assert_history_consistent(registry)

    keys = {
        obj["Key"]
        for obj in seaweed.client().list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]
    }
    assert f"{prefix}/champion.json" in keys  # one pointer object
    assert f"{prefix}/versions/{v1}/MANIFEST.json" in keys
    assert f"{prefix}/versions/{v1}/model.safetensors" in keys

    fetched = registry.fetch(v1, tmp_path / "fetched")
    source = tmp_path / "src" / "model-0" / "model.safetensors"
    assert (fetched / "model.safetensors").read_bytes() == source.read_bytes()


def test_tampered_weight_object_is_refused_with_a_checksum_error(seaweed, tmp_path):
    prefix = f"reg-{uuid.uuid4().hex[:8]}"
    registry = _registry(seaweed, tmp_path, prefix)
    (version,) = _register(registry, tmp_path, range(1))
    key = f"{prefix}/versions/{version}/model.safetensors"
    client = seaweed.client()
    data = bytearray(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    data[-1] ^= 0xFF
    client.put_object(Bucket=BUCKET, Key=key, Body=bytes(data))

    with pytest.raises(ChecksumError, match=f"s3://{BUCKET}/{key}"):
        registry.fetch(version, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
    with pytest.raises(ChecksumError, match=r"model\.safetensors"):
        registry.promote(version, "must not ship")
    assert registry.champion() is None


def test_s3_conditional_writes_let_exactly_one_writer_win(seaweed, tmp_path):
    storage = S3Storage(
        BUCKET, f"cas-{uuid.uuid4().hex[:8]}", endpoint_url=seaweed.endpoint, options=FAST
    )
    storage.write_if("pointer.json", b"start", None)
    tag = storage.read_tagged("pointer.json").tag
    writers = 8
    barrier = threading.Barrier(writers)
    won: list[int] = []

    def write(i: int) -> None:
        own = S3Storage(storage.bucket, storage.prefix, endpoint_url=seaweed.endpoint, options=FAST)
        own.client()  # connect before the barrier so the writes really overlap
        barrier.wait()
        with contextlib.suppress(PreconditionFailedError):
            own.write_if("pointer.json", f"writer {i}".encode(), tag)
            won.append(i)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1
    assert storage.read_bytes("pointer.json") == f"writer {won[0]}".encode()
    with pytest.raises(PreconditionFailedError):
        storage.write_if("pointer.json", b"late", None)  # create-only on an existing object


def test_two_concurrent_promotions_leave_exactly_one_champion(seaweed, tmp_path):
    prefix = f"reg-{uuid.uuid4().hex[:8]}"
    registry = _registry(seaweed, tmp_path, prefix)
    rounds = 3
    base, *fresh = _register(registry, tmp_path, range(1 + 2 * rounds))
    registry.promote(base, "base")
    winners: list[str] = []
    for r in range(rounds):
        pair = fresh[2 * r : 2 * r + 2]
        barrier = threading.Barrier(2)
        won: list[str] = []
        errors: list[Exception] = []

        def promote(version: str, barrier=barrier, won=won, errors=errors) -> None:
            contender = _registry(seaweed, tmp_path, prefix)
            contender.storage.client()
            barrier.wait()
            try:
                contender.promote(version, f"race for {version}")
                won.append(version)
            except ConcurrentPromotionError:
                pass  # lost: changed nothing
            except Exception as exc:
                errors.append(exc)

        threads = [threading.Thread(target=promote, args=(v,)) for v in pair]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        assert won and registry.champion() in won
        winners += won

    history = registry.history()
    assert len(history) == 1 + len(winners)
    assert {r.version for r in history[1:]} == set(winners)
    _assert_history_consistent(registry)


def test_errors_name_the_bucket_and_key(seaweed, tmp_path):
    settings = Settings(
        home=tmp_path,
        registry_uri="s3://no-such-bucket-here/team/models",
        s3_endpoint_url=seaweed.endpoint,
    )
    registry = registry_from_settings(settings, s3_options=FAST)
    with pytest.raises(RegistryError) as caught:
        registry.champion()
    message = str(caught.value)
    assert "bucket 'no-such-bucket-here'" in message
    assert "key 'team/models/champion.json'" in message
    assert "NoSuchBucket" in message
    with pytest.raises(RegistryError, match="key 'team/models/versions/'"):
        registry.list_versions()


def test_cli_against_s3(seaweed, tmp_path, monkeypatch):
    prefix = f"reg-{uuid.uuid4().hex[:8]}"
    registry = _registry(seaweed, tmp_path, prefix)
    v1, v2 = _register(registry, tmp_path, range(2))
    monkeypatch.setenv("STANFLOW_REGISTRY_URI", f"s3://{BUCKET}/{prefix}")
    monkeypatch.setenv("STANFLOW_S3_ENDPOINT_URL", seaweed.endpoint)
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(main, ["--home", str(tmp_path / "home"), "registry", *args])
        assert result.exit_code == 0, result.output
        return result.output

    run("promote", v1, "--reason", "first")
    run("promote", v2, "--reason", "second")
    listed = json.loads(run("list", "--json"))
    assert listed["registry"] == f"s3://{BUCKET}/{prefix}" and listed["champion"] == v2
    assert json.loads(run("rollback", "--reason", "bad", "--json"))["version"] == v1

"""The model registry on the local filesystem: versions, integrity, the champion, the CLI."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import socket
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from components.registry import (
    ChecksumError,
    ConcurrentPromotionError,
    IntegrityError,
    LocalStorage,
    ModelRegistry,
    RegistryError,
    S3Options,
    S3Storage,
    VersionExistsError,
    VersionMetadata,
    VersionNotFoundError,
    registry_from_settings,
)
from components.registry.champion import CHAMPION_KEY
from components.registry.errors import PreconditionFailedError
from components.registry.loading import load_version
from components.registry.manifest import VERSION_ID_PATTERN
from stanflow.cli import main
from stanflow.settings import Settings

T0 = datetime(2026, 3, 14, 10, 15, 2, 117000, tzinfo=UTC)


class TickingClock:
    """A clock that advances one second per reading: distinct, predictable version ids."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start
        self.lock = threading.Lock()

    def __call__(self) -> datetime:
        with self.lock:
            self.now += timedelta(seconds=1)
            return self.now


def make_model_dir(root: Path, seed: int) -> Path:
    """A directory like the trainer writes: safetensors weights, config and metrics."""
    model_dir = root / f"model-{seed}"
    model_dir.mkdir(parents=True)
    generator = torch.Generator().manual_seed(seed)
    save_file(
        {"tower.weight": torch.randn(4, 8, generator=generator), "bias": torch.zeros(4)},
        model_dir / "model.safetensors",
    )
    (model_dir / "config.json").write_text(json.dumps({"embedding_dim": 8, "seed": seed}))
    (model_dir / "metrics.json").write_text(json.dumps({"auc_ctr": 0.70 + seed / 1000}))
    return model_dir


def meta(passed: bool = True, fingerprint: str = "fp-2026-03-14") -> VersionMetadata:
    return VersionMetadata(
        model_family="stan",
        data_fingerprint=fingerprint,
        gate_passed=passed,
        gate_reasons=("beats PLE on every task",) if passed else ("order AUC below PLE",),
        extra={"run_id": "run-1"},
    )


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(LocalStorage(tmp_path / "registry"), clock=TickingClock())


def register_n(registry: ModelRegistry, tmp_path: Path, n: int) -> list[str]:
    return [registry.register(make_model_dir(tmp_path / "src", i), meta()) for i in range(n)]


def assert_history_consistent(registry: ModelRegistry) -> None:
    history = registry.history()
    assert [r.sequence for r in history] == list(range(1, len(history) + 1))
    assert history[0].replaced is None
    for before, after in zip(history, history[1:], strict=False):
        assert after.replaced == before.version
    assert registry.champion_record() == history[-1]


# -- versions ----------------------------------------------------------------------------------


def test_register_list_show_fetch_round_trip(registry, tmp_path):
    src = make_model_dir(tmp_path / "src", 0)
    v1 = registry.register(src, meta())
    v2 = registry.register(make_model_dir(tmp_path / "src", 1), meta(fingerprint="fp-2"))

    assert registry.list_versions() == [v1, v2]
    assert VERSION_ID_PATTERN.match(v1) and v1 < v2
    assert v1.startswith("20260314T101503.117Z-")

    info = registry.show(v1)
    assert info.uri == str(tmp_path / "registry" / "versions" / v1)
    assert info.metadata["model_family"] == "stan"
    assert info.metadata["data_fingerprint"] == "fp-2026-03-14"
    assert info.metadata["gate_passed"] is True
    assert info.metadata["gate_reasons"] == ["beats PLE on every task"]
    assert info.metadata["created_at"] == "2026-03-14T10:15:03.117+00:00"
    assert info.metadata["champion_at_registration"] is None
    assert info.metadata["extra"] == {"run_id": "run-1"}
    by_path = {e.path: e for e in info.files}
    assert set(by_path) == {"config.json", "metadata.json", "metrics.json", "model.safetensors"}
    weights = (src / "model.safetensors").read_bytes()
    assert by_path["model.safetensors"].sha256 == hashlib.sha256(weights).hexdigest()
    assert by_path["model.safetensors"].size == len(weights)

    dest = registry.fetch(v1, tmp_path / "fetched")
    for name in ("model.safetensors", "config.json", "metrics.json"):
        assert (dest / name).read_bytes() == (src / name).read_bytes()

    loaded = load_version(registry, v1, tmp_path / "loaded")
    assert loaded.config == {"embedding_dim": 8, "seed": 0}
    assert loaded.tensors["model.safetensors"]["tower.weight"].shape == (4, 8)


def test_a_version_records_the_champion_at_registration(registry, tmp_path):
    v1 = registry.register(make_model_dir(tmp_path / "src", 0), meta())
    registry.promote(v1, "first")
    v2 = registry.register(make_model_dir(tmp_path / "src", 1), meta())
    assert registry.show(v2).metadata["champion_at_registration"] == v1


def test_an_existing_version_is_never_overwritten(tmp_path):
    frozen = ModelRegistry(LocalStorage(tmp_path / "registry"), clock=lambda: T0)
    src = make_model_dir(tmp_path / "src", 0)
    version = frozen.register(src, meta())
    manifest = tmp_path / "registry" / "versions" / version / "MANIFEST.json"
    before = manifest.read_bytes()
    with pytest.raises(VersionExistsError, match=version):
        frozen.register(src, meta())
    assert manifest.read_bytes() == before
    assert frozen.list_versions() == [version]


def test_identical_content_reuses_its_version_and_promoting_the_champion_is_a_no_op(
    registry, tmp_path
):
    """A rerun of a day trains the same model: no second version, no second promotion."""
    first, reused = registry.register_or_reuse(make_model_dir(tmp_path / "a", 0), meta(False))
    assert reused is False
    registry.promote(first, "bootstrap", force=True)
    rerun = make_model_dir(tmp_path / "b", 0)
    (rerun / "metrics.json").write_text(json.dumps({"samples_per_s": 123.4}))  # a new log
    again, reused = registry.register_or_reuse(rerun, meta(True))
    assert (again, reused) == (first, True)
    assert registry.show(first).metadata["gate_passed"] is False  # immutable: kept as it was
    record = registry.promote(first, "gate passed on the rerun")
    assert record.sequence == 1 and len(registry.history()) == 1
    assert registry.list_versions() == [first]

    changed = make_model_dir(tmp_path / "c", 0)
    (changed / "config.json").write_text(json.dumps({"embedding_dim": 16, "seed": 0}))
    other, reused = registry.register_or_reuse(changed, meta())
    assert other != first and reused is False
    assert (
        registry.show(other).metadata["content_digest"]
        != registry.show(first).metadata["content_digest"]
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("weights.pt", "pickles"),
        ("model.pkl", "pickles"),
        ("metadata.json", "written by the registry"),
        ("MANIFEST.json", "written by the registry"),
    ],
)
def test_register_refuses_pickles_and_reserved_names(registry, tmp_path, name, expected):
    src = make_model_dir(tmp_path / "src", 0)
    (src / name).write_bytes(b"x")
    with pytest.raises(RegistryError, match=expected):
        registry.register(src, meta())
    assert registry.list_versions() == []


def test_register_needs_safetensors_weights_and_a_directory(registry, tmp_path):
    src = make_model_dir(tmp_path / "src", 0)
    (src / "model.safetensors").unlink()
    with pytest.raises(RegistryError, match="no .safetensors"):
        registry.register(src, meta())
    with pytest.raises(RegistryError, match="does not exist"):
        registry.register(tmp_path / "nowhere", meta())


def test_tampered_weight_file_is_refused_naming_the_file(registry, tmp_path):
    version = register_n(registry, tmp_path, 1)[0]
    weights = tmp_path / "registry" / "versions" / version / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, one bit pattern changed
    weights.write_bytes(bytes(data))

    with pytest.raises(ChecksumError, match=r"model\.safetensors") as caught:
        registry.fetch(version, tmp_path / "dest")
    assert str(weights) in str(caught.value)
    assert not (tmp_path / "dest").exists()  # nothing half-fetched is left behind
    with pytest.raises(ChecksumError, match=r"model\.safetensors"):
        registry.promote(version, "should not ship")
    assert registry.champion() is None


def test_a_manifest_edited_to_match_a_tampered_file_is_refused(registry, tmp_path):
    version = register_n(registry, tmp_path, 1)[0]
    vdir = tmp_path / "registry" / "versions" / version
    (vdir / "metrics.json").write_text('{"auc_ctr": 0.99}')
    body = json.loads((vdir / "MANIFEST.json").read_text())
    for entry in body["files"]:
        if entry["path"] == "metrics.json":
            data = (vdir / "metrics.json").read_bytes()
            entry["sha256"], entry["size"] = hashlib.sha256(data).hexdigest(), len(data)
    (vdir / "MANIFEST.json").write_text(json.dumps(body))
    with pytest.raises(ChecksumError, match=r"MANIFEST\.json.*altered"):
        registry.fetch(version, tmp_path / "dest")


def test_a_file_not_in_the_manifest_is_refused(registry, tmp_path):
    version = register_n(registry, tmp_path, 1)[0]
    (tmp_path / "registry" / "versions" / version / "extra.safetensors").write_bytes(b"evil")
    with pytest.raises(IntegrityError, match=r"not in its manifest.*extra\.safetensors"):
        registry.fetch(version, tmp_path / "dest")


def test_a_file_missing_from_the_version_is_refused(registry, tmp_path):
    version = register_n(registry, tmp_path, 1)[0]
    (tmp_path / "registry" / "versions" / version / "config.json").unlink()
    with pytest.raises(IntegrityError, match=r"lacks files.*config\.json"):
        registry.verify(version)


def test_unknown_and_malformed_versions_say_what_to_do(registry):
    with pytest.raises(VersionNotFoundError, match="stanflow registry list"):
        registry.show("20260101T000000.000Z-0123456789ab")
    with pytest.raises(RegistryError, match="invalid version id"):
        registry.show("../../etc")


def test_fetch_refuses_a_non_empty_destination(registry, tmp_path):
    version = register_n(registry, tmp_path, 1)[0]
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(RegistryError, match="not an empty directory"):
        registry.fetch(version, dest)
    assert (dest / "keep.txt").read_text() == "mine"


# -- champion ----------------------------------------------------------------------------------


def test_promote_rollback_and_history(registry, tmp_path):
    v1, v2, v3 = register_n(registry, tmp_path, 3)
    assert registry.champion() is None and registry.champion_uri() is None
    with pytest.raises(RegistryError, match="nothing to roll back"):
        registry.rollback("nothing there")

    registry.promote(v1, "first model")
    registry.promote(v2, "beats v1")
    record = registry.promote(v3, "beats v2")
    assert (record.version, record.previous, record.sequence) == (v3, v2, 3)
    assert registry.champion_uri() == str(tmp_path / "registry" / "versions" / v3)

    pointer = json.loads((tmp_path / "registry" / "champion.json").read_text())
    assert (
        pointer["version"] == v3 and pointer["previous"] == v2 and pointer["reason"] == "beats v2"
    )

    assert registry.rollback("v3 hurts CVR").version == v2
    back = registry.rollback("v2 too")
    assert (back.version, back.previous, back.replaced, back.action) == (v1, None, v2, "rollback")
    with pytest.raises(RegistryError, match="no earlier champion"):
        registry.rollback("nothing before v1")

    again = registry.promote(v3, "fixed upstream data")
    assert (again.version, again.previous) == (v3, v1)
    assert registry.rollback("once more").version == v1

    history = registry.history()
    assert [(r.action, r.version) for r in history] == [
        ("promote", v1),
        ("promote", v2),
        ("promote", v3),
        ("rollback", v2),
        ("rollback", v1),
        ("promote", v3),
        ("rollback", v1),
    ]
    assert_history_consistent(registry)


def test_promoting_the_champion_again_changes_nothing(registry, tmp_path):
    (v1,) = register_n(registry, tmp_path, 1)
    first = registry.promote(v1, "first")
    assert registry.promote(v1, "again") == first
    assert len(registry.history()) == 1


def test_a_version_the_gate_rejected_needs_force(registry, tmp_path):
    version = registry.register(make_model_dir(tmp_path / "src", 0), meta(passed=False))
    with pytest.raises(RegistryError, match="order AUC below PLE.*--force"):
        registry.promote(version, "try")
    assert registry.champion() is None
    assert registry.promote(version, "operator override", force=True).version == version


def test_a_promotion_needs_a_reason(registry, tmp_path):
    (v1,) = register_n(registry, tmp_path, 1)
    with pytest.raises(RegistryError, match="needs a reason"):
        registry.promote(v1, "  ")


class RivalBeforeWrite(LocalStorage):
    """Lets a rival promotion land between our read of the pointer and our conditional write."""

    def __init__(self, root: Path, rival: ModelRegistry, rival_version: str) -> None:
        super().__init__(root)
        self.rival, self.rival_version, self.fired = rival, rival_version, False

    def write_if(self, key: str, data: bytes, expected_tag: str | None) -> None:
        if key == CHAMPION_KEY and not self.fired:
            self.fired = True
            self.rival.promote(self.rival_version, "rival")
        super().write_if(key, data, expected_tag)


def test_a_promotion_that_loses_a_race_changes_nothing(registry, tmp_path):
    v1, v2, v3 = register_n(registry, tmp_path, 3)
    registry.promote(v1, "base")
    loser = ModelRegistry(
        RivalBeforeWrite(tmp_path / "registry", registry, v2), clock=TickingClock()
    )
    with pytest.raises(ConcurrentPromotionError, match=f"it is now {v2}"):
        loser.promote(v3, "loses")
    assert registry.champion() == v2
    assert [r.version for r in registry.history()] == [v1, v2]
    assert_history_consistent(registry)


class WriteLandsButAnswerIsLost(LocalStorage):
    """The first conditional write succeeds, then reports failure (a retried lost response)."""

    def write_if(self, key: str, data: bytes, expected_tag: str | None) -> None:
        super().write_if(key, data, expected_tag)
        raise PreconditionFailedError("simulated: retry saw our own write")


def test_a_write_that_landed_despite_an_error_counts_as_success(tmp_path):
    setup = ModelRegistry(LocalStorage(tmp_path / "registry"), clock=TickingClock())
    (v1,) = register_n(setup, tmp_path, 1)
    flaky = ModelRegistry(WriteLandsButAnswerIsLost(tmp_path / "registry"), clock=TickingClock())
    assert flaky.promote(v1, "lost answer").version == v1
    assert setup.champion() == v1
    assert_history_consistent(setup)


class CrashBeforeHistory(LocalStorage):
    """Dies after switching the pointer, before appending the history record."""

    def write_new(self, key: str, data: bytes) -> None:
        if key.startswith("history/"):
            raise RuntimeError("simulated crash")
        super().write_new(key, data)


def test_a_history_gap_left_by_a_crash_is_healed_by_the_next_switch(registry, tmp_path):
    v1, v2 = register_n(registry, tmp_path, 2)
    crashing = ModelRegistry(CrashBeforeHistory(tmp_path / "registry"), clock=TickingClock())
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashing.promote(v1, "crashes midway")
    assert registry.champion() == v1 and registry.history() == []
    registry.promote(v2, "next")
    assert [r.version for r in registry.history()] == [v1, v2]
    assert registry.rollback("back").version == v1
    assert_history_consistent(registry)


def test_concurrent_promotions_in_threads_leave_one_champion(registry, tmp_path):
    rounds, contenders = 3, 4
    base, *fresh = register_n(registry, tmp_path, 1 + rounds * contenders)
    registry.promote(base, "base")
    winners: list[str] = []

    for r in range(rounds):
        pair = fresh[r * contenders : (r + 1) * contenders]
        barrier = threading.Barrier(contenders)
        round_winners: list[str] = []
        errors: list[Exception] = []

        def promote(version: str, barrier=barrier, won=round_winners, errors=errors) -> None:
            contender = ModelRegistry(LocalStorage(tmp_path / "registry"), clock=TickingClock())
            barrier.wait()
            try:
                contender.promote(version, f"race for {version}")
                won.append(version)
            except ConcurrentPromotionError:
                pass  # lost the race: changed nothing
            except Exception as exc:  # anything else fails the test below
                errors.append(exc)

        threads = [threading.Thread(target=promote, args=(v,)) for v in pair]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        assert round_winners, "some promotion of each round must win"
        assert registry.champion() in round_winners
        winners += round_winners

    history = registry.history()
    assert len(history) == 1 + len(winners)  # one record per winning switch, none for losers
    assert {r.version for r in history[1:]} == set(winners)
    assert_history_consistent(registry)


def _promote_in_child(root: str, version: str, barrier, results) -> None:
    contender = ModelRegistry(LocalStorage(Path(root)), clock=TickingClock())
    barrier.wait()
    try:
        contender.promote(version, f"process race for {version}")
        results.put(("won", version))
    except ConcurrentPromotionError:
        results.put(("lost", version))
    except Exception as exc:  # reported to the parent, which fails the test
        results.put(("error", repr(exc)))


def test_concurrent_promotions_in_two_processes_leave_one_champion(registry, tmp_path):
    base, left, right = register_n(registry, tmp_path, 3)
    registry.promote(base, "base")
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    root = str(tmp_path / "registry")
    procs = [
        ctx.Process(target=_promote_in_child, args=(root, v, barrier, results))
        for v in (left, right)
    ]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=30) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    assert not [o for o in outcomes if o[0] == "error"], outcomes
    winners = {v for outcome, v in outcomes if outcome == "won"}
    assert winners, outcomes  # at least one wins; both only if they did not overlap
    assert registry.champion() in winners
    history = registry.history()
    assert len(history) == 1 + len(winners)
    assert {r.version for r in history[1:]} == winners
    assert_history_consistent(registry)


def test_local_conditional_write_is_a_compare_and_swap(tmp_path):
    storage = LocalStorage(tmp_path / "r")
    storage.write_if("p.json", b"1", None)
    with pytest.raises(PreconditionFailedError):
        storage.write_if("p.json", b"2", None)
    tag = storage.read_tagged("p.json").tag
    storage.write_if("p.json", b"3", tag)
    with pytest.raises(PreconditionFailedError):
        storage.write_if("p.json", b"4", tag)  # stale tag
    assert storage.read_bytes("p.json") == b"3"


# -- settings and S3 configuration -------------------------------------------------------------


def test_registry_from_settings_picks_the_backend(tmp_path):
    local = registry_from_settings(Settings(home=tmp_path))
    assert isinstance(local.storage, LocalStorage)
    assert local.uri == str(tmp_path / "registry")

    s3 = registry_from_settings(
        Settings(
            home=tmp_path,
            registry_uri="s3://models-bucket/stanflow/registry",
            s3_endpoint_url="http://127.0.0.1:9",
            s3_region="eu-west-1",
        )
    )
    assert isinstance(s3.storage, S3Storage)
    assert (s3.storage.bucket, s3.storage.prefix) == ("models-bucket", "stanflow/registry")
    assert s3.pointer_uri == "s3://models-bucket/stanflow/registry/champion.json"

    assert registry_from_settings(
        Settings(home=tmp_path, registry_uri=f"file://{tmp_path}/r")
    ).uri == str(tmp_path / "r")
    with pytest.raises(RegistryError, match="scheme 'gs'"):
        registry_from_settings(Settings(home=tmp_path, registry_uri="gs://bucket/x"))


def test_s3_client_has_explicit_retries_and_timeouts():
    storage = S3Storage(
        "b-models",
        endpoint_url="http://127.0.0.1:9",
        options=S3Options(max_retries=6, connect_timeout_s=3.0, read_timeout_s=20.0),
    )
    config = storage.client().meta.config
    # botocore counts retries in "max_attempts" and adds the first try to the total.
    assert config.retries == {"total_max_attempts": 7, "mode": "standard"}
    assert (config.connect_timeout, config.read_timeout) == (3.0, 20.0)
    assert storage.client().meta.region_name == "us-east-1"


def test_an_unreachable_s3_endpoint_error_names_bucket_and_key(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    with socket.socket() as sock:  # a port nobody listens on: bound, never accepting
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        storage = S3Storage(
            "models-bucket",
            "team/registry",
            endpoint_url=f"http://127.0.0.1:{port}",
            options=S3Options(max_retries=0, connect_timeout_s=1.0, read_timeout_s=1.0),
        )
        with pytest.raises(RegistryError) as caught:
            ModelRegistry(storage).champion()
    message = str(caught.value)
    assert "bucket 'models-bucket'" in message and "key 'team/registry/champion.json'" in message
    assert "STANFLOW_S3_ENDPOINT_URL" in message


# -- CLI ---------------------------------------------------------------------------------------


def test_cli_list_show_promote_rollback_history_fetch(tmp_path, monkeypatch):
    monkeypatch.delenv("STANFLOW_REGISTRY_URI", raising=False)
    home = tmp_path / "home"
    setup = ModelRegistry(LocalStorage(home / "registry"), clock=TickingClock())
    v1, v2 = register_n(setup, tmp_path, 2)
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(main, ["--home", str(home), "registry", *args])
        assert result.exit_code == code, result.output
        return result.output

    listing = run("list")
    assert "2 versions, champion none" in listing and v1 in listing and v2 in listing
    assert "promote" in run("promote", v1, "--reason", "first")
    out = run("promote", v2, "--reason", "better CTR")
    assert f"champion is now {v2} (was {v1})" in out
    assert f"* {v2}" in run("list")
    listed = json.loads(run("list", "--json"))
    assert listed["champion"] == v2 and [r["version"] for r in listed["versions"]] == [v1, v2]

    shown = run("show", v1)
    assert "model.safetensors" in shown and "data_fingerprint" in shown
    assert json.loads(run("show", v2, "--json"))["champion"] is True

    rolled = json.loads(run("rollback", "--reason", "CVR regression", "--json"))
    assert rolled["version"] == v1 and rolled["action"] == "rollback"
    history = json.loads(run("history", "--json"))
    assert [h["version"] for h in history] == [v1, v2, v1]
    assert "CVR regression" in run("history")

    assert "every file verified" in run("fetch", str(tmp_path / "serve"))
    assert (tmp_path / "serve" / "model.safetensors").exists()


def test_cli_errors_are_clear(tmp_path, monkeypatch):
    monkeypatch.delenv("STANFLOW_REGISTRY_URI", raising=False)
    runner = CliRunner()
    home = ["--home", str(tmp_path)]
    result = runner.invoke(main, [*home, "registry", "rollback", "--reason", "x"])
    assert result.exit_code == 1 and "nothing to roll back" in result.output
    result = runner.invoke(
        main, [*home, "registry", "promote", "20260101T000000.000Z-0123456789ab", "--reason", "x"]
    )
    assert result.exit_code == 1 and "stanflow registry list" in result.output
    result = runner.invoke(main, [*home, "registry", "promote", "v1"])
    assert result.exit_code == 2 and "--reason" in result.output
    result = runner.invoke(main, [*home, "registry", "fetch", str(tmp_path / "d")])
    assert result.exit_code == 1 and "no champion" in result.output


def test_cli_uses_the_registry_uri_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("STANFLOW_REGISTRY_URI", str(tmp_path / "elsewhere"))
    setup = ModelRegistry(LocalStorage(tmp_path / "elsewhere"), clock=TickingClock())
    (v1,) = register_n(setup, tmp_path, 1)
    result = CliRunner().invoke(main, ["--home", str(tmp_path / "home"), "registry", "list"])
    assert result.exit_code == 0, result.output
    assert v1 in result.output and str(tmp_path / "elsewhere") in result.output

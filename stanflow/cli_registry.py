"""``stanflow registry``: list, inspect, promote and roll back model versions.

The registry is ``STANFLOW_REGISTRY_URI`` (default ``<home>/registry``; ``s3://bucket/prefix``
uses ``STANFLOW_S3_ENDPOINT_URL``, ``STANFLOW_S3_REGION`` and the standard AWS credential chain).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from components.registry import ChampionRecord, ModelRegistry

_JSON_HELP = "Print JSON instead of text (for scripts)."


def _registry(ctx: click.Context) -> ModelRegistry:
    from components.registry import registry_from_settings

    with _registry_errors():
        return registry_from_settings(ctx.obj["settings"])


@contextmanager
def _registry_errors() -> Iterator[None]:
    from components.registry import RegistryError

    try:
        yield
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from exc


def _echo_json(payload: Any) -> None:
    click.echo(json.dumps(payload, indent=2, sort_keys=True))


def _describe_switch(record: ChampionRecord) -> str:
    was = record.replaced or "none"
    return (
        f"champion is now {record.version} (was {was}); {record.action} #{record.sequence} "
        f"by {record.by}: {record.reason}"
    )


@click.group()
def registry() -> None:
    """Model registry: immutable, checksummed versions and the champion pointer.

    Where it lives: STANFLOW_REGISTRY_URI, a local directory (default <home>/registry) or
    s3://bucket/prefix with STANFLOW_S3_ENDPOINT_URL and the usual AWS credentials.
    """


@registry.command("list")
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@click.pass_context
def list_cmd(ctx: click.Context, as_json: bool) -> None:
    """List every registered version, oldest first; the champion is marked with '*'."""
    reg = _registry(ctx)
    with _registry_errors():
        champion = reg.champion()
        rows = []
        for version in reg.list_versions():
            meta = reg.show(version).metadata
            rows.append(
                {
                    "version": version,
                    "champion": version == champion,
                    "created_at": meta.get("created_at"),
                    "model_family": meta.get("model_family"),
                    "gate_passed": meta.get("gate_passed"),
                }
            )
    if as_json:
        _echo_json({"registry": reg.uri, "champion": champion, "versions": rows})
        return
    click.echo(f"registry {reg.uri}: {len(rows)} versions, champion {champion or 'none'}")
    for row in rows:
        mark = "*" if row["champion"] else " "
        gate = "passed" if row["gate_passed"] else "rejected"
        click.echo(
            f"{mark} {row['version']}  {row['created_at']}  {row['model_family']:<8s}  gate {gate}"
        )


@registry.command()
@click.argument("version")
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@click.pass_context
def show(ctx: click.Context, version: str, as_json: bool) -> None:
    """Show one version's metadata and files (manifest and metadata are checked)."""
    reg = _registry(ctx)
    with _registry_errors():
        info = reg.show(version)
        is_champion = reg.champion() == version
    if as_json:
        payload = asdict(info)
        payload["champion"] = is_champion
        _echo_json(payload)
        return
    click.echo(f"version {info.version}{'  (champion)' if is_champion else ''}\n  at {info.uri}")
    for key in sorted(info.metadata):
        click.echo(f"  {key}: {json.dumps(info.metadata[key])}")
    click.echo("  files:")
    for entry in info.files:
        click.echo(f"    {entry.path:<28s} {entry.size:>12,d} B  sha256 {entry.sha256[:16]}…")


def _switch(ctx: click.Context, as_json: bool, action: Callable[[ModelRegistry], Any]) -> None:
    reg = _registry(ctx)
    with _registry_errors():
        record = action(reg)
    if as_json:
        _echo_json(asdict(record))
    else:
        click.echo(_describe_switch(record))


@registry.command()
@click.argument("version")
@click.option("--reason", required=True, help="Why this version ships; kept in the history.")
@click.option("--force", is_flag=True, help="Promote even though the gate rejected the version.")
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@click.pass_context
def promote(ctx: click.Context, version: str, reason: str, force: bool, as_json: bool) -> None:
    """Make VERSION the champion, after checking every file against its manifest.

    The pointer is switched atomically; if another promotion wins a race, nothing changes and
    the command fails naming the winner.
    """
    _switch(ctx, as_json, lambda reg: reg.promote(version, reason, force=force))


@registry.command()
@click.option("--reason", required=True, help="Why the current champion is withdrawn.")
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@click.pass_context
def rollback(ctx: click.Context, reason: str, as_json: bool) -> None:
    """Switch the champion back to the one it replaced, as recorded in the history.

    Repeated rollbacks walk further back; the history keeps every switch.
    """
    _switch(ctx, as_json, lambda reg: reg.rollback(reason))


@registry.command()
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@click.pass_context
def history(ctx: click.Context, as_json: bool) -> None:
    """Show every promotion and rollback of the champion, oldest first."""
    reg = _registry(ctx)
    with _registry_errors():
        records = reg.history()
    if as_json:
        _echo_json([asdict(r) for r in records])
        return
    if not records:
        click.echo(f"registry {reg.uri}: no promotions yet")
    for r in records:
        click.echo(
            f"#{r.sequence:<4d} {r.promoted_at}  {r.action:<8s} {r.version}  "
            f"(replaced {r.replaced or 'none'}) by {r.by}: {r.reason}"
        )


@registry.command()
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--version", "version", help="Version to fetch (default: the champion).")
@click.pass_context
def fetch(ctx: click.Context, dest: Path, version: str | None) -> None:
    """Download a version into DEST (absent or empty), verifying every checksum."""
    reg = _registry(ctx)
    with _registry_errors():
        version = version or reg.champion()
        if version is None:
            raise click.ClickException(f"registry {reg.uri} has no champion; pass --version")
        path = reg.fetch(version, dest)
    click.echo(f"fetched {version} to {path} (every file verified)")

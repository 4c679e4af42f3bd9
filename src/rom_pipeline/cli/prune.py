"""Prune old versions of the versioned artifacts (``pod_basis``, ``latent_dataset``, models, ...).

Kedro keeps every version of a ``versioned: true`` dataset as ``<filepath>/<version>/<name>``,
and every run adds one (7 MB each for ``pod_basis`` and ``latent_dataset`` in the default
experiment). This command keeps, per versioned catalog entry of one experiment,

- the ``keep`` newest versions (Kedro's version strings are UTC timestamps, so newest = largest),
- every version that the experiment's ``summary.json`` still references (``artifact_versions``,
  written by :class:`rom_pipeline.framework.hooks.ProvenanceHooks`), so a reported result stays
  reproducible from its own artifacts,

and deletes the other version folders. Local (or mounted) paths only.

Command line (stdout: one line per pruned version and a total; ``--dry-run`` deletes nothing)::

    python -m rom_pipeline.cli.prune --env test --keep 3 [--experiment NAME] [--dry-run]
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

PROJECT_PATH = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Version:
    """One stored version of a versioned artifact: its folder and size on disk."""

    dataset: str
    version: str
    path: Path
    size_bytes: int


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def versioned_paths(env: str | None, experiment: str | None = None,
                    project_path: Path = PROJECT_PATH) -> tuple[dict[str, Path], Path | None]:
    """``({dataset: versioned filepath}, summary.json path)`` of one experiment's catalog.

    ``experiment`` is a named run (``kedro run --params experiment=NAME``); relative paths are
    taken from the project root, as Kedro does.
    """
    from rom_pipeline.settings import CONFIG_LOADER_ARGS, CONFIG_LOADER_CLASS

    loader = CONFIG_LOADER_CLASS(
        conf_source=str(project_path / "conf"), env=env,
        runtime_params={"experiment": experiment} if experiment else None, **CONFIG_LOADER_ARGS,
    )
    catalog = loader["catalog"]

    def absolute(path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() else project_path / p

    paths = {name: absolute(entry["filepath"]) for name, entry in catalog.items()
             if isinstance(entry, dict) and entry.get("versioned") and "{" not in name}
    summary = catalog.get("summary", {}).get("filepath")
    return paths, absolute(summary) if summary else None


def referenced_versions(summary_path: Path | None) -> dict[str, str]:
    """``artifact_versions`` of ``summary.json`` (``{}`` when there is no summary yet)."""
    if summary_path is None or not summary_path.is_file():
        return {}
    return dict(json.loads(summary_path.read_text()).get("artifact_versions") or {})


def plan_prune(paths: dict[str, Path], keep: int, referenced: dict[str, str]) -> list[Version]:
    """The versions to delete: all but the ``keep`` newest and the referenced one, per dataset.

    Raises:
        ValueError: if ``keep`` < 1 (the newest version is what the next run loads).
    """
    if not isinstance(keep, int) or keep < 1:
        raise ValueError(f"keep = {keep!r}: keep at least the newest version (--keep 1 or more)")
    doomed: list[Version] = []
    for name, path in sorted(paths.items()):
        if not path.is_dir():
            continue
        versions = sorted(p.name for p in path.iterdir() if p.is_dir())
        kept = set(versions[-keep:]) | {referenced.get(name)}
        doomed += [Version(name, v, path / v, _size(path / v)) for v in versions if v not in kept]
    return doomed


def prune(env: str | None, keep: int, experiment: str | None = None, dry_run: bool = False,
          project_path: Path = PROJECT_PATH) -> list[Version]:
    """Delete (unless ``dry_run``) and return the versions :func:`plan_prune` selects."""
    paths, summary = versioned_paths(env, experiment, project_path)
    doomed = plan_prune(paths, keep, referenced_versions(summary))
    if not dry_run:
        for version in doomed:
            shutil.rmtree(version.path)
    return doomed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rom_pipeline.cli.prune",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default=None, help="Kedro environment (default: local)")
    parser.add_argument("--experiment", default=None,
                        help="a named run's folder (kedro run --params experiment=NAME)")
    parser.add_argument("--keep", type=int, default=3, help="newest versions kept (default: 3)")
    parser.add_argument("--dry-run", action="store_true", help="list what would go; delete nothing")
    args = parser.parse_args(argv)
    try:
        doomed = prune(args.env, args.keep, args.experiment, args.dry_run)
    except ValueError as exc:  # a bad --keep, or a bad experiment name (ConfigError)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    verb = "would remove" if args.dry_run else "removed"
    for version in doomed:
        print(f"{verb} {version.path} ({version.size_bytes / 1e6:.1f} MB)")
    total = sum(v.size_bytes for v in doomed) / 1e6
    print(f"{verb} {len(doomed)} old version(s), {total:.1f} MB; kept the newest {args.keep} of "
          "each artifact and every version summary.json references")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

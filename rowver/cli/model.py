"""``rowver model ...``: the model store's commands, a thin layer over ``db.models``.

Registered in rowver.cli as the ``model`` group, whose error handling turns any
RowverError into one ``error:`` line and exit status 1 (a refused promotion included).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .. import _output
from .._output import Format
from ..errors import InvalidInputError
from ._common import Author, Fmt, Message, Url, database

if TYPE_CHECKING:
    from ..models import Models, ModelVersion

app = typer.Typer(name="model", no_args_is_help=True,
                  help="Models as rows: save, version, alias, roll back and compare models.")

Ref = Annotated[str, typer.Argument(metavar="REF", show_default=False,
                                    help="NAME (newest version), NAME/N or NAME@ALIAS.")]
Name = Annotated[str, typer.Argument(metavar="NAME", show_default=False, help="The model.")]
Alias = Annotated[str, typer.Argument(metavar="ALIAS", show_default=False, help="e.g. production.")]


@contextmanager
def _models(url: str | None) -> Iterator[Models]:
    with database(url) as db:
        yield db.models


def _version_row(v: ModelVersion) -> dict[str, Any]:
    return {"model": v.model, "version": v.version, "aliases": v.aliases, "created_at": v.created_at,
            "author": v.author, "db_user": v.db_user, "data_version": v.data_version, "tags": v.tags,
            "params": v.params, "metrics": v.metrics, "nbytes": v.nbytes, "content_hash": v.content_hash,
            "changeset": v.changeset}


def _emit_dicts(rows: list[dict[str, Any]], fmt: Format, **options: Any) -> None:
    columns = list(rows[0]) if rows else []
    _output.emit(columns, [tuple(r.values()) for r in rows], fmt, **options)


@app.command("list")
def list_(url: Url = None, fmt: Fmt = Format.table) -> None:
    """Registered models: versions, newest version, aliases."""
    with _models(url) as models:
        rows = [{"model": s.name, "versions": s.versions, "latest": s.latest,
                 "aliases": ", ".join(f"{a}={v}" for a, v in s.aliases.items()) if fmt is Format.table
                 else s.aliases, "updated_at": s.updated_at, "description": s.description}
                for s in models.list()]
    _emit_dicts(rows, fmt, empty="No models yet: db.models.save(NAME, weights=...)")


@app.command()
def show(ref: Ref, url: Url = None, fmt: Fmt = Format.table) -> None:
    """One model version: metadata, content hash, lineage and its weights and artifacts."""
    with _models(url) as models:
        v = models.get(ref)
        lineage = models.lineage(v.ref)
    tensors = [{"kind": t.kind, "name": t.name, "dtype": t.dtype, "shape": list(t.shape), "nbytes": t.nbytes,
                "chunks": len(t.chunks)} for t in v.tensors]
    row = {**_version_row(v), "description": v.description, "data_ref": v.data_ref,
           "code_revision": v.code_revision, "data_changeset": lineage.data_changeset,
           "saved_in": lineage.saved_in, "tensors": tensors}
    if fmt is not Format.table:
        _emit_dicts([row], fmt)
        return
    for key in ("data_changeset", "saved_in"):
        row[key] = _changeset_line(row[key])
    fields = [(k, val) for k, val in row.items() if k != "tensors"]
    _output.emit(["field", "value"], fields, fmt, title=f"model {v.ref}")
    _emit_dicts(tensors, fmt, title="weights and artifacts", empty="(no weights or artifacts)")


def _changeset_line(cs: dict[str, Any] | None) -> str | None:
    """A changeset as one line for people: version, time, who, message."""
    if cs is None:
        return None
    who = cs.get("author") or cs.get("db_user")
    when = re.sub(r"\.\d+", "", cs["created_at"]).replace("T", " ")  # as the tables print times
    line = f"{cs['version']}: {when}, {who}"
    return f"{line}: {cs['message']}" if cs.get("message") else line


def _emit_versions(versions: list[ModelVersion], fmt: Format, **options: Any) -> None:
    rows = [_version_row(v) for v in versions]
    if fmt is Format.table:  # a prefix tells versions apart; json and csv keep the whole hash
        for r in rows:
            r["content_hash"] = r["content_hash"][:12]
    _emit_dicts(rows, fmt, **options)


@app.command()
def versions(name: Name, url: Url = None, fmt: Fmt = Format.table) -> None:
    """Every live version of a model, oldest first."""
    with _models(url) as models:
        found = models.versions(name)
    _emit_versions(found, fmt)


def _moved(move: Any, fmt: Format, verb: str) -> None:
    if fmt is not Format.table:
        _emit_dicts([{"model": move.model, "alias": move.alias, "old_version": move.old_version,
                      "new_version": move.new_version, "changeset": move.changeset}], fmt)
    elif move.changeset is None:
        typer.echo(f"{move.model}@{move.alias} already points at version {move.new_version}; nothing changed")
    else:
        typer.echo(f"{move.model}@{move.alias} {verb}: {move.old_version if move.old_version is not None else '(new)'}"
                   f" -> {move.new_version} (changeset {move.changeset})")


@app.command()
def alias(name: Name, alias: Alias,
          version: Annotated[int, typer.Argument(metavar="N", show_default=False, help="The version.")],
          message: Message = None, author: Author = None, url: Url = None, fmt: Fmt = Format.table) -> None:
    """Point NAME@ALIAS at version N."""
    with _models(url) as models:
        move = models.alias(name, alias, version, message=message, author=author)
    _moved(move, fmt, "moved")


@app.command()
def rollback(name: Name, alias: Alias, message: Message = None, author: Author = None, url: Url = None,
             fmt: Fmt = Format.table) -> None:
    """Move NAME@ALIAS back to its previous target, as a new changeset."""
    with _models(url) as models:
        move = models.rollback(name, alias, message=message, author=author)
    _moved(move, fmt, "rolled back")


@app.command()
def promote(name: Name, alias: Alias,
            version: Annotated[int, typer.Argument(metavar="N", show_default=False, help="The candidate.")],
            metric: Annotated[str, typer.Option("--metric", help="The metric that decides.", show_default=False)],
            mode: Annotated[str, typer.Option("--mode", help="max: higher is better; min: lower.")] = "max",
            agg: Annotated[str, typer.Option("--agg", help="For a series: last, first, min or max.")] = "last",
            message: Message = None, author: Author = None, url: Url = None, fmt: Fmt = Format.table) -> None:
    """Move NAME@ALIAS to N only if N is at least as good on --metric; else exit 1."""
    with _models(url) as models:
        move = models.promote(name, alias, version, metric=metric, mode=mode, agg=agg,
                              message=message, author=author)
    _moved(move, fmt, "promoted")


@app.command()
def compare(a: Annotated[str, typer.Argument(metavar="A", show_default=False, help="A model ref.")],
            b: Annotated[str, typer.Argument(metavar="B", show_default=False, help="Another model ref.")],
            url: Url = None, fmt: Fmt = Format.table) -> None:
    """Params and metrics side by side, and which weights changed."""
    if a == b:  # the columns are named by the refs
        raise InvalidInputError(f"A and B are the same ref ({a}); name two model versions")
    with _models(url) as models:
        c = models.compare(a, b)
    rows = ([{"what": "param", "name": k, a: x, b: y} for k, x, y in c.params]
            + [{"what": "metric", "name": k, a: x, b: y} for k, x, y in c.metrics])
    tensors = [{"what": "tensor", "name": n, a: state, b: detail} for n, state, detail in c.tensors]
    if fmt is not Format.table:
        _emit_dicts(rows + tensors, fmt)
        return
    _emit_dicts(rows, fmt, title=f"{c.a.ref} vs {c.b.ref}", empty="(no params or metrics)")
    changed = [t for t in tensors if t[a] != "same"]
    _output.emit(["tensor", "state", "detail"], [(t["name"], t[a], t[b]) for t in changed], fmt,
                 empty=f"weights: all {len(tensors)} identical")
    if changed:
        typer.echo(f"{len(changed)} of {len(tensors)} weight(s) or artifact(s) differ")


@app.command("export")
def export_(ref: Ref, directory: Annotated[Path, typer.Argument(metavar="DIR", show_default=False,
                                                                 help="A new or empty directory.")],
            url: Url = None) -> None:
    """Write a model version to DIR: .npy weights, artifacts and manifest.json."""
    with _models(url) as models, _output.counting(f"exporting {ref}", unit="bytes") as progress:
        v = models.export(ref, directory, progress=progress)
    typer.echo(f"{v.ref} ({v.nbytes} bytes, content hash {v.content_hash[:12]}) is in {directory}")


@app.command("import")
def import_(directory: Annotated[Path, typer.Argument(metavar="DIR", show_default=False,
                                                       help="A directory written by export.")],
            name: Annotated[str | None, typer.Option("--name", help="Save as this model.")] = None,
            data_version: Annotated[str | None, typer.Option("--data-version", metavar="REF",
                                                             help="The data it was trained on here.")] = None,
            alias: Annotated[str | None, typer.Option("--alias", help="Point this alias at it.")] = None,
            message: Message = None, author: Author = None, url: Url = None) -> None:
    """Save an exported model version as a new version; every file is verified first."""
    with _models(url) as models, _output.counting(f"importing {directory}", unit="bytes") as progress:
        v = models.import_(directory, name=name, data_version=data_version, alias=alias,
                           message=message, author=author, progress=progress)
    typer.echo(f"imported as {v.ref} (content hash {v.content_hash[:12]}, changeset {v.changeset})")


@app.command()
def search(
    name: Annotated[str | None, typer.Option("--name", help="Only this model.")] = None,
    param: Annotated[list[str] | None, typer.Option(
        "--param", metavar="KEY=VALUE", help="A param equal to VALUE (JSON, else text); repeatable.")] = None,
    metric: Annotated[list[str] | None, typer.Option(
        "--metric", metavar="NAME[:AGG]OPVALUE", help="e.g. 'auc>=0.9' or 'loss:min<0.3'; repeatable.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Has this tag; repeatable.")] = None,
    since: Annotated[dt.datetime | None, typer.Option("--since", help="Saved at or after.")] = None,
    until: Annotated[dt.datetime | None, typer.Option("--until", help="Saved at or before.")] = None,
    url: Url = None, fmt: Fmt = Format.table,
) -> None:
    """Model versions matching every filter."""
    params: dict[str, Any] | None = None
    for p in param or ():
        key, eq, value = p.partition("=")
        if not eq or not key:
            raise InvalidInputError(f"--param takes KEY=VALUE, not {p!r}")
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value
        params = {**(params or {}), key: parsed}
    with _models(url) as models:
        found = models.search(name=name, params=params, metrics=metric or (), tags=tag or (),
                              since=since, until=until)
    _emit_versions(found, fmt, empty="No model version matches.")


@app.command("trained-on")
def trained_on(ref: Annotated[str, typer.Argument(metavar="REF", show_default=False,
                                                  help="A data ref: version, tag, time, head, model:...")],
               url: Url = None, fmt: Fmt = Format.table) -> None:
    """Model versions trained on the data version REF names."""
    with _models(url) as models:
        found = models.trained_on(ref)
    _emit_versions(found, fmt, empty="No model was trained on that version.")


@app.command()
def delete(ref: Ref, message: Message = None, author: Author = None, url: Url = None) -> None:
    """Delete a model version (a tombstone: history and its chunks stay)."""
    with _models(url) as models:
        model = models.get(ref)
        changeset = models.delete(model.ref, message=message, author=author)
    typer.echo(f"{model.ref} is deleted (changeset {changeset}); its history stays")


@app.command()
def gc(grace: Annotated[float, typer.Option("--grace-hours", help="Keep chunks younger than this.")] = 24.0,
       url: Url = None) -> None:
    """Reclaim chunks no model version names, now or in history (rowver_admin); waits for saves in flight."""
    with _models(url) as models:
        n, size = models.gc(grace=dt.timedelta(hours=grace))
    typer.echo(f"reclaimed {n} chunk(s), {size} bytes")


@app.command()
def check(no_data: Annotated[bool, typer.Option("--no-data", help="Skip re-hashing every chunk.")] = False,
          url: Url = None, fmt: Fmt = Format.table) -> None:
    """Verify the model store: chunks present, hashes and content hashes match."""
    with _models(url) as models:
        found = models.check(verify_data=not no_data)
    if not found and fmt is Format.table:
        typer.echo("ok: every model version's chunks are stored and match their hashes")
        return
    _output.emit(["table_name", "invariant", "detail"], found, fmt)
    if found:
        typer.echo(f"error: {len(found)} model store violation(s)", err=True)
        raise typer.Exit(1)

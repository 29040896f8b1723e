"""``crucible rename``, ``note`` and ``tag``: name, annotate and tag a run after the fact (``hub.update_experiment``)."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import CommandError, open_hub, out_console, resolve_id, short_id

__all__ = ["register"]


def _say(text: str) -> None:
    out_console().print(text, markup=False, highlight=False)


def _rename(args: argparse.Namespace) -> int:
    hub = open_hub(args)
    exp_id = resolve_id(hub, args.id)
    old = hub.get_experiment(exp_id).name
    if not args.name.strip():
        raise CommandError("NAME: a run needs a non-empty name")
    exp = hub.update_experiment(exp_id, name=args.name)
    _say(f"renamed {short_id(exp.id)}: {old} -> {exp.name}")
    return 0


def _note(args: argparse.Namespace) -> int:
    hub = open_hub(args)
    exp_id = resolve_id(hub, args.id)
    text = " ".join(args.text)
    if args.append:
        before = hub.get_experiment(exp_id).notes
        text = f"{before}\n{text}" if before else text
    exp = hub.update_experiment(exp_id, notes=text)
    _say(f"notes of {short_id(exp.id)} ({exp.name}): {exp.notes}" if exp.notes else f"cleared the notes of {exp.id}")
    return 0


def _tag(args: argparse.Namespace) -> int:
    # The changes are a REMAINDER (so ``-b`` is a tag to remove, not an option); --home may sit among them.
    changes = list(args.changes)
    if "--home" in changes:
        k = changes.index("--home")
        if k + 1 >= len(changes):
            raise CommandError("--home: expected a folder")
        args.home = changes[k + 1]
        del changes[k : k + 2]
    add, remove = [], []
    for c in changes:
        if c.startswith("-") and len(c) > 1:
            remove.append(c[1:])
        elif c.startswith("+") and len(c) > 1:
            add.append(c[1:])
        elif c not in ("+", "-"):
            add.append(c)
    if not add and not remove:
        raise CommandError("TAGS: give tags to add (+name or name) or remove (-name)")
    hub = open_hub(args)
    exp_id = resolve_id(hub, args.id)
    exp = hub.update_experiment(exp_id, add_tags=add, remove_tags=remove)
    _say(f"tags of {short_id(exp.id)} ({exp.name}): {', '.join(exp.tags) or '(none)'}")
    return 0


def register(add: Any) -> None:
    """Add ``rename``, ``note`` and ``tag``."""
    p = add(
        "rename",
        _rename,
        help="give a run a new name",
        description="Rename a run (its id stays). The run is its id, a unique id prefix or its unique name.",
        epilog="examples:\n  crucible rename 1a2b lr-0.01\n  crucible rename TinyRegressor baseline",
    )
    p.add_argument("id", metavar="ID", help="run id, unique id prefix or unique name")
    p.add_argument("name", metavar="NAME", help="the new name")

    p = add(
        "note",
        _note,
        help="set (or --append to) a run's notes",
        description="Set a run's notes, shown by crucible show and in ct.runs() (an empty TEXT clears them).",
        epilog='examples:\n  crucible note 1a2b "diverged after warmup; rerun with clipping"\n'
        '  crucible note 1a2b --append "rerun: exp-...-9f8e"',
    )
    p.add_argument("id", metavar="ID", help="run id, unique id prefix or unique name")
    p.add_argument("text", metavar="TEXT", nargs="+", help="the notes (words are joined with spaces)")
    p.add_argument("--append", action="store_true", help="add a line to the notes instead of replacing them")

    p = add(
        "tag",
        _tag,
        help="add (+name) or remove (-name) tags of a run",
        description="Add and remove tags of a run: +name or name adds, -name removes.",
        epilog="examples:\n  crucible tag 1a2b +baseline\n  crucible tag 1a2b +best -draft",
    )
    p.add_argument("id", metavar="ID", help="run id, unique id prefix or unique name")
    p.add_argument("changes", metavar="TAGS", nargs=argparse.REMAINDER, help="+name adds, -name removes")

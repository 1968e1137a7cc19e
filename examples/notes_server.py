"""A notes server: resources, prompts, completion, logging, and a slow tool with progress.

Run it:  hypercorn --worker-class trio examples.notes_server:app
Connect: http://127.0.0.1:8000/mcp (Streamable HTTP) or http://127.0.0.1:8000/sse (HTTP+SSE)

What it shows:

* every note is a resource (``note://<name>``), listed by ``resources/list``
  and readable through the template ``note://{name}``; adding or deleting a
  note announces ``notifications/resources/list_changed``, editing one sends
  ``notifications/resources/updated`` to clients subscribed to it;
* ``notes://stats`` is a JSON resource;
* two prompts, with argument completion for note names;
* ``add_note`` returns structured content (a pydantic model);
* ``process_notes`` is slow on purpose: it reports progress when asked to,
  and a client can cancel it (``notifications/cancelled``) while it runs --
  the Trio cancel scope of that one request is cancelled, nothing else.
"""

from __future__ import annotations

from typing import Annotated, Any

import pydantic
import trio

from trio_mcp_sse.server import (
    CompletionRequest,
    Context,
    MCPError,
    MCPServer,
    ResourceNotFound,
    ToolError,
    assistant_message,
    embedded_resource,
    resource_link,
    user_message,
)

INVALID_PARAMS = -32602

server = MCPServer(
    "notes",
    "1.0.0",
    title="Notes",
    instructions="Keep short notes. Read them as note://<name> resources.",
)

notes: dict[str, str] = {"welcome": "Notes are plain text. Add one with the add_note tool."}
jobs = {"completed": 0, "cancelled": 0}


class Note(pydantic.BaseModel):
    name: str
    text: str
    created: bool


def note_uri(name: str) -> str:
    return f"note://{name}"


def list_note(name: str) -> None:
    """Make a note visible in ``resources/list`` (live sessions are told)."""

    async def read() -> str:
        if name not in notes:
            raise ResourceNotFound(note_uri(name))
        return notes[name]

    server.add_resource(note_uri(name), read, name=name, mime_type="text/plain")


for existing in notes:
    list_note(existing)


# -- resources ---------------------------------------------------------------------------------------
@server.resource("note://{name}", name="note", mime_type="text/plain")
async def read_note(name: str) -> str:
    """Any note, by name."""
    if name not in notes:
        raise ResourceNotFound(note_uri(name))
    return notes[name]


@server.resource("notes://stats", mime_type="application/json")
async def stats() -> dict[str, int]:
    """How many notes there are, and how the slow job fared."""
    return {"notes": len(notes), **jobs}


# -- tools -------------------------------------------------------------------------------------------
@server.tool(annotations={"destructiveHint": False, "idempotentHint": True})
async def add_note(
    name: Annotated[str, pydantic.Field(pattern=r"^[a-z0-9-]+$", description="lower-case name")],
    text: str,
    ctx: Context,
) -> Note:
    """Create or replace a note."""
    created = name not in notes
    notes[name] = text
    if created:
        list_note(name)
    else:
        server.notify_resource_updated(note_uri(name))
    await ctx.info(f"{'created' if created else 'updated'} note {name}", logger="notes")
    return Note(name=name, text=text, created=created)


@server.tool(annotations={"destructiveHint": True})
async def delete_note(name: str) -> str:
    """Delete a note."""
    if name not in notes:
        raise ToolError(f"there is no note named {name!r}")
    del notes[name]
    server.remove_resource(note_uri(name))
    return f"deleted {name}"


@server.tool(title="Find notes")
async def find_notes(word: str) -> list[dict[str, Any]]:
    """Links to the notes that mention a word."""
    return [
        resource_link(note_uri(name), name, mime_type="text/plain")
        for name, text in sorted(notes.items())
        if word.lower() in text.lower()
    ] or [{"type": "text", "text": f"no note mentions {word!r}"}]


@server.tool(annotations={"readOnlyHint": True})
async def process_notes(ctx: Context, steps: int = 10, delay: float = 0.5) -> str:
    """Pretend to process every note, slowly, reporting progress.

    Cancel it from the client: only this request stops.
    """
    try:
        for step in range(1, steps + 1):
            await trio.sleep(delay)
            await ctx.report_progress(step, steps, f"processed {step} of {steps}")
    except trio.Cancelled:
        jobs["cancelled"] += 1  # bookkeeping only: always let Cancelled propagate
        raise
    jobs["completed"] += 1
    return f"processed {len(notes)} notes in {steps} steps"


# -- prompts -----------------------------------------------------------------------------------------
@server.prompt(title="Summarize a note")
async def summarize(name: Annotated[str, pydantic.Field(description="the note to summarize")]) -> list[Any]:
    """Ask the model for a one-line summary of a note."""
    if name not in notes:
        raise MCPError(INVALID_PARAMS, f"there is no note named {name!r}")
    return [
        user_message(embedded_resource(note_uri(name), text=notes[name], mime_type="text/plain")),
        "Summarize the note above in one line.",
    ]


@server.prompt
async def brainstorm(topic: str, count: int = 3) -> list[Any]:
    """Ideas for new notes."""
    return [
        f"Suggest {count} short notes about {topic}.",
        assistant_message(f"Here are {count} ideas about {topic}:"),
    ]


@server.completion
async def complete(request: CompletionRequest) -> list[str]:
    """Note names, for the summarize prompt and the note://{name} template."""
    if request.argument == "name":
        return sorted(name for name in notes if name.startswith(request.value))
    return []


app = server.http_app()  # Streamable HTTP at /mcp, HTTP+SSE at /sse

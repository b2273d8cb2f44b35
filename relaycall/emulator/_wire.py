"""
The emulator's reading of request bodies: the envelope, then relaycall._reading.

A body is refused as the API would: 400 for a body that is not a command at
all, 422 naming the attribute (relative to ``params``) for anything else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from relaycall import commands as c
from relaycall._reading import CALL_ID_KEY, ERRORS_URL, MISSING, WireError, read, show

__all__ = ["ERRORS_URL", "WireError", "parse_request"]


# --- the envelope ------------------------------------------------------------------------

_ENVELOPE = ("command", "id", "params")
#: The rule a collect with neither digits nor speech breaks; the API answers it 400, not 422.
_COLLECT_NEEDS_INPUT = "give digits, speech, or both"


def parse_request(body: Any) -> c.Command[Any]:
    """
    Read a decoded request body into its typed command.

    Raises WireError: status 400 for a body that is not a command at all (not
    an object, no or unknown ``command``, a collect with neither digits nor
    speech), 422 naming the attribute for anything else.
    """
    if not isinstance(body, Mapping):
        raise WireError("", "the body must be a JSON object", status=400)
    name = body.get("command")
    if not isinstance(name, str):
        raise WireError("command", "is missing or not a string", status=400)
    cls = c.BY_NAME.get(name)
    if cls is None:
        raise WireError("command", f"{name!r} is not a Calling API command", status=400)
    for key in body:
        if key not in _ENVELOPE:
            raise WireError(str(key), "is not allowed in the request envelope")
    if "params" not in body:
        raise WireError("params", "is required (send {} when there are none)", code=MISSING)
    params = body["params"]
    if not isinstance(params, Mapping):
        raise WireError("params", f"{show(params)} must be an object")
    if cls._top_level_id:
        if "id" not in body:
            raise WireError("id", f"is required for {name}", code=MISSING)
        if CALL_ID_KEY in params:
            raise WireError(CALL_ID_KEY, "is not an allowed parameter here")
        params = {**params, CALL_ID_KEY: body["id"]}
    elif "id" in body:
        where = "params.id" if name == "update" else "no id"
        raise WireError("id", f"must not be given at the top level for {name} (use {where})")
    try:
        command: c.Command[Any] = read(cls, params)
    except WireError as exc:
        if cls is c.Collect and exc.rule == _COLLECT_NEEDS_INPUT:
            exc.status = 400
        raise
    return command

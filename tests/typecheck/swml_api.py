"""
Type-checked, never run: relaycall.swml as users write it, under mypy --strict.

A SWML builder goes wherever relaycall takes SWML, and its chained calls keep
their type (a Section stays a Section, a document a document).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from typing_extensions import assert_type

import relaycall
from relaycall import commands, swml
from relaycall.swml import SWML, Section, Steps


async def flow(relay: relaycall.AsyncRelay) -> None:
    doc = SWML().answer().play(say="Hello").sleep(-1)
    assert_type(doc, SWML)
    assert_type(doc.section("sales").connect("+15557650000"), Section)
    assert_type(Steps().hangup(), Steps)
    assert_type(doc.to_dict(), dict[str, Any])
    wire: Mapping[str, Any] = doc
    call = await relay.dial(from_="+15551230000", to="+15557650000", swml=doc)
    await call.update(swml=relaycall.swml.SWML().hangup())
    await call.transfer(swml.SWML().transfer("https://example.com/next"))
    commands.Dial(from_="+15551230000", to="+15557650000", swml=wire)
    doc.play(volume="loud")  # a str is a ${var}: typed, refused at run time
    doc.hangup(reason="rude")  # type: ignore[arg-type]

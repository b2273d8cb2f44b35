"""
Building SWML documents, checked before anything is sent.

::

    from relaycall.swml import SWML, Steps

    doc = (
        SWML()
        .answer()
        .prompt(say="Press 1 for sales, 2 to leave a message.", max_digits=1)
        .switch("prompt_value", {"1": Steps().transfer("sales")}, default=Steps().hangup())
    )
    doc.section("sales").connect("+15557650000")

Each method checks its arguments against SignalWire's published SWML schema
for calling when it is called, and raises :class:`relaycall.ValidationError`
naming the step and field (``sections.main[2].play.volume``) and the rule.
A :class:`SWML` is a read-only Mapping of its wire document (``to_dict()``
gives a plain dict), so it goes wherever relaycall takes SWML.
"""

from __future__ import annotations

from relaycall.swml._builder import SWML, CallStatus, Section, Steps, ring, say, silence, var
from relaycall.swml._read import validate

__all__ = ["SWML", "CallStatus", "Section", "Steps", "ring", "say", "silence", "validate", "var"]

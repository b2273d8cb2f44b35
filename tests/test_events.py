"""
Callback payloads parsed into typed events: each event type to its class, and
for any JSON nothing but an Event or EventParseError. The receiver that takes
them over HTTP is tests/test_receiver.py.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import relaycall
from relaycall._events import EVENT_TYPES
from tests.conftest import CALL_ID

# --- the parser under fire -----------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
callback_like = st.fixed_dictionaries(
    {},
    optional={
        "event_type": st.sampled_from(
            ["calling.call.play", "calling.call.state", "calling.call.collect",
             "calling.transcript.completed", "x"]
        ) | json_values,
        "params": st.dictionaries(
            st.sampled_from(
                ["call_id", "control_id", "state", "call_state", "result", "detect", "final"]
            ),
            json_values,
        ) | json_values,
        "call_id": json_values,
        "call_info": json_values,
        "sidecar_event": json_values,
        "timestamp": json_values,
    },
)  # fmt: skip


@given(payload=json_values | callback_like)
def test_parser_raises_only_its_own_error(payload):
    """Arbitrary JSON into parse_event yields an Event or EventParseError, nothing else."""
    try:
        event = relaycall.parse_event(payload)
    except relaycall.EventParseError:
        return
    assert isinstance(event, relaycall.Event)
    assert event.call_id is None or isinstance(event.call_id, str)


@pytest.mark.parametrize(
    ("event_type", "cls"),
    [*EVENT_TYPES.items(), ("calling.call.new_thing", relaycall.UnknownEvent)],
)
def test_every_event_type_parses_to_its_class(event_type, cls):
    """Every registered event type parses to its class (shared ones too); others to UnknownEvent."""
    event = relaycall.parse_event({"event_type": event_type, "params": {"call_id": CALL_ID}})
    assert type(event) is cls
    assert event.event_type == event_type

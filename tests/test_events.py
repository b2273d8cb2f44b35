"""
Callback payloads parsed into typed events: each event type to its class, and
for any JSON nothing but an Event or EventParseError. The receiver that takes
them over HTTP is tests/test_receiver.py.
"""

from __future__ import annotations

import math

import attrs
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


@given(payload=callback_like)
def test_a_parsed_event_has_every_field_and_a_float_time(payload):
    """
    Whatever the payload, a parsed event has every field set (it was built without attrs'
    __init__), equals the event its class's constructor makes from those fields, keeps the
    payload as raw, and its timestamp is a finite float or None.
    """
    try:
        event = relaycall.parse_event(payload)
    except relaycall.EventParseError:
        return
    fields = attrs.asdict(event, recurse=False)
    assert event == type(event)(**fields)
    assert event.raw is payload
    stamp = event.timestamp
    assert stamp is None or (type(stamp) is float and math.isfinite(stamp))


@pytest.mark.parametrize(
    ("given_time", "seconds"),
    [(1700000000, 1700000000.0), (1700000000.25, 1700000000.25), ("1700000000", None),
     (True, None), (None, None), ([], None)],
)  # fmt: skip
def test_timestamps_read_as_float_seconds(given_time, seconds):
    """A callback's timestamp becomes float seconds; what is not a number counts as absent."""
    payload = {"event_type": "calling.call.play", "timestamp": given_time, "params": {}}
    stamp = relaycall.parse_event(payload).timestamp
    assert stamp == seconds
    assert stamp is None or type(stamp) is float


@pytest.mark.parametrize("given_time", [float("inf"), float("-inf"), float("nan"), 10**400])
def test_a_timestamp_that_is_no_time_is_refused(given_time):
    """A timestamp that is not finite, or too large for a float, makes the callback unreadable."""
    payload = {"event_type": "calling.call.play", "timestamp": given_time, "params": {}}
    with pytest.raises(relaycall.EventParseError, match="timestamp"):
        relaycall.parse_event(payload)


@pytest.mark.parametrize(
    ("event_type", "cls"),
    [*EVENT_TYPES.items(), ("calling.call.new_thing", relaycall.UnknownEvent)],
)
def test_every_event_type_parses_to_its_class(event_type, cls):
    """Every registered event type parses to its class (shared ones too); others to UnknownEvent."""
    event = relaycall.parse_event({"event_type": event_type, "params": {"call_id": CALL_ID}})
    assert type(event) is cls
    assert event.event_type == event_type

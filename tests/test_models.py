"""Reading replies: the fast call-leg path agrees with the cattrs path on anything."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

import relaycall
from relaycall._models import CallLeg, _fast_call_leg, check_leg, parse_leg, reader
from tests.conftest import call_leg

scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5)
)
_LEG_KEYS = ("status", "charge", "duration", "duration_ms", "billing_ms", "url", "parent_id",
             "from", "to", "type")  # fmt: skip
_details = (
    st.none()
    | st.lists(st.fixed_dictionaries({"description": scalars, "charge": scalars}), max_size=2)
    | scalars
)
legs = st.builds(
    lambda over: call_leg(**over),
    st.fixed_dictionaries(
        {}, optional=dict.fromkeys(_LEG_KEYS, scalars) | {"charge_details": _details}
    ),
)


@given(legs)
def test_fast_path_matches_cattrs(body):
    """Whenever the fast path builds a leg, cattrs builds the same one."""
    fast = _fast_call_leg(body)
    if fast is None:
        return
    slow = reader.structure(body, CallLeg)  # must not raise where the fast path accepted
    assert fast == slow


@given(legs)
def test_parse_leg_gives_leg_or_our_error(body):
    """parse_leg returns a CallLeg or raises ResponseValidationError, nothing else."""
    try:
        leg = parse_leg(body)
    except relaycall.ResponseValidationError:
        return
    assert isinstance(leg, CallLeg)
    assert leg.raw is body


json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner)
)


@given(legs | json_values | st.builds(lambda over: call_leg(**over), st.fixed_dictionaries(
    {}, optional={"id": scalars, "status": scalars})))  # fmt: skip
def test_check_leg_accepts_only_what_handles_act_on(body):
    """
    check_leg (the handles' reading) passes a body through or raises our error, and
    what it passes has a string id and a string or absent status; reading it whole
    later (call.leg) gives a leg or our error, never anything else.
    """
    try:
        checked = check_leg(body)
    except relaycall.ResponseValidationError as exc:
        error_body = exc.body
        checked = None
    if checked is None:
        assert error_body is body
        return
    assert checked is body
    assert isinstance(body["id"], str)
    assert body.get("status") is None or isinstance(body["status"], str)
    try:
        leg = parse_leg(body)
    except relaycall.ResponseValidationError:
        return
    assert leg.id == body["id"]
    assert leg.status == body.get("status")

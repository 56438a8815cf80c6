import pytest

from core import jobstate
from core.jobstate import IllegalTransition, check_move


@pytest.mark.parametrize(
    "old,new",
    [
        ("queued", "running"),
        ("queued", "cancelled"),
        ("queued", "failed"),
        ("running", "succeeded"),
        ("running", "failed"),
        ("running", "cancelled"),
        ("running", "queued"),  # its worker process died: queued again
        ("failed", "queued"),
        ("succeeded", "queued"),
        ("cancelled", "queued"),
    ],
)
def test_it_allows_the_documented_moves(old, new):
    check_move(old, new)


@pytest.mark.parametrize(
    "old,new",
    [
        ("queued", "succeeded"),
        ("queued", "queued"),
        ("running", "running"),
        ("succeeded", "failed"),
        ("succeeded", "running"),
        ("failed", "succeeded"),
        ("cancelled", "running"),
        ("nonsense", "queued"),
    ],
)
def test_it_refuses_every_other_move(old, new):
    with pytest.raises(IllegalTransition, match=f"from '{old}' to '{new}'"):
        check_move(old, new)


def test_every_state_has_its_moves_declared():
    assert set(jobstate.ALLOWED_MOVES) == set(jobstate.STATES)
    assert jobstate.ENDED == {"succeeded", "failed", "cancelled"}

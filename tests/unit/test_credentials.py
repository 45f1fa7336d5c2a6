"""Ended sessions and tokens end the subscribers resting on them; expiry is noticed on time."""

import time

from feed.credentials import Credential, Credentials
from feed.filters import Subscription, TopicView
from feed.hub import Subscriber
from feed.principal import Principal

SESSION = Principal(user_id=1, username="ana", role="staff", store_id=1, session_id="s1")
TOKEN = Principal(user_id=2, username="ben", role="viewer", token_id=7)


def _subscriber() -> Subscriber:
    return Subscriber(Subscription({"t": TopicView("t")}), max_pending=4)


def test_a_logout_ends_the_subscribers_of_that_session_only():
    credentials = Credentials()
    mine, other, tokened = _subscriber(), _subscriber(), _subscriber()
    credentials.watch(mine, SESSION)
    credentials.watch(other, Principal(user_id=1, session_id="s2"))
    credentials.watch(tokened, TOKEN)
    credentials.end({"reason": "logged_out", "session": "s1"})
    assert (mine.ended, mine.woken) == ("logged_out", True)
    assert other.ended is None and tokened.ended is None
    credentials.end({"reason": "revoked", "token": 7})
    assert tokened.ended == "revoked"
    # What ended is no longer watched; the users behind them still are, until unwatched.
    assert set(credentials.watchers) == {("session", "s2"), ("user", 1), ("user", 2)}


def test_a_change_to_a_user_ends_all_their_subscribers_and_they_may_come_back():
    credentials = Credentials()
    mine, again, other = _subscriber(), _subscriber(), _subscriber()
    credentials.watch(mine, SESSION)
    credentials.watch(again, Principal(user_id=1, token_id=9))
    credentials.watch(other, TOKEN)
    lasting = Principal(user_id=2, token_id=7, expires_at=time.time() + 60)
    credentials.remember("digest", lasting)
    assert credentials.recall("digest") is lasting
    credentials.end({"reason": "revoked", "user": 1})
    assert mine.ended == again.ended == "revoked" and other.ended is None
    # Resolved principals are forgotten, and the user, signed in anew, is not ended again.
    assert credentials.recall("digest") is None
    back = _subscriber()
    credentials.watch(back, SESSION)
    assert back.ended is None


def test_a_credential_that_ended_just_before_watching_still_ends_the_subscriber():
    credentials = Credentials()
    credentials.end({"reason": "revoked", "token": 7})
    late = _subscriber()
    credentials.watch(late, TOKEN)
    assert late.ended == "revoked"


def test_unwatch_forgets_the_subscriber():
    credentials = Credentials()
    gone = _subscriber()
    credentials.watch(gone, SESSION)
    credentials.unwatch(gone, SESSION)
    credentials.end({"reason": "logged_out", "session": "s1"})
    assert gone.ended is None and credentials.watchers == {}


def test_expiry_bounds_the_wait_and_ends_the_credential():
    credentials = Credentials()
    soon = Credential(credentials, Principal(user_id=1, session_id="s", expires_at=time.time() + 2))
    assert 1 < soon.wait_at_most(15) <= 2
    assert soon.ended(_subscriber()) is None
    past = Credential(credentials, Principal(user_id=1, expires_at=time.time() - 1))
    assert past.wait_at_most(15) == 0 and past.ended(_subscriber()) == "expired"
    app = Credential(credentials, None)
    assert app.wait_at_most(15) == 15 and app.ended(_subscriber()) is None

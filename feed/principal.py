"""Who makes a request: a user with a role and maybe a store, or nobody."""

from dataclasses import dataclass

ROLES = ("admin", "manager", "staff", "viewer")


@dataclass(frozen=True)
class Principal:
    """The caller as the engine sees it: a plain value, resolved once at the edge."""

    user_id: int | None = None
    username: str | None = None
    role: str | None = None
    store_id: int | None = None
    # How the caller proved who it is: "session", "token", "stream_token", or None.
    credential: str | None = None
    # The session or API token the credential rests on (a stream token's parent), and when
    # it expires (Unix seconds): what an open stream watches to end with auth-expired.
    session_id: str | None = None
    token_id: int | None = None
    expires_at: float | None = None

    @property
    def authenticated(self) -> bool:
        """Tell whether the caller is a user rather than nobody."""
        return self.user_id is not None

    @property
    def group(self) -> tuple[str | None, int | None]:
        """Return the policy group: principals with the same role and store see the same rows."""
        return (self.role, self.store_id)

    @property
    def rests_on(self) -> tuple[tuple[str, object], ...]:
        """Return what ends this principal when it ends: ("session", id), ("token", id), and
        ("user", id), a change to the user's access."""
        held = (("session", self.session_id), ("token", self.token_id), ("user", self.user_id))
        return tuple((kind, key) for kind, key in held if key is not None)


NOBODY = Principal()

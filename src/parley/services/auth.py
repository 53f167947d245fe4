"""Who is asking: staff sign-in (argon2 password, TOTP second factor for the roles that need
it), borrower sign-in (phone number + one-time code), server-side sessions that expire, API
keys, and rate limits counted in the database so they hold across processes.

Every secret that reaches the database is hashed: session tokens and API keys with SHA-256
(they are 256-bit random values), one-time codes with an HMAC keyed by the server secret and
bound to the phone's blind index (a six-digit code alone would be trivially reversible).
Failures never say which part was wrong, and an unknown user costs the same argon2 work as a
known one, so neither answers nor timing reveal who has an account.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import phonenumbers
import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.orm import Session as OrmSession

from parley.errors import Forbidden, InvalidInput, NotFound, ParleyError
from parley.services.context import Context
from parley.store.models.loanbook import Borrower, BorrowerPhone
from parley.store.models.staff import StaffUser
from parley.store.models.web import ApiKey, OtpCode, RateLimitHit, WebSession

STAFF_ROLES = (
    "administrator",
    "strategy_manager",
    "team_lead",
    "collector",
    "agency_collector",
    "compliance_officer",
    "auditor",
)
SECOND_FACTOR_ROLES = frozenset({"administrator", "compliance_officer"})
LANGUAGES = ("zh-Hans", "zh-Hant", "en")
DEFAULT_LANGUAGE = "zh-Hans"

_hasher = PasswordHasher()
# Verified against when the user does not exist, so unknown users cost the same time.
_DUMMY_HASH = _hasher.hash("parley-dummy-password-for-timing")


def _orm(conn: Connection) -> OrmSession:
    """An ORM session on the caller's connection (joins its transaction), so reads can return
    entities; writes stay Core on the connection itself."""
    return OrmSession(bind=conn, autoflush=False)


class RateLimited(ParleyError):
    """Too many tries under one key; `retry_after` is the number of seconds to wait."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SignInFailed(ParleyError):
    """Wrong credentials (deliberately not saying which part was wrong)."""


@dataclass(frozen=True)
class Policy:
    """Timeouts and limits. A window of N seconds with a limit of L means: at most L counted
    events under one key in any N seconds; the (L+1)th is refused with RateLimited."""

    staff_idle: timedelta = timedelta(minutes=30)
    staff_absolute: timedelta = timedelta(hours=12)
    borrower_idle: timedelta = timedelta(minutes=15)
    borrower_absolute: timedelta = timedelta(hours=2)
    otp_ttl: timedelta = timedelta(minutes=5)
    otp_max_attempts: int = 5
    otp_length: int = 6
    window: timedelta = timedelta(minutes=15)
    signin_per_user: int = 5
    signin_per_ip: int = 30
    otp_requests_per_phone: int = 3
    otp_requests_per_ip: int = 20
    otp_verifies_per_phone: int = 10


DEFAULT_POLICY = Policy()


@dataclass(frozen=True)
class Actor:
    """The signed-in party every access check is made against.

    kind: 'staff', 'borrower' or 'api'. id: staff_user.id, borrower.id or api_key.id.
    role: a STAFF_ROLES value, or 'borrower'. agency_id: set for agency collectors (and
    agency-scoped API keys): they see only loans placed with that agency. badge: the collector's
    badge number shown to borrowers (empty if none).
    """

    kind: str
    id: str
    role: str
    display_name: str = ""
    agency_id: str | None = None
    badge: str = ""

    @property
    def is_staff(self) -> bool:
        return self.kind in ("staff", "api")


@dataclass(frozen=True)
class Session:
    """A live session as the faces see it. stage 'totp' = password given, second factor owed."""

    token_id: str
    actor: Actor
    csrf_token: str
    lang: str
    stage: str
    expires_at: datetime


@dataclass(frozen=True)
class SignIn:
    """The result of a successful first step: the cookie token and whether TOTP is still owed."""

    token: str
    stage: str
    extra: dict[str, str] = field(default_factory=dict)


# --- passwords and staff ---------------------------------------------------------------------


def hash_password(password: str) -> str:
    if len(password) < 10:
        raise InvalidInput("must be at least 10 characters", record="staff", field="password")
    return _hasher.hash(password)


def create_staff(
    ctx: Context,
    *,
    username: str,
    password: str,
    role: str,
    display_name: str = "",
    agency_id: str | None = None,
    badge_number: str | None = None,
    staff_id: str | None = None,
    languages: str = DEFAULT_LANGUAGE,
) -> tuple[str, str | None]:
    """Create a staff user; returns (id, TOTP secret or None). The secret is returned once so
    it can be enrolled in an authenticator app; it is stored encrypted."""
    if role not in STAFF_ROLES:
        raise InvalidInput(f"unknown role {role!r}", record="staff", field="role")
    if role == "agency_collector" and not agency_id:
        raise InvalidInput("an agency collector needs an agency", record="staff", field="agency_id")
    if not username or len(username) > 64:
        raise InvalidInput("must be 1..64 characters", record="staff", field="username")
    pw_hash = hash_password(password)
    secret = pyotp.random_base32() if role in SECOND_FACTOR_ROLES else None
    sid = staff_id or f"u-{uuid.uuid4().hex[:12]}"
    with ctx.db.transaction() as conn:
        if _orm(conn).execute(select(StaffUser.id).where(StaffUser.username == username)).first():
            raise InvalidInput("already taken", record="staff", field="username")
        conn.execute(
            insert(StaffUser).values(
                id=sid,
                username=username,
                display_name=display_name or username,
                role=role,
                agency_id=agency_id,
                badge_number=badge_number,
                password_hash=pw_hash,
                totp_secret_enc=(
                    ctx.keyring.encrypt(secret, f"staff_user.totp:{sid}") if secret else None
                ),
                languages=languages,
                created_at=ctx.clock.now(),
            )
        )
    return sid, secret


def staff_totp_secret(ctx: Context, staff_id: str) -> str | None:
    """The decrypted TOTP secret (for enrolment screens and tests)."""
    with ctx.db.read() as conn:
        blob = _orm(conn).execute(
            select(StaffUser.totp_secret_enc).where(StaffUser.id == staff_id)
        ).scalar_one_or_none()
    return ctx.keyring.decrypt(blob, f"staff_user.totp:{staff_id}") if blob else None


# --- rate limits -----------------------------------------------------------------------------


def _lock_key(conn: Connection, key: str) -> None:
    """Serialise counting under one key (SQLite's IMMEDIATE transaction already does)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext(%s))", (key,))


def _check_limit(conn: Connection, key: str, limit: int, now: datetime, window: timedelta) -> None:
    _lock_key(conn, key)
    since = now - window
    count, first = _orm(conn).execute(
        select(func.count(), func.min(RateLimitHit.at)).where(
            RateLimitHit.key == key, RateLimitHit.at > since
        )
    ).one()
    if count >= limit:
        retry = int(((first or now) + window - now).total_seconds()) + 1
        raise RateLimited("too many attempts; try again later", retry_after=max(retry, 1))


def _hit(conn: Connection, key: str, now: datetime) -> None:
    conn.execute(insert(RateLimitHit).values(key=key, at=now))


def prune_rate_limits(ctx: Context, older_than: timedelta = timedelta(days=1)) -> int:
    """Delete counted events older than any window (housekeeping; the worker may call it)."""
    with ctx.db.transaction() as conn:
        res = conn.execute(delete(RateLimitHit).where(RateLimitHit.at < ctx.clock.now() - older_than))
        return int(res.rowcount or 0)


# --- sessions --------------------------------------------------------------------------------


def _token_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_session(
    conn: Connection,
    ctx: Context,
    kind: str,
    subject_id: str,
    *,
    stage: str,
    lang: str,
    ip: str,
    policy: Policy,
) -> str:
    token = secrets.token_urlsafe(32)
    now = ctx.clock.now()
    absolute = policy.staff_absolute if kind == "staff" else policy.borrower_absolute
    conn.execute(
        insert(WebSession).values(
            id=_token_id(token),
            kind=kind,
            subject_id=subject_id,
            stage=stage,
            csrf_token=secrets.token_urlsafe(24),
            lang=lang if lang in LANGUAGES else DEFAULT_LANGUAGE,
            created_at=now,
            last_seen_at=now,
            expires_at=now + absolute,
            ip=ip[:64],
        )
    )
    return token


def session_for(ctx: Context, token: str | None, policy: Policy = DEFAULT_POLICY) -> Session | None:
    """The live session for a cookie token, touching its idle timer; None if absent or expired.

    Expired sessions are ended in the database, so a stolen old cookie stays dead even if the
    clock were set back.
    """
    if not token or len(token) > 200:
        return None
    now = ctx.clock.now()
    tid = _token_id(token)
    with ctx.db.transaction() as conn:
        row = _orm(conn).execute(select(WebSession).where(WebSession.id == tid)).scalars().first()
        if row is None or row.ended_at is not None:
            return None
        idle = policy.staff_idle if row.kind == "staff" else policy.borrower_idle
        if now >= row.expires_at or now >= row.last_seen_at + idle:
            conn.execute(update(WebSession).where(WebSession.id == tid).values(ended_at=now))
            return None
        actor = _actor_for(conn, row.kind, row.subject_id)
        if actor is None:
            conn.execute(update(WebSession).where(WebSession.id == tid).values(ended_at=now))
            return None
        conn.execute(update(WebSession).where(WebSession.id == tid).values(last_seen_at=now))
        return Session(tid, actor, row.csrf_token, row.lang, row.stage, row.expires_at)


def _actor_for(conn: Connection, kind: str, subject_id: str) -> Actor | None:
    if kind == "staff":
        u = _orm(conn).execute(select(StaffUser).where(StaffUser.id == subject_id)).scalars().first()
        if u is None or not u.active:
            return None
        return Actor("staff", u.id, u.role, u.display_name, u.agency_id, u.badge_number or "")
    b = _orm(conn).execute(select(Borrower.id, Borrower.name).where(Borrower.id == subject_id)).first()
    if b is None:
        return None
    return Actor("borrower", b.id, "borrower", b.name)


def sign_out(ctx: Context, token: str | None) -> None:
    if not token:
        return
    with ctx.db.transaction() as conn:
        conn.execute(
            update(WebSession)
            .where(WebSession.id == _token_id(token), WebSession.ended_at.is_(None))
            .values(ended_at=ctx.clock.now())
        )


def set_language(ctx: Context, token: str, lang: str) -> None:
    if lang not in LANGUAGES:
        raise InvalidInput(f"unknown language {lang!r}", record="session", field="lang")
    with ctx.db.transaction() as conn:
        conn.execute(update(WebSession).where(WebSession.id == _token_id(token)).values(lang=lang))


# --- staff sign-in ---------------------------------------------------------------------------


def _commit_then_raise(ctx: Context, keys: list[str], exc: Exception) -> None:
    """Failures are counted in their own transaction so the count survives the error."""
    now = ctx.clock.now()
    with ctx.db.transaction() as conn:
        for key in keys:
            _hit(conn, key, now)
    raise exc


def staff_sign_in(
    ctx: Context, username: str, password: str, *, ip: str = "", lang: str = "",
    policy: Policy = DEFAULT_POLICY,
) -> SignIn:
    """First step for staff. Returns a session in stage 'totp' when a second factor is owed.
    lang: the language chosen before signing in (else the user's first language)."""
    now = ctx.clock.now()
    user_key, ip_key = f"signin:user:{username.lower()[:64]}", f"signin:ip:{ip}"
    with ctx.db.transaction() as conn:
        _check_limit(conn, user_key, policy.signin_per_user, now, policy.window)
        _check_limit(conn, ip_key, policy.signin_per_ip, now, policy.window)
        user = _orm(conn).execute(select(StaffUser).where(StaffUser.username == username)).scalars().first()
    ok = False
    try:
        ok = _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        ok = False
    if user is None or not ok or not user.active:
        _commit_then_raise(ctx, [user_key, ip_key], SignInFailed("wrong user name or password"))
    assert user is not None  # for the type checker; the branch above raised  # noqa: S101
    if _hasher.check_needs_rehash(user.password_hash):  # cost raised since: upgrade the hash
        with ctx.db.transaction() as conn:
            conn.execute(update(StaffUser).where(StaffUser.id == user.id)
                         .values(password_hash=_hasher.hash(password)))
    stage = "totp" if user.role in SECOND_FACTOR_ROLES else "full"
    lang = lang if lang in LANGUAGES else (user.languages or DEFAULT_LANGUAGE).split(",")[0].strip()
    with ctx.db.transaction() as conn:
        token = _new_session(conn, ctx, "staff", user.id, stage=stage, lang=lang, ip=ip, policy=policy)
    return SignIn(token, stage)


def verify_totp(
    ctx: Context, token: str, code: str, *, policy: Policy = DEFAULT_POLICY
) -> str:
    """Second step: a valid TOTP code (±1 step) ends the half-signed-in session and returns the
    token of a new, full one (a fresh token at each privilege change: no session fixation).
    A code is accepted once: replaying it, even within its time step, is refused."""
    session = session_for(ctx, token, policy)
    if session is None or session.stage != "totp":
        raise Forbidden("no sign-in in progress")
    key = f"totp:{session.actor.id}"
    now = ctx.clock.now()
    with ctx.db.transaction() as conn:
        _check_limit(conn, key, policy.signin_per_user, now, policy.window)
    secret = staff_totp_secret(ctx, session.actor.id)
    code = (code or "").strip().replace(" ", "")
    totp = pyotp.TOTP(secret) if secret else None
    step = None
    if totp is not None and code.isdigit():
        for offset in (0, -1, 1):  # the current step first, then one either side
            at = now + timedelta(seconds=offset * totp.interval)
            if hmac.compare_digest(totp.at(at), code):
                step = totp.timecode(at)
                break
    if step is None:
        _commit_then_raise(ctx, [key], SignInFailed("wrong code"))
    used_key = f"totp-used:{session.actor.id}:{step}"
    with ctx.db.transaction() as conn:
        _lock_key(conn, used_key)
        seen = conn.execute(select(func.count()).where(RateLimitHit.key == used_key)).scalar_one()
        if not seen:
            _hit(conn, used_key, now)
            conn.execute(update(WebSession).where(WebSession.id == session.token_id)
                         .values(ended_at=now))
            user = conn.execute(select(WebSession.lang).where(WebSession.id == session.token_id)
                                ).scalar_one()
            return _new_session(conn, ctx, "staff", session.actor.id, stage="full", lang=user,
                                ip="", policy=policy)
    _commit_then_raise(ctx, [key], SignInFailed("code already used"))
    raise AssertionError("unreachable")


# --- borrower sign-in ------------------------------------------------------------------------


def normalise_phone(raw: str, region: str = "CN") -> str:
    """The E.164 form of a phone number as typed; InvalidInput(field='phone') if it is not one."""
    try:
        num = phonenumbers.parse((raw or "").strip(), region)
    except phonenumbers.NumberParseException:
        raise InvalidInput("not a phone number", record="sign-in", field="phone") from None
    if not phonenumbers.is_valid_number(num):
        raise InvalidInput("not a valid phone number", record="sign-in", field="phone")
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)


def _code_hash(ctx: Context, phone_index: str, code: str) -> str:
    key = ctx.settings.secret_key.get_secret_value().encode()
    return hmac.new(key, f"otp:{phone_index}:{code}".encode(), hashlib.sha256).hexdigest()


def request_otp(
    ctx: Context,
    phone: str,
    *,
    ip: str = "",
    send: Callable[[str, str], None],
    policy: Policy = DEFAULT_POLICY,
) -> None:
    """Send a one-time code to a borrower's phone. The answer is the same whether or not the
    number belongs to a borrower (a code is only sent when it does)."""
    e164 = normalise_phone(phone)
    index = ctx.keyring.blind_index(e164, "phone")
    now = ctx.clock.now()
    code = "".join(secrets.choice("0123456789") for _ in range(policy.otp_length))
    with ctx.db.transaction() as conn:
        _check_limit(conn, f"otp:phone:{index}", policy.otp_requests_per_phone, now, policy.window)
        _check_limit(conn, f"otp:ip:{ip}", policy.otp_requests_per_ip, now, policy.window)
        _hit(conn, f"otp:phone:{index}", now)
        _hit(conn, f"otp:ip:{ip}", now)
        borrower_id = _orm(conn).execute(
            select(BorrowerPhone.borrower_id).where(BorrowerPhone.e164_index == index).limit(1)
        ).scalar_one_or_none()
        if borrower_id is None:
            return
        # A new code replaces any earlier one.
        conn.execute(
            update(OtpCode)
            .where(OtpCode.phone_index == index, OtpCode.used_at.is_(None))
            .values(used_at=now)
        )
        conn.execute(
            insert(OtpCode).values(
                phone_index=index,
                borrower_id=borrower_id,
                code_hash=_code_hash(ctx, index, code),
                created_at=now,
                expires_at=now + policy.otp_ttl,
            )
        )
    send(e164, code)


def verify_otp(
    ctx: Context, phone: str, code: str, *, ip: str = "", lang: str = "",
    policy: Policy = DEFAULT_POLICY,
) -> SignIn:
    """Exchange a one-time code for a borrower session. Wrong codes count against the code
    (at most `otp_max_attempts`) and against the phone's rate limit."""
    e164 = normalise_phone(phone)
    index = ctx.keyring.blind_index(e164, "phone")
    now = ctx.clock.now()
    key = f"otp-verify:phone:{index}"
    with ctx.db.transaction() as conn:
        _check_limit(conn, key, policy.otp_verifies_per_phone, now, policy.window)
        row = _orm(conn).execute(
            select(OtpCode)
            .where(OtpCode.phone_index == index, OtpCode.used_at.is_(None))
            .order_by(OtpCode.id.desc())
            .limit(1)
        ).scalars().first()
        good = (
            row is not None
            and row.expires_at > now
            and row.attempts < policy.otp_max_attempts
            and hmac.compare_digest(row.code_hash, _code_hash(ctx, index, (code or "").strip()))
        )
        if good and row is not None and row.borrower_id:
            conn.execute(update(OtpCode).where(OtpCode.id == row.id).values(used_at=now))
            pref = _orm(conn).execute(
                select(Borrower.preferred_language).where(Borrower.id == row.borrower_id)
            ).scalar_one_or_none()
            token = _new_session(
                conn, ctx, "borrower", row.borrower_id, stage="full",
                lang=lang or pref or DEFAULT_LANGUAGE, ip=ip, policy=policy,
            )
            return SignIn(token, "full")
        if row is not None:
            conn.execute(
                update(OtpCode).where(OtpCode.id == row.id).values(attempts=OtpCode.attempts + 1)
            )
        _hit(conn, key, now)
    raise SignInFailed("wrong or expired code")


# --- API keys --------------------------------------------------------------------------------


def create_api_key(
    ctx: Context, name: str, *, role: str = "administrator", agency_id: str | None = None
) -> tuple[str, str]:
    """A new API key; returns (key id, the key). Only its hash is stored."""
    if role not in STAFF_ROLES:
        raise InvalidInput(f"unknown role {role!r}", record="api key", field="role")
    key = "pk_" + secrets.token_urlsafe(32)
    kid = f"k-{uuid.uuid4().hex[:12]}"
    with ctx.db.transaction() as conn:
        conn.execute(
            insert(ApiKey).values(
                id=kid, name=name, key_hash=_token_id(key), role=role, agency_id=agency_id,
                created_at=ctx.clock.now(),
            )
        )
    return kid, key


def actor_for_api_key(ctx: Context, key: str) -> Actor:
    if not key or len(key) > 200:
        raise SignInFailed("invalid API key")
    with ctx.db.read() as conn:
        row = _orm(conn).execute(
            select(ApiKey).where(ApiKey.key_hash == _token_id(key), ApiKey.revoked_at.is_(None))
        ).scalars().first()
    if row is None:
        raise SignInFailed("invalid API key")
    return Actor("api", row.id, row.role, row.name, row.agency_id)


def revoke_api_key(ctx: Context, key_id: str) -> None:
    with ctx.db.transaction() as conn:
        res = conn.execute(
            update(ApiKey).where(ApiKey.id == key_id).values(revoked_at=ctx.clock.now())
        )
        if not res.rowcount:
            raise NotFound(f"unknown API key {key_id!r}")

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
DEFAULT_DAILY_CAPACITY = 60  # calls a staff member is planned for per day when none is given
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
    password: str | None,
    role: str,
    display_name: str = "",
    agency_id: str | None = None,
    badge_number: str | None = None,
    staff_id: str | None = None,
    languages: str = DEFAULT_LANGUAGE,
    skills: str = "",
    daily_capacity: int = DEFAULT_DAILY_CAPACITY,
    on_created: Callable[[Connection, str], None] | None = None,
) -> tuple[str, str | None]:
    """Create a staff user; returns (id, TOTP secret or None). The secret is returned once so
    it can be enrolled in an authenticator app; it is stored encrypted.
    password: None = no usable password yet (set through a reset link).
    languages, skills: comma-separated (languages from LANGUAGES); daily_capacity: 0..1000.
    on_created(conn, id): runs in the creating transaction (the administrator's audit entry)."""
    if role not in STAFF_ROLES:
        raise InvalidInput(f"unknown role {role!r}", record="staff", field="role")
    # The same rules as an administrator's edit, so the CLI and the pages agree.
    profile = _profile(role, agency_id=agency_id, badge_number=badge_number, languages=languages,
                       skills=skills, daily_capacity=daily_capacity)
    if not username or len(username) > 64:
        raise InvalidInput("must be 1..64 characters", record="staff", field="username")
    pw_hash = hash_password(password) if password is not None else _unusable_hash()
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
                password_hash=pw_hash,
                totp_secret_enc=(
                    ctx.keyring.encrypt(secret, f"staff_user.totp:{sid}") if secret else None
                ),
                created_at=ctx.clock.now(),
                **profile,
            )
        )
        if on_created is not None:
            on_created(conn, sid)
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
    ctx: Context, name: str, *, role: str = "administrator", agency_id: str | None = None,
    on_created: Callable[[Connection, str], None] | None = None,
) -> tuple[str, str]:
    """A new API key; returns (key id, the key). Only its hash is stored.
    on_created(conn, id): runs in the creating transaction (the administrator's audit entry)."""
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
        if on_created is not None:
            on_created(conn, kid)
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


# --- administration: staff and API keys (the administrator's pages) -------------------------
#
# These take the acting administrator and check the role here, as well as at the page, and
# record every change on the system audit chain ('_system'), in the same transaction.
#
# Passwords are reset with a one-time link, never a password chosen by the administrator:
# issuing it replaces the stored hash with an unusable one (the old password and any earlier
# link stop working at once) and ends the member's sessions; the link carries the staff id, a
# fingerprint of that unusable hash and an expiry, signed with the server secret, so it needs
# no table and dies the moment a password is set. New staff get such a link too.

ADMIN_ROLES = frozenset({"administrator"})
RESET_LINK_TTL = timedelta(hours=24)
_RESET_SALT = "parley/staff-password-reset/v1"


@dataclass(frozen=True)
class StaffRecord:
    """A staff member as the administrator's list shows them (never a secret or hash).

    agency_id/badge_number: None when not set. languages, skills: tuples, empty = none.
    second_factor: whether the role signs in with TOTP. password_set: False while only a
    reset link (not yet used) can sign them in.
    """

    id: str
    username: str
    display_name: str
    role: str
    agency_id: str | None
    badge_number: str | None
    languages: tuple[str, ...]
    skills: tuple[str, ...]
    daily_capacity: int
    active: bool
    second_factor: bool
    password_set: bool
    created_at: datetime


@dataclass(frozen=True)
class ApiKeyRecord:
    """An API key as listed (the key itself is shown only once, at creation).
    agency_id: None = not agency-scoped; revoked_at: None = in force."""

    id: str
    name: str
    role: str
    agency_id: str | None
    created_at: datetime
    revoked_at: datetime | None


def _require_admin(actor: Actor) -> None:
    if actor.role not in ADMIN_ROLES or not actor.is_staff:
        raise Forbidden("not allowed for your role")


def _audit_admin(ctx: Context, conn: Connection, actor: Actor, kind: str, subject: str,
                 payload: dict[str, object]) -> None:
    from parley.services.audit import SYSTEM_CHAIN, audit_append, audit_key

    audit_append(conn, chain_key=SYSTEM_CHAIN, kind=kind, payload=payload, at=ctx.clock.now(),
                 actor=f"{actor.kind}:{actor.id}", subject=subject, key=audit_key(ctx))


def _unusable_hash() -> str:
    """Not an argon2 hash, so no password verifies against it; random, so each reset has its
    own fingerprint."""
    return "!reset:" + secrets.token_hex(16)


def _fingerprint(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode()).hexdigest()[:24]


def _reset_serializer(ctx: Context):  # type: ignore[no-untyped-def]
    from itsdangerous import URLSafeSerializer

    return URLSafeSerializer(ctx.settings.secret_key.get_secret_value(), salt=_RESET_SALT)


def _end_sessions(conn: Connection, ctx: Context, staff_id: str) -> None:
    conn.execute(update(WebSession).where(WebSession.kind == "staff",
                                          WebSession.subject_id == staff_id,
                                          WebSession.ended_at.is_(None))
                 .values(ended_at=ctx.clock.now()))


def _staff_row(conn: Connection, staff_id: str) -> StaffUser:
    user = _orm(conn).execute(select(StaffUser).where(StaffUser.id == staff_id)).scalars().first()
    if user is None:
        raise NotFound(f"unknown staff member {staff_id!r}")
    return user


def _new_reset_token(ctx: Context, staff_id: str, password_hash: str) -> str:
    expires = int((ctx.clock.now() + RESET_LINK_TTL).timestamp())
    return str(_reset_serializer(ctx).dumps([staff_id, _fingerprint(password_hash), expires]))


def _staff_record(u: StaffUser) -> StaffRecord:
    return StaffRecord(
        id=u.id, username=u.username, display_name=u.display_name, role=u.role,
        agency_id=u.agency_id, badge_number=u.badge_number,
        languages=tuple(x for x in (u.languages or "").split(",") if x),
        skills=tuple(x for x in (u.skills or "").split(",") if x),
        daily_capacity=u.daily_capacity, active=u.active,
        second_factor=u.role in SECOND_FACTOR_ROLES,
        password_set=not (u.password_hash or "").startswith("!"),
        created_at=u.created_at,
    )


def list_staff(ctx: Context, actor: Actor) -> tuple[StaffRecord, ...]:
    """Every staff member, active first, then by role and user name."""
    _require_admin(actor)
    with ctx.db.read() as conn:
        out = [_staff_record(u) for u in _orm(conn).execute(select(StaffUser)).scalars().all()]
    return tuple(sorted(out, key=lambda r: (not r.active, STAFF_ROLES.index(r.role)
                                            if r.role in STAFF_ROLES else 99, r.username)))


def get_staff(ctx: Context, actor: Actor, staff_id: str) -> StaffRecord:
    """One staff member (NotFound if unknown), so a page acting on one member need not list
    them all."""
    _require_admin(actor)
    with ctx.db.read() as conn:
        return _staff_record(_staff_row(conn, staff_id))


@dataclass(frozen=True)
class NewStaff:
    """What creating a staff member hands back, once: the set-password token (for the link)
    and the TOTP secret to enrol (None for roles without a second factor)."""

    id: str
    reset_token: str
    totp_secret: str | None


def admin_create_staff(
    ctx: Context, actor: Actor, *, username: str, role: str, display_name: str = "",
    agency_id: str | None = None, badge_number: str | None = None,
    languages: str = DEFAULT_LANGUAGE, skills: str = "", daily_capacity: int | str | None = None,
) -> NewStaff:
    """Create a staff member with no usable password and return a one-time link token with
    which they choose one (see the section comment). The profile is validated as ``_profile``
    says, the same rules as an edit; daily_capacity may be the raw text of a form or API field,
    and None (a blank field) means DEFAULT_DAILY_CAPACITY. Audited as 'staff.created'."""
    _require_admin(actor)
    capacity = (DEFAULT_DAILY_CAPACITY if daily_capacity is None
                else _daily_capacity(daily_capacity))
    hashes: dict[str, str] = {}

    def audit(conn: Connection, sid: str) -> None:
        # Agency and badge as stored (``_profile`` normalised them), not as typed.
        row = conn.execute(select(StaffUser.password_hash, StaffUser.agency_id,
                                  StaffUser.badge_number).where(StaffUser.id == sid)).one()
        hashes[sid] = row.password_hash
        _audit_admin(ctx, conn, actor, "staff.created", sid, {
            "username": username.strip(), "role": role, "agency_id": row.agency_id,
            "badge_number": row.badge_number, "languages": languages,
            "skills": skills, "daily_capacity": capacity})

    sid, secret = create_staff(
        ctx, username=username.strip(), password=None, role=role,
        display_name=display_name.strip(), agency_id=agency_id, badge_number=badge_number,
        languages=languages, skills=skills, daily_capacity=capacity, on_created=audit)
    return NewStaff(sid, _new_reset_token(ctx, sid, hashes[sid]), secret)


def set_staff_active(ctx: Context, actor: Actor, staff_id: str, active: bool) -> None:
    """Deactivate (ends their sessions; they cannot sign in) or reactivate a staff member.
    An administrator cannot deactivate themselves (so the last one cannot lock everyone out)."""
    _require_admin(actor)
    if not active and staff_id == actor.id:
        raise InvalidInput("you cannot deactivate yourself", record="staff", field="staff_id")
    with ctx.db.transaction() as conn:
        user = _staff_row(conn, staff_id)
        if user.active == active:
            return
        conn.execute(update(StaffUser).where(StaffUser.id == staff_id).values(active=active))
        if not active:
            _end_sessions(conn, ctx, staff_id)
        _audit_admin(ctx, conn, actor, "staff.reactivated" if active else "staff.deactivated",
                     staff_id, {"username": user.username})


STAFF_PROFILE_FIELDS = ("agency_id", "badge_number", "languages", "skills", "daily_capacity")


def _daily_capacity(value: int | str) -> int:
    """A daily capacity from an int or the text of a form or API field (surrounding spaces
    ignored), so every face passes what it was given and the rule lives here only."""
    number: object = value
    if isinstance(value, str):  # plain digits only: int() would also take "+5", "1_000", "１０"
        text = value.strip()
        number = int(text) if text.isascii() and text.isdigit() else None
    if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number <= 1000:
        raise InvalidInput("must be a whole number 0..1000", record="staff", field="daily_capacity")
    return number


def _profile(role: str, *, agency_id: str | None, badge_number: str | None, languages: str,
             skills: str, daily_capacity: int | str) -> dict[str, object]:
    """The editable profile as stored, validated for ``role`` (InvalidInput names the field).
    The one place these rules live: creating (the pages, the CLI) and editing both come here.
    languages among LANGUAGES (at least one), skills comma-separated (200 characters stored),
    daily_capacity 0..1000 (an int or its text), badge_number at most 32 characters (empty =
    none), agency_id required for agency collectors and refused for every other role (empty = none)."""
    langs = list(dict.fromkeys(x.strip() for x in languages.split(",") if x.strip()))
    if not langs or any(x not in LANGUAGES for x in langs):
        raise InvalidInput(f"languages must be among {', '.join(LANGUAGES)}", record="staff",
                           field="languages")
    skill_list = list(dict.fromkeys(x.strip() for x in skills.split(",") if x.strip()))
    if len(",".join(skill_list)) > 200:
        raise InvalidInput("at most 200 characters", record="staff", field="skills")
    capacity = _daily_capacity(daily_capacity)
    badge = (badge_number or "").strip() or None
    if badge is not None and len(badge) > 32:
        raise InvalidInput("must be at most 32 characters", record="staff", field="badge_number")
    agency = (agency_id or "").strip() or None
    if agency is not None and (len(agency) > 64 or not agency.isprintable() or " " in agency):
        raise InvalidInput("must be at most 64 characters, without spaces", record="staff",
                           field="agency_id")
    if role == "agency_collector" and agency is None:
        raise InvalidInput("an agency collector needs an agency", record="staff", field="agency_id")
    if role != "agency_collector" and agency is not None:
        raise InvalidInput("only agency collectors belong to an agency", record="staff",
                           field="agency_id")
    return {"agency_id": agency, "badge_number": badge, "languages": ",".join(langs),
            "skills": ",".join(skill_list), "daily_capacity": capacity}


def admin_update_staff(
    ctx: Context, actor: Actor, staff_id: str, *, agency_id: str | None, badge_number: str | None,
    languages: str, skills: str, daily_capacity: int | str,
) -> StaffRecord:
    """Change a staff member's agency, badge number, languages, skills and daily capacity
    (validated as ``_profile`` says - daily_capacity may be the raw text of a form or API field;
    the role, name and credentials are not changed here) and return the member as now stored.
    Audited as 'staff.updated' with each changed field's old and new value; a form that
    changes nothing writes nothing. An agency collector moved to another agency sees the new
    agency's cases from their next request (the actor is read per request)."""
    _require_admin(actor)
    with ctx.db.transaction() as conn:
        user = _staff_row(conn, staff_id)
        new = _profile(user.role, agency_id=agency_id, badge_number=badge_number,
                       languages=languages, skills=skills, daily_capacity=daily_capacity)
        old = {f: getattr(user, f) for f in STAFF_PROFILE_FIELDS}
        old["languages"], old["skills"] = old["languages"] or "", old["skills"] or ""
        changes = {f: [old[f], new[f]] for f in STAFF_PROFILE_FIELDS if old[f] != new[f]}
        if changes:
            conn.execute(update(StaffUser).where(StaffUser.id == staff_id)
                         .values(**{f: new[f] for f in changes}))
            _audit_admin(ctx, conn, actor, "staff.updated", staff_id,
                         {"username": user.username, "changes": changes})
        return _staff_record(_staff_row(conn, staff_id))


def issue_password_reset(ctx: Context, actor: Actor, staff_id: str) -> str:
    """Kill the member's password and sessions and return a one-time set-password token."""
    _require_admin(actor)
    unusable = _unusable_hash()
    with ctx.db.transaction() as conn:
        user = _staff_row(conn, staff_id)
        conn.execute(update(StaffUser).where(StaffUser.id == staff_id)
                     .values(password_hash=unusable))
        _end_sessions(conn, ctx, staff_id)
        _audit_admin(ctx, conn, actor, "staff.password_reset", staff_id,
                     {"username": user.username})
    return _new_reset_token(ctx, staff_id, unusable)


def _staff_for_reset_token(conn: Connection, ctx: Context, token: str) -> StaffUser:
    from itsdangerous import BadSignature

    wrong = SignInFailed("this link is not valid any more; ask an administrator for a new one")
    try:
        staff_id, fingerprint, expires = _reset_serializer(ctx).loads(token[:500])
    except (BadSignature, ValueError, TypeError):
        raise wrong from None
    if not isinstance(expires, int) or ctx.clock.now().timestamp() >= expires:
        raise wrong
    user = _orm(conn).execute(select(StaffUser).where(StaffUser.id == str(staff_id))).scalars().first()
    if user is None or not user.active or not hmac.compare_digest(
            _fingerprint(user.password_hash or ""), str(fingerprint)):
        raise wrong
    return user


def reset_link_user(ctx: Context, token: str) -> str:
    """The user name a set-password link is for; SignInFailed if it is used, stale or forged."""
    with ctx.db.read() as conn:
        return _staff_for_reset_token(conn, ctx, token).username


def set_password_with_token(ctx: Context, token: str, password: str) -> str:
    """Use a set-password link: store the new password (argon2), end any sessions; the link
    dies with the hash it was bound to. Returns the user name. Audited as 'staff.password_set'."""
    new_hash = hash_password(password)
    with ctx.db.transaction() as conn:
        user = _staff_for_reset_token(conn, ctx, token)
        conn.execute(update(StaffUser).where(StaffUser.id == user.id).values(password_hash=new_hash))
        _end_sessions(conn, ctx, user.id)
        _audit_admin(ctx, conn, Actor("staff", user.id, user.role), "staff.password_set",
                     user.id, {"username": user.username})
        return user.username


def reset_staff_totp(ctx: Context, actor: Actor, staff_id: str) -> str:
    """A new TOTP secret for a member whose role needs one (returned once, stored encrypted);
    the old authenticator stops working and their sessions end. Audited as 'staff.totp_reset'."""
    _require_admin(actor)
    secret = pyotp.random_base32()
    with ctx.db.transaction() as conn:
        user = _staff_row(conn, staff_id)
        if user.role not in SECOND_FACTOR_ROLES:
            raise InvalidInput("this role signs in without a second factor", record="staff",
                               field="staff_id")
        conn.execute(update(StaffUser).where(StaffUser.id == staff_id).values(
            totp_secret_enc=ctx.keyring.encrypt(secret, f"staff_user.totp:{staff_id}")))
        _end_sessions(conn, ctx, staff_id)
        _audit_admin(ctx, conn, actor, "staff.totp_reset", staff_id, {"username": user.username})
    return secret


def totp_uri(secret: str, username: str) -> str:
    """The otpauth:// URI an authenticator app enrols from."""
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name="Parley")


def list_api_keys(ctx: Context, actor: Actor) -> tuple[ApiKeyRecord, ...]:
    """Every API key, in force first, newest first."""
    _require_admin(actor)
    with ctx.db.read() as conn:
        rows = _orm(conn).execute(select(ApiKey)).scalars().all()
    out = [ApiKeyRecord(r.id, r.name, r.role, r.agency_id, r.created_at, r.revoked_at) for r in rows]
    return tuple(sorted(out, key=lambda r: (r.revoked_at is not None, -r.created_at.timestamp(), r.id)))


def admin_create_api_key(ctx: Context, actor: Actor, name: str, *, role: str,
                         agency_id: str | None = None) -> tuple[str, str]:
    """create_api_key, by an administrator, audited as 'apikey.created'."""
    _require_admin(actor)
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidInput("must be 1..200 characters", record="api key", field="name")
    def audit(conn: Connection, kid: str) -> None:  # in the key's own transaction
        _audit_admin(ctx, conn, actor, "apikey.created", kid,
                     {"name": name, "role": role, "agency_id": agency_id or None})

    return create_api_key(ctx, name, role=role, agency_id=agency_id or None, on_created=audit)


def admin_revoke_api_key(ctx: Context, actor: Actor, key_id: str) -> None:
    """Revoke a key in force (NotFound for an unknown or already revoked one); audited."""
    _require_admin(actor)
    with ctx.db.transaction() as conn:
        res = conn.execute(update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
                           .values(revoked_at=ctx.clock.now()))
        if not res.rowcount:
            raise NotFound(f"unknown API key {key_id!r}")
        _audit_admin(ctx, conn, actor, "apikey.revoked", key_id, {})

"""Drives Rekey with PyPI `zitadel-client` (ZITADEL's official Python SDK).

The SDK speaks Connect with JSON bodies over HTTP/1.1 (urllib3): every call is
`POST {host}/zitadel.user.v2.UserService/{Method}` with `Content-Type: application/json`.
`Zitadel.with_access_token(host, token)` sends `Authorization: Bearer <token>`; a host starting
with `http://` is used as is (only a bare host name gets `https://`). Calls without a token use
the SDK's own `NoAuthAuthenticator`. Errors surface as `zitadel_client.ApiError` with the HTTP
status in `code` and the Connect error JSON (parsed) in `response_body`.

    python zitadel_client_connect.py

Exercises `users` (zitadel.user.v2) and `beta_users` (zitadel.user.v2beta). Configuration comes
from the environment (REKEY_BASE_URL, REKEY_ORG_ID, REKEY_ADMIN_TOKEN, REKEY_SYSTEM_TOKEN,
REKEY_OTHER_ORG_ID, REKEY_OTHER_USER_ID, REKEY_EMAIL, REKEY_FALLBACK_USER_ID,
REKEY_NEW_PASSWORD); prints one JSON summary
line and exits 0 only when every check passed.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import traceback
from importlib.metadata import version as package_version
from typing import Any, Callable, Dict, List, Optional

import zitadel_client as zc
from zitadel_client import ApiError, Zitadel
from zitadel_client.auth.no_auth_authenticator import NoAuthAuthenticator
from zitadel_client.models import (
    BetaUserServicePassword,
    BetaUserServicePasswordResetRequest,
    BetaUserServiceSetPasswordRequest,
    UserServiceAddHumanUserRequest,
    UserServiceConnectError,
    UserServiceGetUserByIDRequest,
    UserServiceOrganization,
    UserServicePassword,
    UserServicePasswordResetRequest,
    UserServiceSetHumanEmail,
    UserServiceSetHumanProfile,
    UserServiceSetPasswordRequest,
    UserServiceUserState,
)

UNKNOWN_USER_ID = "999999999999999999"
WRONG_CODE = "WRONGCODE42"

# Connect code → (gRPC code, HTTP status) per SPEC §6.
CONNECT_CODES = {
    "invalid_argument": (3, 400),
    "not_found": (5, 404),
    "permission_denied": (7, 403),
    "failed_precondition": (9, 400),
    "unauthenticated": (16, 401),
}


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f"environment variable {name} is not set")
    return value


BASE = env("REKEY_BASE_URL")
ORG_ID = env("REKEY_ORG_ID")
ADMIN_TOKEN = env("REKEY_ADMIN_TOKEN")
OTHER_USER_ID = env("REKEY_OTHER_USER_ID")
EMAIL = env("REKEY_EMAIL")
NEW_PASSWORD = env("REKEY_NEW_PASSWORD")

summary: Dict[str, Any] = {
    "client": "zitadel-client",
    "version": package_version("zitadel-client"),
    "form": "connect-json",
    "ok": True,
    "checks": [],
    "facts": {},
}


def check(name: str, ok: bool, detail: Any = None) -> bool:
    entry: Dict[str, Any] = {"name": name, "ok": bool(ok)}
    if not ok:
        entry["detail"] = detail
        summary["ok"] = False
    summary["checks"].append(entry)
    return bool(ok)


def step(name: str, fn: Callable[[], Optional[str]]) -> bool:
    """Runs fn; None means success, a string describes the failure, an exception fails too."""
    try:
        problem = fn()
    except ApiError as err:
        return check(name, False, f"HTTP {err.code}: {err.response_body!r}")
    except Exception as err:  # noqa: BLE001 - every failure is reported, not raised
        return check(name, False, f"threw: {err!r}")
    return check(name, problem is None, problem)


def _b64decode(value: str) -> bytes:
    # Connect sends base64 without padding (standard or URL alphabet).
    value = value.replace("-", "+").replace("_", "/")
    return base64.b64decode(value + "=" * (-len(value) % 4))


def _varint(data: bytes, pos: int) -> "tuple[int, int]":
    result = shift = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def decode_error_detail(data: bytes) -> Dict[str, str]:
    """`zitadel.v1.ErrorDetail { string id = 1; string message = 2; }`"""
    out = {"id": "", "message": ""}
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            chunk = data[pos : pos + length]
            pos += length
            if field == 1:
                out["id"] = chunk.decode()
            elif field == 2:
                out["message"] = chunk.decode()
        else:
            raise ValueError(f"unexpected wire type {wire}")
    return out


def normalize(err: ApiError) -> Dict[str, Any]:
    """What the SDK surfaces: HTTP status, and the Connect error body parsed with its own model."""
    body = err.response_body
    if not isinstance(body, dict):
        raise ValueError(f"error body is not JSON: {body!r}")
    parsed = UserServiceConnectError.from_dict(body)
    details: List[Dict[str, Any]] = []
    for any_ in parsed.details or []:
        entry: Dict[str, Any] = {"type": any_.type}
        if any_.type == "zitadel.v1.ErrorDetail" and isinstance(any_.value, str):
            entry.update(decode_error_detail(_b64decode(any_.value)))
        if isinstance(any_.debug, dict):
            entry["debug"] = any_.debug
        details.append(entry)
    return {"http": err.code, "code": parsed.code, "message": parsed.message, "details": details}


def expect_error(
    name: str,
    call: Callable[[], Any],
    code: str,
    detail_id: Optional[str] = None,
    message: Optional[str] = None,
) -> Optional[Dict[str, Any]]:
    try:
        result = call()
    except ApiError as err:
        try:
            got = normalize(err)
        except Exception as inner:  # noqa: BLE001
            check(name, False, f"unreadable error {err!r}: {inner!r} body={err.response_body!r}")
            return None
    except Exception as err:  # noqa: BLE001
        check(name, False, f"threw a non-API error: {err!r}")
        return None
    else:
        check(name, False, f"succeeded, wanted {code}: {result!r}")
        return None
    problems = []
    if got["code"] != code:
        problems.append(f"code {got['code']!r}, want {code!r}")
    want_http = CONNECT_CODES[code][1]
    if got["http"] != want_http:
        problems.append(f"HTTP {got['http']}, want {want_http}")
    if message is not None and got["message"] != message:
        problems.append(f"message {got['message']!r}, want {message!r}")
    if detail_id is not None:
        ids = [d.get("id") for d in got["details"]]
        if detail_id not in ids:
            problems.append(f"ErrorDetail ids {ids}, want {detail_id}")
        # The Connect `debug` form of the detail names the same id.
        debug_ids = [d.get("debug", {}).get("id") for d in got["details"]]
        if detail_id not in debug_ids:
            problems.append(f"debug ids {debug_ids}, want {detail_id}")
    check(name, not problems, f"{'; '.join(problems)} — got {got!r}")
    return got


def main() -> None:
    admin = Zitadel.with_access_token(BASE, ADMIN_TOKEN)
    anonymous = Zitadel(NoAuthAuthenticator(BASE))
    user: Dict[str, str] = {"id": ""}

    def add_user() -> Optional[str]:
        res = admin.users.add_human_user(
            UserServiceAddHumanUserRequest(
                organization=UserServiceOrganization(org_id=ORG_ID),
                profile=UserServiceSetHumanProfile(given_name="Python", family_name="Client"),
                email=UserServiceSetHumanEmail(email=EMAIL, is_verified=True),
            )
        )
        user["id"] = res.user_id or ""
        summary["facts"]["userId"] = user["id"]
        if not user["id"]:
            return f"no userId in {res!r}"
        if res.details is None or res.details.resource_owner != ORG_ID:
            return f"details {res.details!r}, want resourceOwner {ORG_ID}"
        return None

    if not step("setup.add_human_user", add_user) or not user["id"]:
        # Keep the reset checks meaningful: use the CLI-made user (state initial).
        user["id"] = env("REKEY_FALLBACK_USER_ID")
        summary["facts"]["userId"] = user["id"]
        summary["facts"]["userSource"] = "cli"

    def state_is(want: UserServiceUserState) -> Callable[[], Optional[str]]:
        def run() -> Optional[str]:
            res = admin.users.get_user_by_id(UserServiceGetUserByIDRequest(user_id=user["id"]))
            if res.user is None or res.user.user_id != user["id"]:
                return f"user {res.user!r}"
            if res.user.state != want:
                return f"state {res.user.state}, want {want}"
            return None

        return run

    step("setup.get_user_initial", state_is(UserServiceUserState.USER_STATE_INITIAL))

    code: Dict[str, str] = {}

    def reset() -> Optional[str]:
        res = admin.users.password_reset(
            UserServicePasswordResetRequest(user_id=user["id"], return_code={})
        )
        code["v2"] = res.verification_code or ""
        if not code["v2"]:
            return f"no verificationCode in {res!r}"
        if res.details is None or res.details.resource_owner != ORG_ID:
            return f"details {res.details!r}, want resourceOwner {ORG_ID}"
        return None

    step("reset.return_code", reset)

    def set_with(client: Zitadel, user_id: str, verification_code: str) -> Any:
        return client.users.set_password(
            UserServiceSetPasswordRequest(
                user_id=user_id,
                new_password=UserServicePassword(password=NEW_PASSWORD, change_required=False),
                verification_code=verification_code,
            )
        )

    expect_error(
        "set.wrong_code",
        lambda: set_with(anonymous, user["id"], WRONG_CODE),
        "invalid_argument",
        "CODE-woT0xc",
        "Code is invalid (CODE-woT0xc)",
    )

    def set_ok() -> Optional[str]:
        res = set_with(anonymous, user["id"], code["v2"])
        if res.details is None or res.details.resource_owner != ORG_ID:
            return f"details {res.details!r}, want resourceOwner {ORG_ID}"
        return None

    step("set.with_code", set_ok)

    expect_error(
        "set.code_replayed",
        lambda: set_with(admin, user["id"], code["v2"]),
        "failed_precondition",
        "COMMAND-2M9fs",
        "Code not found (COMMAND-2M9fs)",
    )

    step("setup.get_user_active", state_is(UserServiceUserState.USER_STATE_ACTIVE))

    expect_error(
        "set.unknown_user",
        lambda: set_with(anonymous, UNKNOWN_USER_ID, WRONG_CODE),
        "failed_precondition",
        "COMMAND-2M9fs",
        "Code not found (COMMAND-2M9fs)",
    )

    def reset_of(client: Zitadel, user_id: str) -> Callable[[], Any]:
        return lambda: client.users.password_reset(
            UserServicePasswordResetRequest(user_id=user_id, return_code={})
        )

    unknown = expect_error(
        "reset.unknown_user",
        reset_of(admin, UNKNOWN_USER_ID),
        "not_found",
        "COMMAND-SAF4f",
        "User could not be found (COMMAND-SAF4f)",
    )
    expect_error("reset.no_token", reset_of(anonymous, user["id"]), "unauthenticated")
    other = expect_error(
        "reset.other_tenant", reset_of(admin, OTHER_USER_ID), "not_found", "COMMAND-SAF4f"
    )
    check(
        "reset.other_tenant_same_as_unknown",
        other is not None and other == unknown,
        {"other": other, "unknown": unknown},
    )
    expect_error(
        "get.other_tenant",
        lambda: admin.users.get_user_by_id(UserServiceGetUserByIDRequest(user_id=OTHER_USER_ID)),
        "not_found",
    )

    # ---- zitadel.user.v2beta through `beta_users` ----
    def beta_reset_and_set() -> Optional[str]:
        res = admin.beta_users.password_reset(
            BetaUserServicePasswordResetRequest(user_id=user["id"], return_code={})
        )
        if not res.verification_code:
            return f"no verificationCode in {res!r}"
        code["v2beta"] = res.verification_code
        admin.beta_users.set_password(
            BetaUserServiceSetPasswordRequest(
                user_id=user["id"],
                new_password=BetaUserServicePassword(password=NEW_PASSWORD, change_required=False),
                verification_code=res.verification_code,
            )
        )
        return None

    step("v2beta.reset_and_set", beta_reset_and_set)

    expect_error(
        "v2beta.code_replayed",
        lambda: anonymous.beta_users.set_password(
            BetaUserServiceSetPasswordRequest(
                user_id=user["id"],
                new_password=BetaUserServicePassword(password=NEW_PASSWORD),
                verification_code=code.get("v2beta", WRONG_CODE),
            )
        ),
        "failed_precondition",
        "COMMAND-2M9fs",
    )
    expect_error(
        "v2beta.other_tenant",
        lambda: admin.beta_users.password_reset(
            BetaUserServicePasswordResetRequest(user_id=OTHER_USER_ID, return_code={})
        ),
        "not_found",
        "COMMAND-SAF4f",
    )


if __name__ == "__main__":
    assert zc  # the SDK imported
    try:
        main()
    except Exception as err:  # noqa: BLE001
        check("script", False, f"aborted: {err!r} {traceback.format_exc()}")
    sys.stdout.write(json.dumps(summary, default=str) + "\n")
    sys.exit(0 if summary["ok"] else 1)

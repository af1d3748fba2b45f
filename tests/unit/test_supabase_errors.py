"""PostgREST and Storage errors become videopoll's exceptions by their codes.

postgrest-py's `APIError` carries the body's code: a five-character SQLSTATE from
PostgreSQL, a PGRST code from PostgREST, or (when the body was not PostgREST's) the HTTP
status. The cases are generated over each family, not listed.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from postgrest.exceptions import APIError

from videopoll.errors import (
    AuthError,
    ConfigError,
    RateLimited,
    RequestRejected,
    ServerError,
)
from videopoll.services.supabase.errors import rest_error

DIGITS = "0123456789"
ALNUM = DIGITS + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def sqlstate(klass: str) -> st.SearchStrategy[str]:
    return st.text(ALNUM, min_size=3, max_size=3).map(lambda tail: klass + tail)


def error(code: str, message: str = "something went wrong") -> APIError:
    return APIError({"message": message, "code": code, "hint": None, "details": None})


@given(sqlstate("23"))
def test_integrity_violations_are_rejections_never_server_errors(code: str) -> None:
    """23xxx (unique, foreign key, check): the write conflicts with the data; repeating it
    cannot help, and a 5-digit code is not an HTTP status >= 500."""
    got = rest_error(error(code), "insert row")
    assert type(got) is RequestRejected
    assert got.status is not None and got.status < 500


@given(st.sampled_from(["08", "40", "53", "57", "58", "XX"]).flatmap(sqlstate))
def test_connection_and_resource_classes_are_server_errors(code: str) -> None:
    assert type(rest_error(error(code), "pending")) is ServerError


@given(st.integers(500, 599))
def test_an_http_status_from_a_gateway_is_kept(status: int) -> None:
    got = rest_error(error(str(status)), "pending")
    assert type(got) is ServerError and got.status == status


@given(st.integers(400, 499).filter(lambda n: n not in (401, 403, 429)))
def test_a_client_http_status_is_a_rejection_with_that_status(status: int) -> None:
    got = rest_error(error(str(status)), "pending")
    assert type(got) is RequestRejected and got.status == status


def test_the_families_videopoll_acts_on() -> None:
    for code in ("23505", "23503"):  # unique key, foreign key
        conflict = rest_error(error(code), "insert row")
        assert isinstance(conflict, RequestRejected) and conflict.status == 409
    assert type(rest_error(error("42501"), "pending")) is AuthError
    assert type(rest_error(error("PGRST202"), "rpc")) is ConfigError
    assert type(rest_error(error("429"), "pending")) is RateLimited
    assert type(rest_error(error(""), "pending")) is ServerError  # a gateway's own body

"""The boto3 side of the S3 preflight: building the client, calling it, and
sorting its errors into kinds; plus `S3Context`, what every S3 message needs.

The kinds matter because one failure has several causes that need different
fixes (an unknown key, a wrong secret, a skewed clock, a dead endpoint), and
because identity kinds are reported once, not once per path.
"""

from __future__ import annotations

from taobot.preflight.base import CheckResult, PreflightRequest

IDENTITY_KINDS = ("invalid_key", "bad_secret", "expired", "clock", "unreachable", "region", "endpoint")
CODE_KINDS = {
    "InvalidAccessKeyId": "invalid_key",
    "SignatureDoesNotMatch": "bad_secret",
    "ExpiredToken": "expired",
    "InvalidToken": "expired",
    "TokenRefreshRequired": "expired",
    "RequestTimeTooSkewed": "clock",
    "AuthorizationHeaderMalformed": "region",
    "PermanentRedirect": "region",
    "IllegalLocationConstraintException": "region",
    "AccessDenied": "denied",
    "AllAccessDisabled": "denied",
    "AccountProblem": "denied",
    "403": "denied",
    "Forbidden": "denied",
    "NoSuchBucket": "no_bucket",
    "NoSuchKey": "not_found",
    "404": "not_found",
    "NotFound": "not_found",
}


class S3Context:
    """What every message needs: where we talk to, as whom (masked), and the identity failure if one was reported."""

    def __init__(self, request: PreflightRequest, client) -> None:
        self.request = request
        self.client = client
        self.endpoint = request.cred("S3_ENDPOINT_URL")
        self.region = request.cred("CLOUD_REGION") or "us-east-1"
        self.key_hint = mask_key(request.cred("ACCESS_KEY") or "")
        self.identity_reported = False

    @property
    def where(self) -> str:
        return f"`{self.endpoint}`" if self.endpoint else f"AWS S3 (region `{self.region}`)"

    @property
    def cli_opts(self) -> str:
        return f" --endpoint-url {self.endpoint}" if self.endpoint else f" --region {self.region}"


def mask_key(access_key: str) -> str:
    """An access key id shown only by its first characters (enough to tell key pairs apart)."""
    if len(access_key) <= 6:
        return "…"
    return access_key[:4] + "…"


def make_client(request: PreflightRequest):
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        return None, CheckResult(
            "s3.access",
            "S3 access",
            False,
            "the `boto3` Python package is not installed in the bot's environment",
            "Install it in the bot's environment: `pip install 'boto3>=1.34'`, then restart the bot.",
        )
    endpoint = request.cred("S3_ENDPOINT_URL")
    s3_options = {"addressing_style": "path"} if endpoint else {}
    config = Config(
        signature_version="s3v4",
        s3=s3_options,
        connect_timeout=min(request.settings.connect_timeout_s, 5.0),
        read_timeout=request.settings.http_timeout_s,
        retries={"max_attempts": 2, "mode": "standard"},
    )
    try:
        client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint,
            region_name=request.cred("CLOUD_REGION") or "us-east-1",
            aws_access_key_id=request.cred("ACCESS_KEY"),
            aws_secret_access_key=request.cred("SECRET_KEY"),
            aws_session_token=request.cred("SESSION_TOKEN"),
            config=config,
        )
    except ValueError as exc:  # botocore: "Invalid endpoint: ..."
        return None, CheckResult(
            "s3.access",
            "S3 access",
            False,
            f"S3_ENDPOINT_URL `{endpoint}` is not a usable URL ({exc})",
            "Set S3_ENDPOINT_URL to the store's full URL, e.g. `https://s3.example.internal:9000`, or leave it empty for AWS S3.",
        )
    return client, None


def classify(exc: Exception) -> tuple[str, str]:
    """(kind, code) for a boto3 error; kind is one of CODE_KINDS' values, 'unreachable', 'endpoint' or 'other'."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
        SSLError,
    )

    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {}) or {}
        code = str(err.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or "")
        kind = CODE_KINDS.get(code)
        if kind is None:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            kind = {403: "denied", 404: "not_found", 301: "region"}.get(status, "other")
        return kind, code
    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError, ConnectionClosedError)):
        return "unreachable", type(exc).__name__
    if isinstance(exc, ReadTimeoutError):
        return "unreachable", "ReadTimeout"
    if isinstance(exc, SSLError):
        return "endpoint", "SSLError"
    if isinstance(exc, BotoCoreError):
        return "other", type(exc).__name__
    return "other", type(exc).__name__


def call(fn, **kwargs):
    """(response, None) or (None, (kind, code)); only boto errors are caught."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return fn(**kwargs), None
    except (ClientError, BotoCoreError) as exc:
        return None, classify(exc)

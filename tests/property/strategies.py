"""Hypothesis strategies for the request of every RPC: mostly hostile values
(unicode, control characters, megabyte strings, out-of-range numbers and enums,
deep or non-finite JSON, odd header names, forged tokens), mixed with values that
are valid so the happy paths run too."""

from __future__ import annotations

import base64
import json
import string
from typing import Any

from hypothesis import strategies as st

from hookline.client import (
    AddFlowWebhookRequest,
    CancelJobRequest,
    CancelJobsRequest,
    CreateFlowRequest,
    CreateWebhookRequest,
    DeleteFlowRequest,
    DeleteWebhookRequest,
    Flow,
    GetDeliveryRequest,
    GetEventRequest,
    GetFlowRequest,
    GetJobRequest,
    GetWebhookRequest,
    GetWebhookStatsRequest,
    ListAttemptsRequest,
    ListDeliveriesRequest,
    ListEventsRequest,
    ListEventTypesRequest,
    ListFlowsRequest,
    ListFlowWebhooksRequest,
    ListJobsRequest,
    ListWebhooksRequest,
    RecoverDeliveriesRequest,
    RemoveFlowWebhookRequest,
    RetryDeliveryRequest,
    RotateWebhookSecretRequest,
    SendTestEventRequest,
    SetFlowWebhooksRequest,
    StartJobRequest,
    UpdateFlowRequest,
    UpdateWebhookRequest,
    WatchDeliveriesRequest,
    WatchJobRequest,
    Webhook,
)

from .world import EVENT_TYPES, UNSET, Cursor, Fresh, Hook, Json, Mask, Ref, Span, Time, Token, msg


def pick(*options: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """One of `options`, each equally likely (so repeating one weighs it; st.one_of
    flattens nested choices, which would let the larger ones crowd out the rest)."""
    return st.sampled_from(options).flatmap(lambda option: option)


INT32 = st.one_of(
    st.sampled_from([0, 1, 2, 3, -1, 999, 1000, 1001, 2**31 - 1, -(2**31)]),
    st.integers(-(2**31), 2**31 - 1),
)
UINT32 = st.one_of(st.sampled_from([0, 1, 2, 1000, 2**31, 2**32 - 1]), st.integers(0, 2**32 - 1))
INT64 = st.one_of(
    st.sampled_from([0, 1, -1, 2**63 - 1, -(2**63), 253402300799, -62135596800, 10**15]),
    st.integers(-(2**63), 2**63 - 1),
)
PAGE_SIZE = st.one_of(st.just(0), INT32)

# --- strings ----------------------------------------------------------------------------

ODD = [
    "",
    " ",
    "\x00",
    "\n",
    "a\n",
    "\r\n",
    "\t",
    "../../etc/passwd",
    "%00",
    "' OR 1=1 --",
    '"; DROP TABLE webhook; --',
    "null",
    "NaN",
    "\U0001f600",
    "\u202eevil",
    "\ufeff",
    "\uffff",
    "\U0010ffff",
    "İ",
    "ǅ",
    "ﬀ",
    "${jndi:ldap://x}",
    "{{7*7}}",
    "a" * 64,
    "a" * 65,
    "a" * 255,
    "a" * 256,
    "x" * 1000,
    "x" * 1001,
]


def _repeat(unit: str, size: int) -> str:
    """`unit` repeated to about `size` bytes of UTF-8."""
    return unit * max(1, size // len(unit.encode()))


# Up to a megabyte; requests stay under gRPC's 4 MiB message limit unless several
# fields are huge at once (the property allows RESOURCE_EXHAUSTED only then).
HUGE = st.builds(_repeat, st.text(min_size=1, max_size=3), st.sampled_from([2_049, 20_000, 70_000, 1_000_000]))
SMALL_TEXT = st.one_of(
    st.text(max_size=24),
    st.text(alphabet=string.printable, max_size=24),
    st.sampled_from(ODD),
)
TEXT = pick(SMALL_TEXT, SMALL_TEXT, SMALL_TEXT, SMALL_TEXT, SMALL_TEXT, HUGE)

ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
KINDS = ("webhook", "flow", "job", "delivery", "event", "attempt")
MANGLES = ("", "", "", "", "upper", "suffix", "space", "newline", "nul", "chop", "flip", "double")


def refs(kind: str) -> st.SearchStrategy[Ref]:
    return st.builds(Ref, st.just(kind), st.integers(0, 30), st.booleans(), st.sampled_from(MANGLES))


FAKE_ID = st.builds(
    lambda prefix, body: f"{prefix}_{body}",
    st.sampled_from(["wh", "flow", "job", "dlv", "evt", "att", "sp", "key", "WH", "x"]),
    st.one_of(
        st.text(alphabet=ID_ALPHABET, min_size=26, max_size=26),
        st.text(max_size=30),
    ),
)


def ident(kind: str) -> st.SearchStrategy[Any]:
    """An id or alias field: mostly real ones of `kind`, else ones of another
    kind, id-shaped fakes and hostile text."""
    own = refs(kind)
    other = st.sampled_from(KINDS).flatmap(refs)
    return pick(own, own, own, own, other, FAKE_ID, TEXT)


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return pick(st.none(), strategy)


# Valid aliases are made unique when the request is built (Fresh), so a replayed
# example does not collide with itself; duplicates come from aliases of existing
# resources (Ref with by_alias).
ALIAS_START = st.from_regex(r"[A-Za-z][A-Za-z0-9_.\-]{0,20}", fullmatch=True)
ALIAS = pick(
    st.builds(Fresh, ALIAS_START),
    st.builds(Fresh, ALIAS_START),
    st.builds(Fresh, ALIAS_START, st.sampled_from(["\n", "\r\n", " ", "\x00", "/x", "ü"])),
    refs("webhook").map(lambda r: Ref(r.kind, r.index, True)),
    refs("flow").map(lambda r: Ref(r.kind, r.index, True)),
    FAKE_ID,
    TEXT,
)

# --- URLs -------------------------------------------------------------------------------

HOSTS = [
    "127.0.0.1",
    "localhost",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[::127.0.0.1]",
    "0x7f000001",
    "2130706433",
    "017700000001",
    "0177.0.0.1",
    "127.1",
    "169.254.169.254",
    "10.0.0.1",
    "100.64.0.1",
    "0.0.0.0",
    "224.0.0.1",
    "[fe80::1%25eth0]",
    "[fc00::1]",
    "[::]",
    "example.com",
    "example.com.",
    "ex ample.com",
    "münchen.de",
    "xn--mnchen-3ya.de",
    "a" * 300,
    "",
    "user:pw@example.com",
    "user@example.com",
    "example.com\\@evil.example",
    "example..com",
    "exa%6dple.com",
    "xn--zz.com",
    "example.com:0",
    "@",
    "[",
    "[::1",
    "host:0",
    "host:65535",
    "host:65536",
    "host:99999999999",
    "host:-1",
    "host:port",
]
SCHEMES = ["http", "https", "HTTP", "hTtPs", "ftp", "file", "javascript", "data", "gopher", "ws", "", "http:"]
PATHS = ["", "/", "/hook", "/a b", "/\x00", "/?q=1#frag", "/" + "p" * 2100, "/\U0001f600", "/%zz", "\\evil"]

WEIRD_URL = st.builds(
    lambda scheme, sep, host, path: f"{scheme}{sep}{host}{path}",
    st.sampled_from(SCHEMES),
    st.sampled_from(["://", ":", ":///", "//", "://\t"]),
    st.one_of(st.sampled_from(HOSTS), st.text(max_size=12)),
    st.sampled_from(PATHS),
)
URL = pick(
    st.builds(Hook, st.sampled_from(["/ok", "/ok?x=1", "/fail", "/fine/ünï", "/%41"])),
    st.builds(Hook, st.text(alphabet=string.ascii_letters + "/-_.~%?=&", max_size=30).map(lambda p: "/" + p)),
    WEIRD_URL,
    WEIRD_URL,
    st.builds(lambda n: "https://example.com/" + "a" * n, st.sampled_from([2028, 2029, 10_000, 1_000_000])),
    TEXT,
)

# --- event types, headers, secrets --------------------------------------------------------

EVENT_TYPE = pick(
    st.sampled_from(EVENT_TYPES),
    st.sampled_from(EVENT_TYPES),
    st.sampled_from(["job.completed", "JOB.*", "*", "JOB", "JOB.COMPLETED ", "JOB..COMPLETED", ""]),
    TEXT,
)
EVENT_TYPE_LIST = pick(
    st.lists(st.sampled_from(EVENT_TYPES), min_size=1, max_size=4),
    st.lists(st.sampled_from(EVENT_TYPES), min_size=1, max_size=4),
    st.lists(EVENT_TYPE, max_size=5),
    st.builds(
        lambda count, names: (list(names) * count)[:count],
        st.sampled_from([64, 65, 1000, 5000]),
        st.lists(pick(st.sampled_from(EVENT_TYPES), SMALL_TEXT), min_size=1, max_size=3),
    ),
)

HEADER_NAME = st.one_of(
    st.from_regex(r"X-[A-Za-z0-9-]{1,12}", fullmatch=True),
    st.sampled_from(
        [
            "Content-Type",
            "content-length",
            "HOST",
            "webhook-signature",
            "Webhook-Id",
            "User-Agent",
            "Transfer-Encoding",
            "",
            " ",
            "X-A\n",
            "X-A\r\nX-B",
            "bad header",
            "X:Y",
            "X-Ü",
            "X-A\x00",
            "X-(",
        ]
    ),
    TEXT,
)
HEADER_VALUE = st.one_of(
    st.text(alphabet=string.ascii_letters + string.digits + " -_", max_size=20),
    st.sampled_from(["", "line\r\nX-Evil: 1", "\n", "a\x00b", "ünï", "\U0001f600", "a" * 4096, "a" * 4097, "\t v "]),
    TEXT,
)
HEADERS = pick(
    st.just({}),
    st.dictionaries(HEADER_NAME, HEADER_VALUE, max_size=4),
    st.builds(lambda n: {f"X-H{i}": "v" for i in range(n)}, st.sampled_from([32, 33, 500])),
)

SECRET = pick(
    st.just(""),
    st.just(""),
    st.binary(min_size=24, max_size=64).map(lambda b: "whsec_" + base64.b64encode(b).decode()),
    st.binary(max_size=8).map(lambda b: "whsec_" + base64.b64encode(b).decode()),
    st.sampled_from(["whsec_", "whsec_!!!", "whsec_" + "A" * 100_000, "sk_live_x", "whsec_====", "whsec_YQ"]),
    TEXT,
)

# --- JSON -------------------------------------------------------------------------------

NUMBER = st.one_of(
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e308, 5e-324, 2.0**53 + 1, float("nan"), float("inf"), -float("inf")]),
)
KEY = st.one_of(st.text(max_size=8), st.sampled_from(["", "0", "01", "4294967294", "4294967295", "__proto__", "a.b"]))
LEAF = st.one_of(st.none(), st.booleans(), NUMBER, SMALL_TEXT, st.just(UNSET))
TREE = st.recursive(
    LEAF,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(KEY, children, max_size=4)),
    max_leaves=20,
)


def nest(depth: int, kinds: str, leaf: Any) -> Any:
    """`leaf` inside `depth` levels of lists and objects, cycling through `kinds`."""
    doc = leaf
    for level in range(depth):
        doc = [doc] if kinds[level % len(kinds)] == "l" else {"k": doc}
    return doc


DEEP = st.builds(nest, st.integers(1, 60), st.text(alphabet="lo", min_size=1, max_size=3), LEAF)
# Over the 1 MiB limit on a job's input (as JSON).
OVERSIZED = st.builds(
    lambda unit, count: [_repeat(unit, 1000)] * count, st.text(min_size=1, max_size=2), st.sampled_from([1100, 1300])
)
JSON_VALUE = pick(TREE, TREE, TREE, DEEP, OVERSIZED, st.just(UNSET))
JSON_OBJECT = st.one_of(st.dictionaries(KEY, TREE, max_size=5), DEEP.map(lambda d: {"deep": d}))

# --- JMESPath that yields odd values ------------------------------------------------------
#
# A JMESPath `...` literal is JSON read by Python's json module, which takes what
# JSON text in UTF-8 cannot carry back out: unpaired surrogates ("\ud800"), NaN,
# Infinity, numbers past a double's range, integers of hundreds of digits. So do
# to_number() and sum(). Jobs whose steps make such values must end (COMPLETED or
# ERROR with a message) and read back like any other.

ODD_NUMBERS = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "-1e400",
    "1e-400",
    "-0",
    "9" * 400,
    "-" + "9" * 309,
    "12345678901234567890123",
    "9007199254740993",
    "1e21",
    "5e-324",
    "1.7976931348623157e308",
    "0.1",
]
SURROGATE = st.integers(0xD800, 0xDFFF).map(lambda c: f"\\u{c:04x}")
# Pieces of a JSON string literal's text (no backtick: it would end the literal).
STRING_PIECE = pick(
    SURROGATE,
    SURROGATE,
    st.sampled_from(["\\ud83d\\ude00", "\\u0000", "\\u001f", '\\"', "\\\\", "\\n", "ü", "😀", "\\uffff", "\\ufeff"]),
    st.text(alphabet=st.characters(exclude_characters='`"\\', exclude_categories=("Cs", "Cc")), max_size=4),
)
STRING_LITERAL = st.lists(STRING_PIECE, max_size=4).map(lambda pieces: '"' + "".join(pieces) + '"')
NUMBER_LITERAL = st.one_of(
    st.sampled_from(ODD_NUMBERS), st.floats(allow_nan=False, allow_infinity=False).map(repr), st.integers().map(str)
)
LITERAL = st.recursive(
    st.one_of(STRING_LITERAL, NUMBER_LITERAL, st.sampled_from(["null", "true", "false", "[]", "{}"])),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda items: "[" + ", ".join(items) + "]"),
        st.lists(st.tuples(STRING_LITERAL, inner), max_size=3).map(
            lambda members: "{" + ", ".join(f"{key}: {value}" for key, value in members) + "}"
        ),
    ),
    max_leaves=6,
)
ODD_EXPRESSION = pick(
    LITERAL.map(lambda text: f"`{text}`"),
    LITERAL.map(lambda text: f"`{text}`"),
    st.builds(lambda a, b: f"[@, `{a}`, `{b}`]", LITERAL, LITERAL),
    st.builds(lambda key, text: f"{{{key}: `{text}`, copy: @}}", STRING_LITERAL, LITERAL),  # a quoted key
    st.sampled_from(ODD_NUMBERS).map(lambda n: f"to_number('{n}')"),
    st.builds(lambda a, b: f"sum(`[{a}, {b}]`)", NUMBER_LITERAL, NUMBER_LITERAL),
    STRING_LITERAL.map(lambda text: f"join('', `[{text}, {text}]`)"),
    st.sampled_from(
        [
            "@",
            "to_number(@)",
            "to_string(@)",
            "abs(@)",
            "length(@)",
            "sum(@)",
            "max(@)",
            "keys(@)",
            "values(@)",
            "sort(@)",
            "join('', @)",
            "[0]",
            "a",
            "merge(@, `{}`)",
            "not_null(@, `null`)",
            "{list: [@], n: length(@)}",
        ]
    ),
)


def _sendable_message(text: str) -> bool:
    """A fail_if message a client can send (protobuf strings are UTF-8) and a flow takes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return bool(text.strip())


# Steps that parse: what they make at run time is the point.
RUNNABLE_STEP = pick(
    st.fixed_dictionaries({"transform": ODD_EXPRESSION}),
    st.fixed_dictionaries({"transform": ODD_EXPRESSION}),
    st.fixed_dictionaries(
        {"fail_if": ODD_EXPRESSION},
        optional={"message": st.one_of(STRING_LITERAL.map(json.loads), SMALL_TEXT).filter(_sendable_message)},
    ),
    st.fixed_dictionaries({"sleep_ms": st.integers(0, 5)}),
)
RUNNABLE_DEFINITION = st.fixed_dictionaries({"steps": st.lists(RUNNABLE_STEP, min_size=1, max_size=4)})
# A job input as protobuf carries it: finite numbers, text without surrogates.
INPUT = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.integers(-(2**53), 2**53),
        SMALL_TEXT,
    ),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(KEY, children, max_size=4)),
    max_leaves=12,
)

# --- flow definitions ---------------------------------------------------------------------

EXPRESSION = st.one_of(
    st.sampled_from(
        [
            "@",
            "a",
            "a.b",
            "{x: a, y: `1`}",
            "length(@)",
            "[0]",
            "a == `1`",
            "`false`",
            "foo[?",
            "a ==",
            "nosuchfn(a)",
            "",
            "`" + "[" * 500 + "`",
            "a" + ".a" * 2000,
            "&@",
            "sort_by(@, &a)",
        ]
    ),
    SMALL_TEXT,
    ODD_EXPRESSION,
)
SLEEP = st.one_of(
    st.integers(0, 20), st.sampled_from([-1, 1.5, 1e300, float("nan"), float("inf"), 86_400_001, "10", None, True])
)
STEP = pick(
    st.fixed_dictionaries({"transform": EXPRESSION}),
    st.fixed_dictionaries({"transform": EXPRESSION}),
    st.fixed_dictionaries({"sleep_ms": SLEEP}),
    st.fixed_dictionaries({"fail_if": EXPRESSION}, optional={"message": SMALL_TEXT}),
    st.sampled_from([{}, {"transform": "a", "sleep_ms": 1}, {"explode": "now"}, [], "transform", None]),
    st.dictionaries(KEY, TREE, max_size=3),
)
SCHEMA = st.one_of(
    st.sampled_from(
        [
            {"type": "object"},
            {"type": "object", "required": ["a"], "properties": {"a": {"type": "number"}}},
            {"type": "no-such-type"},
            {"type": "string", "pattern": "("},
            {"type": "string", "format": "date-time"},
            {"$ref": "#/definitions/missing"},
            {"$ref": "http://127.0.0.1:1/schema.json"},
            {"$ref": "#"},
            {"minimum": "x"},
            {"enum": []},
            {"$schema": "http://example.com/unknown-meta"},
            True,
            False,
            [],
            "object",
        ]
    ),
    JSON_OBJECT,
)
DEFINITION = pick(
    st.fixed_dictionaries(
        {"steps": st.lists(STEP, max_size=4)},
        optional={"timeout_seconds": st.one_of(st.integers(1, 60), NUMBER, SMALL_TEXT), "input_schema": SCHEMA},
    ),
    st.fixed_dictionaries({"steps": st.lists(STEP, max_size=4)}),
    st.builds(lambda n: {"steps": [{"transform": "@"}] * n}, st.sampled_from([100, 101, 5000])),
    st.builds(lambda d: {"steps": [], "input_schema": {"enum": [d]}}, DEEP),
    JSON_OBJECT,
)

# --- times, masks, tokens, cursors ------------------------------------------------------------

NANOS = st.one_of(st.integers(0, 999_999_999), st.integers(-(2**31), 2**31 - 1))
# Mostly valid times (years 1 to 9999, recent ones often), else any int64 and int32.
VALID_TIME = st.builds(
    Time,
    st.one_of(st.integers(1_700_000_000, 1_900_000_000), st.integers(-62135596800, 253402300799)),
    st.integers(0, 999_999_999),
)
TIME = optional(pick(VALID_TIME, VALID_TIME, st.builds(Time, INT64, NANOS)))
SPAN = optional(st.builds(Span, INT64, NANOS))


def mask(writable: tuple[str, ...]) -> st.SearchStrategy[Any]:
    path = st.one_of(
        st.sampled_from(writable),
        st.sampled_from(["id", "secret", "version", "create_time", "webhook.url", "flow.name", "*", "", "URL"]),
        TEXT,
    )
    return optional(st.builds(lambda paths: Mask(tuple(paths)), st.lists(path, max_size=4)))


PAGE_TOKEN = pick(
    st.just(""),
    st.just(""),
    st.builds(Token, st.integers(0, 20)),
    st.builds(Token, st.integers(0, 20), st.sampled_from(["flip", "chop", "suffix", "upper", "double", "space"])),
    st.builds(Token, st.integers(0, 20), st.just("forge"), st.one_of(TEXT, st.integers(), st.none(), TREE)),
    st.builds(lambda data: base64.urlsafe_b64encode(data).decode(), st.binary(max_size=40)),
    st.builds(
        lambda a, f: base64.urlsafe_b64encode(f'{{"a": "{a}", "f": "{f}"}}'.encode()).decode(),
        st.text(alphabet=string.ascii_letters, max_size=10),
        st.text(alphabet="0123456789abcdef", max_size=16),
    ),
    TEXT,
)
CURSOR = pick(
    st.just(""),
    st.builds(Cursor),
    st.builds(Cursor, st.sampled_from(["flip", "chop", "suffix", "upper", "double"])),
    st.builds(
        lambda text: base64.urlsafe_b64encode(text.encode()).decode().rstrip("="),
        st.one_of(
            st.integers().map(lambda n: f"c1:{n}"),
            st.integers(-(2**80), 2**80).map(lambda n: f"c1:{n}"),
            st.sampled_from(["c1:", "c1:-1", "c1:0", "c1:1e5", "c1:١٢", "c2:1", ":", "c1:0x10", "c1: 1"]),
        ),
    ),
    TEXT,
)

# --- resources ----------------------------------------------------------------------------

WEBHOOK_FIELDS = ("alias", "url", "description", "enabled", "event_types", "headers", "rate_limit_per_s")
FLOW_FIELDS = ("alias", "name", "description", "definition", "webhook_ids")


def webhook(with_id: bool) -> st.SearchStrategy[Any]:
    return st.builds(
        lambda **fields: msg(Webhook, **fields),
        id=ident("webhook") if with_id else optional(FAKE_ID),
        alias=optional(ALIAS) if with_id else ALIAS,
        url=optional(URL) if with_id else URL,
        description=optional(TEXT),
        enabled=st.one_of(st.none(), st.booleans()),
        event_types=optional(EVENT_TYPE_LIST) if with_id else EVENT_TYPE_LIST,
        headers=optional(HEADERS),
        rate_limit_per_s=optional(UINT32),
        disabled_reason=optional(SMALL_TEXT),
        create_time=optional(TIME),
    )


def webhook_refs() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(ident("webhook"), max_size=4),
        st.builds(lambda n: [Ref("webhook", i) for i in range(n)], st.sampled_from([100, 2000])),
    )


def flow(with_id: bool) -> st.SearchStrategy[Any]:
    return st.builds(
        lambda **fields: msg(Flow, **fields),
        id=ident("flow") if with_id else optional(FAKE_ID),
        alias=optional(ALIAS) if with_id else ALIAS,
        name=optional(TEXT),
        description=optional(TEXT),
        definition=optional(DEFINITION.map(lambda d: Json(d, struct=True))),
        version=optional(INT32),
        webhook_ids=optional(webhook_refs()),
    )


def watch_filters() -> st.SearchStrategy[dict[str, Any]]:
    """At most one filter mostly, sometimes several (which is invalid)."""
    one = pick(
        st.builds(lambda v: {"webhook_id": v}, ident("webhook")),
        st.builds(lambda v: {"flow_id": v}, ident("flow")),
        st.builds(lambda v: {"job_id": v}, ident("job")),
        st.just({}),
    )
    many = st.fixed_dictionaries({}, optional={"webhook_id": ident("webhook"), "flow_id": ident("flow")}) | (
        st.fixed_dictionaries({"job_id": ident("job"), "webhook_id": ident("webhook")})
    )
    return pick(one, one, one, many)


# --- one strategy per RPC -------------------------------------------------------------------


def _req(cls: type, **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.builds(lambda **values: msg(cls, **values), **fields)


# AIP-132 orders: the two the lists take, and anything else.
ORDER_BY = st.one_of(st.sampled_from(["create_time", "create_time desc", " CREATE_TIME  DESC "]), TEXT)

REQUESTS: dict[str, st.SearchStrategy[Any]] = {
    # WebhookService
    "CreateWebhook": _req(CreateWebhookRequest, webhook=webhook(with_id=False), secret=SECRET),
    "GetWebhook": _req(GetWebhookRequest, id=ident("webhook")),
    "ListWebhooks": _req(ListWebhooksRequest, page_size=PAGE_SIZE, page_token=PAGE_TOKEN),
    "UpdateWebhook": _req(UpdateWebhookRequest, webhook=webhook(with_id=True), update_mask=mask(WEBHOOK_FIELDS)),
    "DeleteWebhook": _req(DeleteWebhookRequest, id=ident("webhook")),
    "RotateWebhookSecret": _req(RotateWebhookSecretRequest, id=ident("webhook"), grace_period=SPAN),
    "SendTestEvent": _req(SendTestEventRequest, id=ident("webhook"), message=optional(TEXT)),
    "ListEventTypes": st.just(msg(ListEventTypesRequest)),
    "GetWebhookStats": _req(GetWebhookStatsRequest, id=ident("webhook"), window=SPAN),
    "GetDelivery": _req(GetDeliveryRequest, id=ident("delivery")),
    "ListDeliveries": _req(
        ListDeliveriesRequest,
        page_size=PAGE_SIZE,
        page_token=PAGE_TOKEN,
        webhook_id=optional(ident("webhook")),
        job_id=optional(ident("job")),
        event_id=optional(ident("event")),
        state=optional(INT32),
        created_after=TIME,
        created_before=TIME,
        event_type=optional(EVENT_TYPE),
        order_by=optional(ORDER_BY),
    ),
    "ListAttempts": _req(
        ListAttemptsRequest, delivery_id=ident("delivery"), page_size=PAGE_SIZE, page_token=PAGE_TOKEN
    ),
    "RetryDelivery": _req(RetryDeliveryRequest, id=ident("delivery")),
    "RecoverDeliveries": _req(RecoverDeliveriesRequest, webhook_id=ident("webhook"), since=TIME),
    "ListEvents": _req(
        ListEventsRequest,
        page_size=PAGE_SIZE,
        page_token=PAGE_TOKEN,
        event_type=optional(EVENT_TYPE),
        job_id=optional(ident("job")),
        flow_id=optional(ident("flow")),
        created_after=TIME,
        created_before=TIME,
    ),
    "GetEvent": _req(GetEventRequest, id=ident("event")),
    "WatchDeliveries": st.builds(
        lambda filters, cursor: msg(WatchDeliveriesRequest, cursor=cursor, **filters), watch_filters(), CURSOR
    ),
    # FlowService
    "CreateFlow": _req(CreateFlowRequest, flow=flow(with_id=False)),
    "GetFlow": _req(GetFlowRequest, id=ident("flow"), version=optional(INT32)),
    "ListFlows": _req(ListFlowsRequest, page_size=PAGE_SIZE, page_token=PAGE_TOKEN),
    "UpdateFlow": _req(UpdateFlowRequest, flow=flow(with_id=True), update_mask=mask(FLOW_FIELDS)),
    "DeleteFlow": _req(DeleteFlowRequest, id=ident("flow")),
    "SetFlowWebhooks": _req(SetFlowWebhooksRequest, flow_id=ident("flow"), webhook_ids=webhook_refs()),
    "AddFlowWebhook": _req(AddFlowWebhookRequest, flow_id=ident("flow"), webhook_id=ident("webhook")),
    "RemoveFlowWebhook": _req(RemoveFlowWebhookRequest, flow_id=ident("flow"), webhook_id=ident("webhook")),
    "ListFlowWebhooks": _req(
        ListFlowWebhooksRequest, flow_id=ident("flow"), page_size=PAGE_SIZE, page_token=PAGE_TOKEN
    ),
    # JobService
    "StartJob": _req(
        StartJobRequest,
        flow=ident("flow"),
        version=optional(st.one_of(st.sampled_from([0, 1, 2]), INT32)),
        input=optional(JSON_VALUE.map(Json)),
        correlation_id=optional(st.one_of(st.sampled_from(["c1", "pool"]), TEXT)),
        idempotency_key=optional(st.one_of(st.sampled_from(["k1", "k2"]), TEXT)),
    ),
    "GetJob": _req(GetJobRequest, id=ident("job")),
    "ListJobs": _req(
        ListJobsRequest,
        page_size=PAGE_SIZE,
        page_token=PAGE_TOKEN,
        flow_id=optional(ident("flow")),
        state=optional(INT32),
        correlation_id=optional(st.one_of(st.just("pool"), TEXT)),
        order_by=optional(ORDER_BY),
    ),
    "CancelJob": _req(CancelJobRequest, id=ident("job")),
    "CancelJobs": _req(CancelJobsRequest, flow_id=optional(ident("flow"))),
    "WatchJob": _req(WatchJobRequest, id=ident("job")),
}

"""Decode and validate a PDU for its room version into an `Event` (step 1 of the pipeline).

`decode_pdu` is the one gate untrusted event JSON passes through. It checks that the PDU is
valid for its room version — the server-server API's "Checks performed on receipt of a PDU",
check 1 ("Is a valid event, otherwise it is dropped"): the room version's event format
(`schemas.pdu`), the size limits (canonical JSON ≤ 65,536 bytes; ``room_id``, ``sender``,
``event_id``, ``type``, ``state_key`` ≤ 255 bytes; ≤ 20 ``prev_events``, ≤ 10
``auth_events``), and from v6 strict canonical JSON (integers within ±(2**53 - 1), no floats
anywhere in the event). It then computes the event ID (and, for a v12 create event, the room
ID). Signatures and content hashes are not checked here: the federation API verifies
signatures before producing the input, and `processor.matrix.hashing.check_content_hash` is
available to the caller that decides what to do with a mismatch.

It raises only `InvalidEvent`, whose message names the field and the problem in msgspec's
style ("Expected `str`, got `int` - at `$.room_id`"), whatever the bytes: not UTF-8 and
nested too deep (`schemas.untrusted`) included. Identifiers must not contain U+0000: they
are SQL text.

Speed matters (the target is 100k events/s on one core), so each piece of work is done once:

- fast path (v3+, a PDU with no unknown top-level keys — nearly all traffic): one decode
  into a Struct derived from the `schemas.pdu` Struct, with ``content`` and ``unsigned``
  decoded as objects and floats trapped by a hook (v6+); the JSON object is assembled from
  it (`msgspec.structs.asdict`), so nothing is decoded twice;
- careful path (v1/v2, unknown keys, anything the fast Struct refuses): a plain decode builds
  the JSON object and the `schemas.pdu` Struct validates the envelope; its verdict is final,
  and its msgspec error message is the one raised;
- then a few checks the Struct cannot express (identifier grammar, byte lengths of long
  IDs), integers range-checked only where nothing typed them, and the reference hash taken
  over the redacted object with the trusted encoder (the number checks are done).
"""

from __future__ import annotations

import hashlib
from binascii import b2a_base64
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final

import msgspec
from msgspec import UNSET, UnsetType

from processor.matrix.canonical_json import (
    MAX_SAFE_INTEGER,
    MIN_SAFE_INTEGER,
    check_canonical_value,
    encode_canonical_trusted,
)
from processor.matrix.events import Event
from processor.matrix.pdu_fields import (
    check_envelope,
    check_no_nul,
    ints_in_range,
    invalid,
    json_type,
    reroot,
)
from processor.matrix.redaction import (
    TYPES_WITH_PROTECTED_CONTENT,
    redacted_content,
    redacted_top_level_keys,
)
from processor.matrix.room_versions import (
    KNOWN_ROOM_VERSIONS,
    EventIdFormat,
    RedactionAlgorithm,
    RoomVersion,
)
from schemas.errors import EventTooLarge, InvalidEvent, SchemaError
from schemas.pdu import (
    MAX_PDU_BYTES,
    PduV1,
    PduV3,
    PduV11,
    PduV12,
)
from schemas.untrusted import check_json_bytes

__all__ = ["decode_pdu"]

_LEAVES: Final = (str, bool, type(None))
_FLOAT_MESSAGE: Final = "Float values are not allowed in this room version's canonical JSON"


def _reject_float(text: str) -> Any:
    raise ValueError(_FLOAT_MESSAGE)


# Decoders are built once: they are the expensive part to construct and hold no state.
_OBJECT_STRICT = msgspec.json.Decoder(dict[str, Any], float_hook=_reject_float)
_OBJECT_LENIENT = msgspec.json.Decoder(dict[str, Any])
_ENVELOPE_V1 = msgspec.json.Decoder(PduV1)
_ENVELOPE_V3 = msgspec.json.Decoder(PduV3)
_ENVELOPE_V11 = msgspec.json.Decoder(PduV11)
_ENVELOPE_V12 = msgspec.json.Decoder(PduV12)

#: Keys whose values the envelope check types fully (str/int/lists of str...), so the strict
#: integer walk can skip them. `content`, `unsigned` and unknown keys are walked; so is
#: `event_id` from v3, where it is an unknown key (see `_Plan.typed_keys`).
_TYPED_KEYS: Final = frozenset(
    {
        "event_id",
        "room_id",
        "sender",
        "type",
        "depth",
        "origin_server_ts",
        "prev_events",
        "auth_events",
        "hashes",
        "signatures",
        "state_key",
        "origin",
    }
)













def _decode_object(raw: bytes, strict: bool, root: str) -> dict[str, Any]:
    try:
        if strict:
            return _OBJECT_STRICT.decode(raw)
        return _OBJECT_LENIENT.decode(raw)
    except msgspec.ValidationError as e:
        if _FLOAT_MESSAGE in str(e):
            # Find the float's full path (msgspec names only array indices here). The
            # lenient decode may find the JSON malformed further on: that error then.
            try:
                lenient = _OBJECT_LENIENT.decode(raw)
            except msgspec.DecodeError as malformed:
                raise InvalidEvent(f"Invalid JSON: {malformed}", field=root) from None
            check_canonical_value(lenient, root=root)
        message, field = reroot(str(e), root)
        raise InvalidEvent(message, field=field) from None
    except msgspec.DecodeError as e:
        raise InvalidEvent(f"Invalid JSON: {e}", field=root) from None


def _fast_struct(schema: type[msgspec.Struct]) -> type[msgspec.Struct]:
    """The fast path's one-pass Struct for a PDU format: the schema Struct with ``content``
    and ``unsigned`` decoded as objects, ``hashes`` as a plain object, and unknown keys
    forbidden. It is stricter than the schema, never looser: whatever it refuses (an
    unknown key, an unusual ``hashes``) takes the two-pass path, whose verdict is final.
    """
    fields: list[tuple[str, Any, Any]] = []
    for field in msgspec.structs.fields(schema):
        field_type = field.type
        if field.name == "content":
            field_type = dict[str, Any]
        elif field.name == "unsigned":
            field_type = dict[str, Any] | UnsetType
        elif field.name == "hashes":
            field_type = dict[str, str]
        required = field.required and field.name != "unsigned"
        fields.append((field.name, field_type, msgspec.NODEFAULT if required else UNSET))
    return msgspec.defstruct(
        f"_Fast{schema.__name__}",
        [(name, t) if d is msgspec.NODEFAULT else (name, t, d) for name, t, d in fields],
        forbid_unknown_fields=True,
        gc=False,
    )


_FAST_STRUCTS: Final[dict[type[msgspec.Struct], type[msgspec.Struct]]] = {
    schema: _fast_struct(schema) for schema in (PduV3, PduV11, PduV12)
}


@dataclass(frozen=True, slots=True)
class _Plan:
    """What decoding a PDU of one room version needs, resolved once per version."""

    envelope_decoder: msgspec.json.Decoder[Any]
    #: The one-pass decoder of the fast path (v3+), or None (v1/v2 take the two-pass path).
    fast_decoder: msgspec.json.Decoder[Any] | None
    #: The fast Struct's optional fields, dropped from the object when absent.
    fast_optional: tuple[str, ...]
    in_event: bool
    #: `_TYPED_KEYS` as they apply to this version's format.
    typed_keys: frozenset[str]
    #: Top-level keys covered by the reference hash: the redaction keys minus signatures.
    reference_keys: frozenset[str]
    #: Typed keys the reference hash leaves out (signatures; origin from v11).
    typed_keys_dropped: tuple[str, ...]
    urlsafe: bool
    #: v1-v10: `redacts` is a top-level string; v11+: a content property.
    typed_redacts: bool
    #: v12: the create event has no room_id (MSC4291).
    room_id_from_create: bool
    #: v1-v11: room IDs are `!opaque:server`.
    room_id_has_server: bool


def _plan(version: RoomVersion) -> _Plan:
    decoder: msgspec.json.Decoder[Any]
    if version.event_id_format is EventIdFormat.IN_EVENT:
        decoder = _ENVELOPE_V1
    elif version.room_id_is_create_event_hash:
        decoder = _ENVELOPE_V12
    elif version.redaction is RedactionAlgorithm.V11:
        decoder = _ENVELOPE_V11
    else:
        decoder = _ENVELOPE_V3
    in_event = version.event_id_format is EventIdFormat.IN_EVENT
    typed_keys = _TYPED_KEYS if in_event else _TYPED_KEYS - {"event_id"}
    if version.redaction is not RedactionAlgorithm.V11:
        # v1-v10: a top-level string (v11+: an unknown key, walked like any other).
        typed_keys |= {"redacts"}
    reference_keys = redacted_top_level_keys(version) - {"signatures"}
    fast_decoder = None
    fast_optional: tuple[str, ...] = ()
    if not in_event:
        fast_type = _FAST_STRUCTS[decoder.type]
        fast_decoder = msgspec.json.Decoder(
            fast_type, float_hook=_reject_float if version.strict_canonical_json else None
        )
        fast_optional = tuple(
            f.name for f in msgspec.structs.fields(fast_type) if f.default is UNSET
        )
        # The fast path treats every key but content and unsigned as typed.
        fast_fields = {f.name for f in msgspec.structs.fields(fast_type)}
        assert fast_fields - {"content", "unsigned"} <= typed_keys, fast_fields - typed_keys
    return _Plan(
        envelope_decoder=decoder,
        fast_decoder=fast_decoder,
        fast_optional=fast_optional,
        in_event=in_event,
        typed_keys=typed_keys,
        reference_keys=reference_keys,
        typed_keys_dropped=tuple(sorted(typed_keys - reference_keys)),
        urlsafe=version.event_id_format is EventIdFormat.REFERENCE_HASH_URLSAFE,
        typed_redacts=version.redaction is not RedactionAlgorithm.V11,
        room_id_from_create=version.room_id_is_create_event_hash,
        room_id_has_server=not version.room_id_is_create_event_hash,
    )


_PLANS: Final = {version_id: _plan(v) for version_id, v in KNOWN_ROOM_VERSIONS.items()}
_sha256 = hashlib.sha256
_asdict = msgspec.structs.asdict
_CONTENT: Final = ("content",)
_CONTENT_AND_UNSIGNED: Final = ("content", "unsigned")
_URLSAFE: Final = bytes.maketrans(b"+/", b"-_")


def decode_pdu(
    raw: bytes | bytearray | memoryview | msgspec.Raw | Mapping[str, Any],
    version: RoomVersion,
    *,
    root: str = "$",
) -> Event:
    """Validate the PDU `raw` (JSON bytes, or an already-decoded JSON object) for room
    `version` and return it as an `Event` with its event ID computed.

    `root` prefixes the JSON paths in error messages (e.g. ``"$.event"`` when the PDU is
    nested in an input message). Raises only `InvalidEvent`.
    """
    try:
        data, event = _decode_any(raw, version, root)
    except (UnicodeDecodeError, RecursionError):
        # msgspec skips unknown keys without checking their UTF-8, and nesting is bounded
        # only by the recursion limit: name the field (an input's bytes were checked whole
        # by `decode_input`, so this is for bytes from anywhere else).
        if isinstance(raw, bytes | bytearray | memoryview | msgspec.Raw):
            try:
                check_json_bytes(bytes(raw), "PDU", root)
            except SchemaError as e:
                raise InvalidEvent(str(e).rpartition(" - at `")[0], field=e.field) from None
        raise InvalidEvent(
            "PDU cannot be decoded: not UTF-8, or nested too deep", field=root
        ) from None
    if b"\\u0000" in data:
        check_no_nul(event, root)
    return event


def _decode_any(
    raw: bytes | bytearray | memoryview | msgspec.Raw | Mapping[str, Any],
    version: RoomVersion,
    root: str,
) -> tuple[bytes, Event]:
    strict = version.strict_canonical_json
    if type(raw) is bytes:
        data = raw
    elif isinstance(raw, Mapping):
        # Already decoded: check every value (a Mapping may hold floats, NaN, Raw...), and
        # the size on the exact canonical bytes, then take the bytes path for the envelope.
        obj = raw if type(raw) is dict else dict(raw)
        check_canonical_value(obj, strict=strict, root=root)
        data = encode_canonical_trusted(obj)
        if len(data) > MAX_PDU_BYTES:
            raise invalid(
                f"PDU is {len(data)} bytes as canonical JSON, over the {MAX_PDU_BYTES} "
                "byte limit",
                "$",
                root,
                EventTooLarge,
            )
    elif isinstance(raw, bytearray | memoryview | msgspec.Raw):
        data = bytes(raw)
    else:
        raise invalid(
            f"Expected JSON bytes or a JSON object, got `{type(raw).__name__}`", "$", root
        )
    return data, _decode_bytes(data, version, strict, root)






def _check_envelope(data: bytes, pdu: dict[str, Any], plan: _Plan, root: str, strict: bool) -> None:
    check_envelope(data, pdu, plan.envelope_decoder, plan.room_id_has_server, root, strict)


def _decode_bytes(data: bytes, version: RoomVersion, strict: bool, root: str) -> Event:
    plan = _PLANS[version.id]
    envelope: Any = None
    if plan.fast_decoder is not None:
        # Fast path (v3+, no unknown keys): one decode builds the typed envelope and the
        # content, and the JSON object is assembled from it.
        try:
            envelope = plan.fast_decoder.decode(data)
        except msgspec.MsgspecError:
            envelope = None
    if envelope is not None:
        pdu: dict[str, Any] = _asdict(envelope)
        for name in plan.fast_optional:
            if pdu[name] is UNSET:
                del pdu[name]
        untyped: Collection[str] = _CONTENT_AND_UNSIGNED if "unsigned" in pdu else _CONTENT
        if "sha256" not in pdu["hashes"]:
            _check_envelope(data, pdu, plan, root, strict)
    else:
        pdu = _decode_object(data, strict, root)
        try:
            # Types, required fields and list limits, checked in C.
            envelope = plan.envelope_decoder.decode(data)
        except msgspec.ValidationError as e:
            message, field = reroot(str(e), root)
            raise InvalidEvent(message, field=field) from None
        untyped = pdu.keys() - plan.typed_keys  # normally {"content", "unsigned"}

    # What the Struct cannot say, checked cheaply; anything unusual (including an ID over
    # 63 characters, which may still be within 255 bytes) goes to `check_envelope` for the
    # exact verdict.
    content = pdu["content"]
    sender = envelope.sender
    event_type = envelope.type
    state_key = envelope.state_key
    depth = envelope.depth
    origin_server_ts = envelope.origin_server_ts
    room_id = envelope.room_id
    if plan.in_event:
        event_id = envelope.event_id
        prev_event_ids = tuple([ref[0] for ref in envelope.prev_events])
        auth_event_ids = tuple([ref[0] for ref in envelope.auth_events])
        ok = event_id[:1] == "$" and len(event_id) <= 63
    else:
        event_id = ""
        prev_event_ids = tuple(envelope.prev_events)
        auth_event_ids = tuple(envelope.auth_events)
        ok = True
    if not (
        ok
        and type(content) is dict
        and sender[:1] == "@"
        and sender.find(":") >= 2
        and sender[-1] != ":"
        and len(sender) <= 63
        and len(event_type) <= 63
        and (state_key is UNSET or len(state_key) <= 63)
        and depth <= MAX_SAFE_INTEGER
        and MIN_SAFE_INTEGER <= origin_server_ts <= MAX_SAFE_INTEGER
        and ("unsigned" not in untyped or type(pdu["unsigned"]) is dict)
        and (
            room_id is UNSET
            if plan.room_id_from_create and event_type == "m.room.create"
            else type(room_id) is str
            and room_id[:1] == "!"
            and len(room_id) <= 63
            and (not plan.room_id_has_server or room_id.find(":") >= 2)
        )
    ):
        _check_envelope(data, pdu, plan, root, strict)
    for event_ids in (prev_event_ids, auth_event_ids):
        for one_id in event_ids:
            if one_id[:1] != "$" or len(one_id) > 63:
                _check_envelope(data, pdu, plan, root, strict)
                break

    if strict:
        # v6+: every integer within ±(2**53 - 1). Floats were trapped while decoding and the
        # Struct typed the other keys (depth and origin_server_ts are range-checked above),
        # so only the untyped values are walked.
        for key in untyped:
            value = pdu[key]
            if type(value) is dict:
                # The top level inline: most content is a flat object of strings.
                for item in value.values():
                    kind = type(item)
                    if kind is str or kind is bool or item is None:
                        continue
                    if kind is int:
                        if MIN_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                            continue
                    elif ints_in_range(item):
                        continue
                    check_canonical_value(value, root=f"{root}.{key}")
            elif type(value) not in _LEAVES and not ints_in_range(value):
                check_canonical_value(value, root=f"{root}.{key}")

    if len(data) > MAX_PDU_BYTES:
        # Canonical JSON is never longer than the JSON it was decoded from, so only a long
        # input needs the exact measure.
        size = len(encode_canonical_trusted(pdu))
        if size > MAX_PDU_BYTES:
            raise invalid(
                f"PDU is {size} bytes as canonical JSON, over the {MAX_PDU_BYTES} byte limit",
                "$",
                root,
                EventTooLarge,
            )

    redacts: str | None
    if not plan.in_event:
        # The reference hash: the redacted object without signatures (and unsigned, which
        # redaction never keeps), encoded with the trusted encoder: numbers are checked.
        payload = pdu.copy()
        for key in plan.typed_keys_dropped:
            payload.pop(key, None)
        keep = plan.reference_keys
        for key in untyped:
            if key not in keep:
                del payload[key]
        if event_type in TYPES_WITH_PROTECTED_CONTENT:
            payload["content"] = redacted_content(event_type, content, version)
        elif content:
            payload["content"] = {}
        digest = _sha256(encode_canonical_trusted(payload)).digest()
        encoded = b2a_base64(digest, newline=False).rstrip(b"=")
        if plan.urlsafe:
            encoded = encoded.translate(_URLSAFE)
        event_id = "$" + encoded.decode("ascii")
        if plan.room_id_from_create and event_type == "m.room.create":
            # MSC4291: the create event has no room_id; the room ID is its event ID with
            # the `!` sigil.
            room_id = "!" + event_id[1:]
    if plan.typed_redacts:
        redacts = pdu.get("redacts")
    else:
        # v11+ (MSC2174): `redacts` is a content property of m.room.redaction.
        found = content.get("redacts") if event_type == "m.room.redaction" else None
        if found is not None and type(found) is not str:
            raise invalid(
                f"Expected `str`, got `{json_type(found)}`", "$.content.redacts", root
            )
        redacts = found

    return _new_event(
        event_id,
        room_id,
        sender,
        event_type,
        None if state_key is UNSET else state_key,
        content,
        prev_event_ids,
        auth_event_ids,
        depth,
        origin_server_ts,
        redacts,
        pdu,
    )


_EVENT_FIELDS: Final = (
    "event_id",
    "room_id",
    "sender",
    "type",
    "state_key",
    "content",
    "prev_event_ids",
    "auth_event_ids",
    "depth",
    "origin_server_ts",
    "redacts",
    "pdu",
)


def _event_constructor() -> Callable[..., Event]:
    """A positional `Event` constructor that fills the slots directly.

    `Event` is a frozen dataclass: its generated ``__init__`` sets each of its 12 fields via
    ``object.__setattr__``, which costs about a microsecond per event — a tenth of the
    decode budget. Setting the slot descriptors does the same in half the time. If `Event`
    ever changes shape (fields, order, a ``__post_init__``), fall back to the constructor.
    """
    if (
        getattr(Event, "__slots__", None) != _EVENT_FIELDS
        or hasattr(Event, "__post_init__")
        or tuple(Event.__dataclass_fields__) != _EVENT_FIELDS
    ):
        return Event
    setters = [Event.__dict__[name].__set__ for name in _EVENT_FIELDS]
    (s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11) = setters
    new = object.__new__

    def construct(
        a0: Any, a1: Any, a2: Any, a3: Any, a4: Any, a5: Any,
        a6: Any, a7: Any, a8: Any, a9: Any, a10: Any, a11: Any,
    ) -> Event:
        event = new(Event)
        s0(event, a0)
        s1(event, a1)
        s2(event, a2)
        s3(event, a3)
        s4(event, a4)
        s5(event, a5)
        s6(event, a6)
        s7(event, a7)
        s8(event, a8)
        s9(event, a9)
        s10(event, a10)
        s11(event, a11)
        return event

    return construct


_new_event: Final = _event_constructor()




"""Stream maps: a tenant's declarative transformations of one stream's records (issue 16).

A map is a small document (JSON or YAML), checked by :func:`parse` and turned by
:func:`compile_map` into a function applied to each record's data, after decode and before
shape, in plain Python. Nothing in it is evaluated: operations and predicates are data.

    filter:  {and: [{eq: [status, active]}, {not: {is_null: email}}]}   # rows to keep
    keep:    [id, email, status, [address, city]]                      # allow-list
    drop:    [ssn, [profile, pii]]
    hash:    [email]                     # HMAC-SHA256, hex, keyed by ``secret``
    mask:    {phone: "***", [card, number]: null}                       # in YAML: a list
    rename:  {email: email_hash}
    alias:   people                      # the stream (table) the records load into
    secret:  env:ACME_MAP_KEY            # by reference: env:NAME or file:/path

A path is a field name, or a list of names for a nested field; dots are not special. The
operations apply in the order above. A map never changes a value's type but where it says
so: a hash is a string, a mask is the value it gives. A record a map cannot apply to (a path
through something that is not an object, a hash of an object, a rename onto a field that is
there) is rejected with the reason; a record the filter drops is counted, never silent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import yaml

from spool import secrets

OPERATIONS = ("filter", "keep", "drop", "hash", "mask", "rename", "alias", "secret")
COMPARISONS = ("eq", "ne", "lt", "le", "gt", "ge")
PREDICATES = (*COMPARISONS, "in", "exists", "is_null", "and", "or", "not")
MAX_DEPTH = 32  # nested predicates or paths deeper than this are refused

Path = tuple[str, ...]


class MapError(ValueError):
    """A map that cannot be stored: the message says what is wrong and where."""


class CannotApply(ValueError):
    """A record this map cannot be applied to; the message names the path."""


class Inexact(Exception):
    """A number the fast decoder may have rounded (a float beyond 64-bit integer range)
    reached a hash or a comparison: decode the record exactly and apply the map again with
    ``exact=True``."""


# floats from the fast decoder this big may be rounded integers (spool.ingest.shape's
# BIG_FLOAT, which makes shaping ask for an exact decode too)
INEXACT_FLOAT = 9.2e18


@dataclass(frozen=True)
class StreamMap:
    """A checked map (:func:`parse`)."""

    filter: dict | None = None
    keep: tuple[Path, ...] | None = None
    drop: tuple[Path, ...] = ()
    hash: tuple[Path, ...] = ()
    mask: tuple[tuple[Path, object], ...] = ()
    rename: tuple[tuple[Path, str], ...] = ()
    alias: str | None = None
    secret: str | None = None
    source: dict = field(default_factory=dict, compare=False)  # the document as given

    def renamed_keys(self, key_names: tuple[str, ...], back: bool = False) -> tuple[str, ...]:
        """The key properties of mapped records: a renamed key field stays the key.
        ``back``: the other way, mapped records' key properties as they were sent."""
        pairs = [(path[0], new) for path, new in self.rename if len(path) == 1]
        renamed = {new: old for old, new in pairs} if back else dict(pairs)
        return tuple(renamed.get(k, k) for k in key_names)


# -- parsing and checking ------------------------------------------------------------------

def _no_twice(pairs: list) -> dict:
    seen = [k for k, _v in pairs]
    twice = sorted({k for k in seen if seen.count(k) > 1})
    if twice:
        raise MapError(f"{json.dumps(twice[0])} is given twice in one object; give it once")
    return dict(pairs)


def load_text(text: str) -> dict:
    """A map document from JSON or YAML text. Text that starts like JSON (``{`` or ``[``)
    is JSON or refused, with the line and column: YAML would read a slip of JSON (a trailing
    comma, say) as something else, and store a map without a rule."""
    start = text.lstrip()[:1]
    if start in ("{", "["):
        try:
            doc = json.loads(text, object_pairs_hook=_no_twice)
        except json.JSONDecodeError as exc:
            raise MapError(f"the map starts with {start} but is not JSON: line {exc.lineno} "
                           f"column {exc.colno}: {exc.msg}; fix it there (YAML is read only "
                           "from text that does not start with { or [)") from None
    else:
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise MapError(f"the map is not YAML: {exc}".splitlines()[0]) from None
    if not isinstance(doc, dict):
        raise MapError("a map is an object of operations: filter, keep, drop, hash, mask, "
                       "rename, alias, secret")
    return doc


def _path(value, where: str) -> Path:
    if isinstance(value, str) and value:
        return (value,)
    if isinstance(value, list) and value and len(value) <= MAX_DEPTH and \
            all(isinstance(p, str) and p for p in value):
        return tuple(value)
    raise MapError(f"{where}: {json.dumps(value)} is not a path: give a field name, or a list "
                   "of names for a nested field, say [address, city]")


def _paths(value, op: str) -> tuple[Path, ...]:
    if not isinstance(value, list) or not value:
        raise MapError(f"{op}: give a list of paths, say {op}: [ssn, [profile, pii]]")
    return tuple(_path(v, op) for v in value)


def _pairs(value, op: str) -> list[tuple[Path, object]]:
    """``{name: x}``, or a list of ``[path, x]`` (YAML keys cannot be lists)."""
    if isinstance(value, dict) and value:
        return [((k,), v) for k, v in value.items()]
    if isinstance(value, list) and value and all(isinstance(p, list) and len(p) == 2
                                                 for p in value):
        return [(_path(p, op), v) for p, v in value]
    raise MapError(f"{op}: give an object of field → value, or a list of [path, value] "
                   f"pairs, say {op}: {{phone: '***'}}")


def _predicate(node, depth: int = 0) -> dict:
    if depth > MAX_DEPTH:
        raise MapError(f"filter: nested deeper than {MAX_DEPTH}")
    if not isinstance(node, dict) or len(node) != 1:
        raise MapError(f"filter: {json.dumps(node)[:80]} is not a predicate: give one of "
                       f"{', '.join(PREDICATES)}, say {{eq: [status, active]}}")
    (op, arg), = node.items()
    if op in ("and", "or"):
        if not isinstance(arg, list) or not arg:
            raise MapError(f"filter: {op} takes a list of predicates")
        return {op: [_predicate(a, depth + 1) for a in arg]}
    if op == "not":
        return {op: _predicate(arg, depth + 1)}
    if op in ("exists", "is_null"):
        return {op: _path(arg, f"filter {op}")}
    if op in (*COMPARISONS, "in"):
        if not isinstance(arg, list) or len(arg) != 2:
            raise MapError(f"filter: {op} takes [path, value], say {{{op}: [status, active]}}")
        value = arg[1]
        if op == "in" and not isinstance(value, list):
            raise MapError("filter: in takes [path, [value, ...]]")
        if op in ("lt", "le", "gt", "ge") and (isinstance(value, bool) or
                                              not isinstance(value, int | float | str)):
            raise MapError(f"filter: {op} compares with a number or a string")
        return {op: (_path(arg[0], f"filter {op}"), value)}
    raise MapError(f"filter: unknown predicate {op!r}: use one of {', '.join(PREDICATES)}")


def parse(doc: dict, key_names: tuple[str, ...] = (), resolve_secret: bool = True) -> StreamMap:
    """Check a map document; raises MapError naming what is wrong. ``key_names``: the
    stream's key properties, which a map may hash or rename but not drop or mask."""
    unknown = sorted(set(doc) - set(OPERATIONS))
    if unknown:
        raise MapError(f"unknown operation {unknown[0]!r}: a map has "
                       f"{', '.join(OPERATIONS)}")
    if not any(k in doc for k in OPERATIONS if k != "secret"):
        raise MapError("the map has no operation")
    kw: dict = {"source": doc}
    if "filter" in doc:
        kw["filter"] = _predicate(doc["filter"])
    if "keep" in doc:
        kw["keep"] = _paths(doc["keep"], "keep")
    if "drop" in doc:
        kw["drop"] = _paths(doc["drop"], "drop")
    if "hash" in doc:
        kw["hash"] = _paths(doc["hash"], "hash")
    if "mask" in doc:
        pairs = _pairs(doc["mask"], "mask")
        for path, value in pairs:
            if isinstance(value, dict | list):
                raise MapError(f"mask {'.'.join(path)}: the value is a string, number, "
                               "boolean or null, not an object or a list")
        kw["mask"] = tuple(pairs)
    if "rename" in doc:
        pairs = _pairs(doc["rename"], "rename")
        for path, new in pairs:
            if not isinstance(new, str) or not new:
                raise MapError(f"rename {'.'.join(path)}: the new name is a non-empty string")
        kw["rename"] = tuple(pairs)
    if "alias" in doc:
        if not isinstance(doc["alias"], str) or not doc["alias"].strip():
            raise MapError("alias: the name of the stream to load into, a non-empty string")
        kw["alias"] = doc["alias"]
    if "secret" in doc:
        ref = doc["secret"]
        if not isinstance(ref, str) or not ref.startswith(("env:", "file:")):
            raise MapError("secret: give the key by reference, env:NAME or file:/path, never "
                           "the key itself")
        kw["secret"] = ref
    m = StreamMap(**kw)
    if m.hash and not m.secret:
        raise MapError("hash needs a secret: add secret: env:NAME (or file:/path), the key "
                       "the tenant's hashes are made with")
    if m.secret and resolve_secret:
        try:
            secrets.resolve(m.secret)
        except secrets.SecretError as exc:
            raise MapError(f"secret {m.secret}: {exc}") from None
    for key in key_names:
        lost = [op for op, paths in (("drop", m.drop), ("mask", [p for p, _ in m.mask]))
                if (key,) in paths]
        if m.keep is not None and (key,) not in m.keep:
            lost.append("keep (it is not in the list)")
        if lost:
            raise MapError(f"{lost[0]} would remove the key field {key!r}, and its records "
                           "could no longer be upserted; hash it instead, or leave it")
    return m


# -- what a new version changes -----------------------------------------------------------

@dataclass(frozen=True)
class Change:
    """One rule a new version adds (``+``), removes (``-``) or changes (``~``); ``loosens``:
    it lets a field into the warehouse that the old version kept out (a hash, mask or drop
    removed, a field added to keep, keep removed)."""

    sign: str
    text: str
    loosens: bool = False

    def __str__(self) -> str:
        return f"{self.sign} {self.text}"


def _shown(path: Path) -> str:
    return path[0] if len(path) == 1 else f"[{', '.join(path)}]"


def changes(old: StreamMap | None, new: StreamMap) -> list[Change]:
    """What ``new`` changes against ``old`` (None: no map), rule by rule, in the order the
    operations apply."""
    old = old or StreamMap()
    out: list[Change] = []
    for op in OPERATIONS:
        before, after = getattr(old, op), getattr(new, op)
        if op in ("keep", "drop", "hash"):
            a, b = before or (), after or ()
            if op == "keep" and (before is None) != (after is None):
                sign = "+" if after is not None else "-"
                out.append(Change(sign, f"keep [{', '.join(map(_shown, a or b))}]",
                                  loosens=sign == "-"))
                continue
            out += [Change("-", f"{op} {_shown(p)}", loosens=op != "keep")
                    for p in a if p not in b]
            out += [Change("+", f"{op} {_shown(p)}", loosens=op == "keep")
                    for p in b if p not in a]
        elif op in ("mask", "rename"):
            a, b = dict(before), dict(after)
            arrow = (lambda v: json.dumps(v)) if op == "mask" else str
            for path in (*a, *(p for p in b if p not in a)):
                if path not in b:
                    out.append(Change("-", f"{op} {_shown(path)}", loosens=op == "mask"))
                elif path not in a:
                    out.append(Change("+", f"{op} {_shown(path)}: {arrow(b[path])}"))
                elif a[path] != b[path]:
                    out.append(Change("~", f"{op} {_shown(path)}: {arrow(a[path])} → "
                                           f"{arrow(b[path])}"))
        else:  # filter, alias, secret: one value each
            a, b = (m.source.get(op) if op == "filter" else v
                    for m, v in ((old, before), (new, after)))
            if op == "filter":  # as written, not as checked
                a, b = (None if v is None else json.dumps(v, ensure_ascii=False)
                        for v in (a, b))
            if a != b:
                sign = "+" if a is None else "-" if b is None else "~"
                text = op if sign == "-" else f"{op}: {b}" if sign == "+" else \
                    f"{op}: {a} → {b}"
                out.append(Change(sign, text))
    return out


# -- applying ----------------------------------------------------------------------------

_MISSING = object()


def _get(record: dict, path: Path):
    node = record
    for i, name in enumerate(path):
        if not isinstance(node, dict):
            raise CannotApply(f"{_dotted(path[:i])} is not an object")
        node = node.get(name, _MISSING)
        if node is _MISSING:
            return _MISSING
    return node


def _parent(record: dict, path: Path) -> dict | None:
    """The object holding ``path``'s last name, to change: each object on the way is
    copied first (the record's own are never changed); None where a parent is missing."""
    node = record
    for i, name in enumerate(path[:-1]):
        child = node.get(name, _MISSING)
        if child is _MISSING or child is None:
            return None
        if not isinstance(child, dict):
            raise CannotApply(f"{_dotted(path[:i + 1])} is not an object")
        node[name] = child = dict(child)
        node = child
    return node


def _dotted(path: Path) -> str:
    return ".".join(path) or "the record"


def _comparable(a, b) -> bool:
    numbers = (int, float)
    return (isinstance(a, numbers) and not isinstance(a, bool) and
            isinstance(b, numbers) and not isinstance(b, bool)) or \
        (isinstance(a, str) and isinstance(b, str))


def _rounded(value, exact: bool) -> bool:
    return not exact and value.__class__ is float and \
        (value >= INEXACT_FLOAT or value <= -INEXACT_FLOAT)


def _holds(pred: dict, record: dict, exact: bool) -> bool:
    (op, arg), = pred.items()
    if op == "and":
        return all(_holds(p, record, exact) for p in arg)
    if op == "or":
        return any(_holds(p, record, exact) for p in arg)
    if op == "not":
        return not _holds(arg, record, exact)
    if op in ("exists", "is_null"):
        value = _get(record, arg)
        return value is not _MISSING if op == "exists" else value is _MISSING or value is None
    path, want = arg
    value = _get(record, path)
    if _rounded(value, exact):
        raise Inexact(_dotted(path))
    if op == "in":
        return value is not _MISSING and any(_equal(value, w) for w in want)
    if op == "eq":
        return value is not _MISSING and _equal(value, want)
    if op == "ne":
        return value is _MISSING or not _equal(value, want)
    if value is _MISSING or value is None:
        return False  # an ordering of nothing holds for no value, as in SQL
    if not _comparable(value, want):
        raise CannotApply(f"filter {op}: {_dotted(path)} is a {type(value).__name__}, "
                          f"compared with a {type(want).__name__}")
    return {"lt": value < want, "le": value <= want, "gt": value > want,
            "ge": value >= want}[op]


def _equal(a, b) -> bool:
    """Equal as JSON values: 1 equals 1.0, but not True, and not "1"."""
    if _comparable(a, b):
        return a == b
    return type(a) is type(b) and a == b


def _hashed(key: bytes, value, path: Path, exact: bool) -> str | None:
    if value is None:
        return None
    if _rounded(value, exact):
        raise Inexact(_dotted(path))
    if isinstance(value, dict | list):
        raise CannotApply(f"hash {_dotted(path)}: the value is an "
                          f"{'object' if isinstance(value, dict) else 'array'}; hash its "
                          "fields instead")
    text = value if isinstance(value, str) else json.dumps(value)
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def _keep_only(record: dict, paths: tuple[Path, ...]) -> dict:
    out: dict = {}
    for path in paths:
        value = _get(record, path)
        if value is _MISSING:
            continue
        node = out
        for name in path[:-1]:
            node = node.setdefault(name, {})
        node[path[-1]] = value
    return out


@dataclass(frozen=True)
class Applied:
    """What a map made of one record: ``data`` (None when the filter dropped it), the
    stream it loads into, and its key properties as renamed (a renamed key stays the key)."""

    data: dict | None
    stream: str
    key_names: tuple[str, ...] = ()


def compile_map(m: StreamMap, stream: str,
                resolve: Callable[[str], str] = secrets.resolve
                ) -> Callable[..., Applied]:
    """The map as one function of a record's data and key properties (a new dict; the input
    is not changed). Raises CannotApply for a record it cannot be applied to, and Inexact
    (unless ``exact``) where a number the decoder may have rounded would be hashed or
    compared."""
    key = resolve(m.secret).encode() if m.hash else b""
    target = m.alias or stream
    renames_a_key = any(len(path) == 1 for path, _new in m.rename)
    keys_as_renamed: dict[tuple[str, ...], tuple[str, ...]] = {}

    def apply(data: dict, key_names: tuple[str, ...] = (), exact: bool = True) -> Applied:
        if renames_a_key and key_names:
            renamed = keys_as_renamed.get(key_names)
            if renamed is None:
                renamed = keys_as_renamed[key_names] = m.renamed_keys(key_names)
            key_names = renamed
        if m.filter is not None and not _holds(m.filter, data, exact):
            return Applied(None, target, key_names)
        out = _keep_only(data, m.keep) if m.keep is not None else dict(data)
        for path in m.drop:
            parent = _parent(out, path)
            if parent is not None:
                parent.pop(path[-1], None)
        for path in m.hash:
            parent = _parent(out, path)
            if parent is not None and path[-1] in parent:
                parent[path[-1]] = _hashed(key, parent[path[-1]], path, exact)
        for path, value in m.mask:
            parent = _parent(out, path)
            if parent is not None and path[-1] in parent:
                parent[path[-1]] = value
        for path, new in m.rename:
            parent = _parent(out, path)
            if parent is not None and path[-1] in parent:
                if new in parent and new != path[-1]:
                    raise CannotApply(f"rename {_dotted(path)} to {new}: the record has a "
                                      f"field {new} already")
                parent[new] = parent.pop(path[-1])
        for k in key_names:
            if k not in out:  # `maps set` refuses such maps when it knows the keys; a
                # stream it had not seen may meet one
                raise CannotApply(f"the map removes the key field {k}, and the record "
                                  "could not be upserted")
        return Applied(out, target, key_names)

    return apply

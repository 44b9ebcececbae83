"""url-parts in Python: from `data.url` adds `data.host`, `data.path` and
`data.query` (an object of the query parameters, percent-decoded). An
unparsable URL is a non-retryable error that names the value. Events without
a string `data.url` pass unchanged. No config. The same outputs as the Rust
plugins/url-parts (the same rules, ported)."""

from sluice_sdk import Rejected, Stage, export

# Rust's char::is_whitespace (Unicode White_Space), which str.isspace is not.
_WHITESPACE = frozenset("\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
_FORBIDDEN = frozenset('<>"{}|\\^`') | _WHITESPACE
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.")
_HEX = "0123456789abcdefABCDEF"


def _first_of(text, chars, start=0):
    """The index of the first of `chars` in text[start:], or len(text)."""
    best = len(text)
    for c in chars:
        at = text.find(c, start, best)
        if at != -1:
            best = at
    return best


def split_url(url):
    """(host, path, query or None) of an absolute URL, or None: the rules of
    the Rust url-parts' split_url."""
    scheme_end = url.find("://")
    if scheme_end <= 0:
        return None
    scheme = url[:scheme_end]
    if not ("a" <= scheme[0].lower() <= "z" and scheme[0].isascii()) or not all(c in _SCHEME_CHARS for c in scheme):
        return None
    start = scheme_end + 3
    authority_end = _first_of(url, "/?#", start)
    host_start = url.rfind("@", start, authority_end) + 1 or start
    host_port = url[host_start:authority_end]
    if host_port.startswith("["):
        close = host_port.find("]")
        if close == -1:
            return None
        host = host_port[:close + 1]
    else:
        colon = host_port.find(":")
        host = host_port if colon == -1 else host_port[:colon]
    if not host or any(c in _FORBIDDEN for c in host):
        return None
    rest = host_port[len(host):]
    if rest.startswith(":"):
        port = rest[1:]
        if port and not _is_u16(port):
            return None
    tail_end = url.find("#", authority_end)
    tail = url[authority_end:] if tail_end == -1 else url[authority_end:tail_end]
    q = tail.find("?")
    path, query = (tail, None) if q == -1 else (tail[:q], tail[q + 1:])
    return host, path or "/", query


def _is_u16(text):
    """What Rust's `text.parse::<u16>().is_ok()` answers."""
    digits = text[1:] if text.startswith("+") else text
    return bool(digits) and digits.isascii() and digits.isdigit() and int(digits) <= 65535


def percent_decode(text):
    """Decodes %XX escapes and `+` (as a space); a `%` without two hex
    digits stays; bytes that are not UTF-8 become U+FFFD."""
    if "%" not in text:
        return text.replace("+", " ")
    raw = text.encode("utf-8")
    out = bytearray()
    i, n = 0, len(raw)
    while i < n:
        b = raw[i]
        if b == 0x2B:
            out.append(0x20)
        elif b == 0x25 and i + 2 < n + 0 and chr(raw[i + 1]) in _HEX and chr(raw[i + 2]) in _HEX:
            out.append(int(raw[i + 1:i + 3], 16))
            i += 2
        else:
            out.append(b)
        i += 1
    return out.decode("utf-8", "replace")


def query_object(query):
    """The query parameters as a dict: keys sorted, the last value of a
    repeated key."""
    pairs = {}
    for pair in query.split("&"):
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        pairs[percent_decode(key)] = percent_decode(value)
    return dict(sorted(pairs.items()))


def _rust_debug(text):
    """A string as Rust's `{:?}` writes it (for the same error message)."""
    out = ['"']
    for c in text:
        if c in '"\\':
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif c == "\r":
            out.append("\\r")
        elif c == "\t":
            out.append("\\t")
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append("\\u{%x}" % ord(c))
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


class UrlParts(Stage):
    def __init__(self, config):
        if config:
            raise ValueError("invalid config: unknown field `%s`, there are no fields" % sorted(config)[0])

    def process(self, event, ctx):
        url = event.get("url")
        if not isinstance(url, str):
            return None
        parts = split_url(url)
        if parts is None:
            raise Rejected("data.url is not a valid absolute URL: %s" % _rust_debug(url))
        host, path, query = parts
        if any("A" <= c <= "Z" for c in host):
            host = "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in host)
        event.set_fields({"host": host, "path": path, "query": query_object(query or "")})
        return None


export(UrlParts)

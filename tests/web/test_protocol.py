from sandbox.web.protocol import RequestHeaders


def headers_of(*fields: tuple[str, str]) -> RequestHeaders:
    headers = RequestHeaders()
    for name, value in fields:
        headers.add(name, value)
    return headers


def test_a_name_finds_its_first_value_in_any_case():
    headers = headers_of(("X-Tag", "a"), ("x-tag", "b"), ("Host", "h"))
    assert headers.get("x-TAG") == "a"
    assert headers.get("HOST") == "h"
    assert headers.get("Missing") is None
    assert headers.get("Missing", "default") == "default"
    assert headers.fields == [("X-Tag", "a"), ("x-tag", "b"), ("Host", "h")]


def test_replace_leaves_one_field_of_the_name():
    headers = headers_of(("Content-Length", "4"), ("Host", "h"), ("content-length", "4"))
    headers.replace("Content-Length", "4")
    assert headers.fields == [("Host", "h"), ("Content-Length", "4")]
    headers.replace("Content-Length", "5")
    assert headers.get("content-length") == "5"

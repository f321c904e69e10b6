"""MkDocs hook: the study spec reference, rendered from the spec's JSON Schema at build time.

`docs/spec-reference.md` holds the prose and a marker line; this hook replaces the marker with one
table per spec model, walking `Study.model_json_schema()` (what `distsim schema` prints) from the
top-level study down. The field descriptions therefore live once, in the models.
"""

from __future__ import annotations

from typing import Any

MARKER = "<!-- spec-schema -->"


def _anchor(name: str) -> str:
    return "spec-" + name.lower()


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _number(x: Any) -> str:
    if isinstance(x, int) and x >= 2**20 and x & (x - 1) == 0:
        return f"2^{x.bit_length() - 1}"
    if isinstance(x, float) and x.is_integer() and abs(x) >= 1e6:
        return f"{x:.0e}".replace("e+0", "e").replace("e+", "e")
    if isinstance(x, int) and abs(x) >= 1e6:
        return f"{x:,}"
    return str(x)


def _constraints(s: dict[str, Any]) -> list[str]:
    out = []
    for key, sign in (
        ("exclusiveMinimum", "> "),
        ("minimum", ">= "),
        ("exclusiveMaximum", "< "),
        ("maximum", "<= "),
    ):
        if key in s:
            out.append(sign + _number(s[key]))
    for key, what in (("minLength", "length >= "), ("maxLength", "length <= ")):
        if key in s:
            out.append(what + str(s[key]))
    for key, what in (
        ("minItems", "items >= "),
        ("maxItems", "items <= "),
        ("minProperties", "entries >= "),
    ):
        if key in s:
            out.append(what + str(s[key]))
    if "pattern" in s:
        out.append(f"matches `{s['pattern']}`")
    return out


def _type(s: dict[str, Any]) -> str:
    """A schema as a short phrase with links to the models it names."""
    if "$ref" in s:
        name = _ref_name(s["$ref"])
        return f"[{name}](#{_anchor(name)})"
    for key in ("oneOf", "anyOf"):
        if key in s:
            options = [_type(o) for o in s[key] if o.get("type") != "null"]
            text = " or ".join(options)
            if any(o.get("type") == "null" for o in s[key]):
                text += " or null"
            return text
    if "const" in s:
        return f"`{s['const']!r}`".replace("'", '"')
    if "enum" in s:
        return "one of " + ", ".join(f'`"{v}"`' for v in s["enum"])
    kind = s.get("type")
    if kind == "array":
        inner = _type(s.get("items", {})) if s.get("items") else "values"
        text = f"list of {inner}"
    elif kind == "object":
        if "patternProperties" in s:
            (value,) = s["patternProperties"].values()
            text = f"map of name to {_type(value)}"
        elif isinstance(s.get("additionalProperties"), dict):
            text = f"map of string to {_type(s['additionalProperties'])}"
        else:
            text = "mapping"
    else:
        names = {"number": "number", "integer": "integer", "string": "string", "boolean": "bool"}
        text = names.get(kind or "", "any")
    limits = _constraints(s)
    for o in s.get("anyOf", []):
        limits += _constraints(o)
    return text + (f" ({', '.join(limits)})" if limits else "")


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _prose(text: str) -> str:
    """A description as table text: square brackets stay literal (formulas, not links)."""
    return _cell(text).replace("[", "\\[").replace("]", "\\]")


def _default(name: str, s: dict[str, Any], required: set[str]) -> str:
    if name in required:
        return "required"
    if "default" not in s:
        return ""
    value = s["default"]
    if value is None:
        return "null"
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{value}`".replace("True", "true").replace("False", "false")


def _refs(s: Any) -> list[str]:
    """Every model a schema names, in order of appearance."""
    found: list[str] = []
    if isinstance(s, dict):
        if "$ref" in s:
            found.append(_ref_name(s["$ref"]))
        for key, value in s.items():
            if key != "discriminator":
                found += _refs(value)
    elif isinstance(s, list):
        for value in s:
            found += _refs(value)
    return found


def _section(name: str, model: dict[str, Any], level: str) -> list[str]:
    lines = [f"{level} {name} {{#{_anchor(name)}}}", ""]
    if model.get("description"):
        lines += [_prose(model["description"]), ""]
    required = set(model.get("required", []))
    lines += ["| field | type | default | description |", "|---|---|---|---|"]
    for field, s in model.get("properties", {}).items():
        lines.append(
            f"| `{field}` | {_cell(_type(s))} | {_default(field, s, required)} | "
            f"{_prose(s.get('description', ''))} |"
        )
    return [*lines, ""]


def render(schema: dict[str, Any]) -> str:
    """Markdown tables for the top-level study and every model below it, in the order met."""
    defs = schema.get("$defs", {})
    lines = _section("Study", schema, "##")
    order: list[str] = []
    queue = _refs(schema.get("properties", {}))
    while queue:
        name = queue.pop(0)
        if name in order or name not in defs:
            continue
        order.append(name)
        queue += _refs(defs[name].get("properties", {}))
    order += sorted(set(defs) - set(order))
    for name in order:
        lines += _section(name, defs[name], "###")
    return "\n".join(lines)


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """Replace the marker on the spec reference page with the rendered schema."""
    if MARKER not in markdown:
        return markdown
    from distsim.spec.study import Study

    return markdown.replace(MARKER, render(Study.model_json_schema()))

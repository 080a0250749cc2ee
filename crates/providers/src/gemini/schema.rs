//! JSON Schema to and from Gemini's `Schema`, the OpenAPI 3.0 subset that function
//! `parameters` and `responseSchema` take.
//!
//! Gemini knows `type`, `format`, `title`, `description`, `nullable`, `enum`, `items`,
//! `minItems`, `maxItems`, `properties`, `required`, `minProperties`, `maxProperties`,
//! `minLength`, `maxLength`, `pattern`, `example`, `anyOf`, `propertyOrdering`, `default`,
//! `minimum` and `maximum`. Everything else is dropped; `$ref` to local `$defs`/`definitions` is
//! inlined (to a bounded depth), `const` becomes a one-value `enum`, `oneOf` becomes `anyOf`, and
//! a type list with `null` becomes `nullable`. This module must not do IO.

use serde_json::{Map, Value};

/// Keywords Gemini's `Schema` accepts.
const KEPT: &[&str] = &[
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "items",
    "minItems",
    "maxItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "minimum",
    "maximum",
];

/// How deep `$ref`s are inlined before the reference is cut to an empty schema.
const MAX_REF_DEPTH: usize = 8;

/// Gemini's `Schema` for a JSON Schema.
pub fn to_gemini(schema: &Value) -> Value {
    let defs = definitions(schema);
    convert(schema, &defs, 0)
}

/// JSON Schema for a Gemini `Schema`: type names lower-cased, `nullable` folded into the type.
pub fn from_gemini(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out = Map::new();
            let nullable = map.get("nullable").and_then(Value::as_bool) == Some(true);
            for (key, value) in map {
                let value = match key.as_str() {
                    "nullable" => continue,
                    "type" => match value.as_str() {
                        Some(t) if nullable => Value::Array(vec![
                            Value::String(t.to_ascii_lowercase()),
                            Value::String("null".into()),
                        ]),
                        Some(t) => Value::String(t.to_ascii_lowercase()),
                        None => value.clone(),
                    },
                    "properties" => match value {
                        Value::Object(props) => Value::Object(
                            props
                                .iter()
                                .map(|(k, v)| (k.clone(), from_gemini(v)))
                                .collect(),
                        ),
                        other => other.clone(),
                    },
                    "items" => from_gemini(value),
                    "anyOf" => match value {
                        Value::Array(items) => {
                            Value::Array(items.iter().map(from_gemini).collect())
                        }
                        other => other.clone(),
                    },
                    _ => value.clone(),
                };
                out.insert(key.clone(), value);
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

fn definitions(schema: &Value) -> Map<String, Value> {
    let mut defs = Map::new();
    for key in ["$defs", "definitions"] {
        if let Some(Value::Object(map)) = schema.get(key) {
            for (name, value) in map {
                defs.insert(format!("#/{key}/{name}"), value.clone());
            }
        }
    }
    defs
}

fn convert(schema: &Value, defs: &Map<String, Value>, depth: usize) -> Value {
    let Value::Object(map) = schema else {
        return Value::Object(Map::new());
    };
    if let Some(reference) = map.get("$ref").and_then(Value::as_str) {
        return match defs.get(reference) {
            Some(target) if depth < MAX_REF_DEPTH => convert(target, defs, depth + 1),
            _ => Value::Object(Map::new()),
        };
    }
    let mut out = Map::new();
    for (key, value) in map {
        match key.as_str() {
            "type" => convert_type(value, &mut out),
            "const" => {
                out.insert("enum".into(), Value::Array(vec![value.clone()]));
            }
            "oneOf" | "anyOf" => {
                if let Value::Array(items) = value {
                    let items = items.iter().map(|s| convert(s, defs, depth)).collect();
                    out.insert("anyOf".into(), Value::Array(items));
                }
            }
            "properties" => {
                if let Value::Object(props) = value {
                    let props = props
                        .iter()
                        .map(|(k, v)| (k.clone(), convert(v, defs, depth)))
                        .collect();
                    out.insert(key.clone(), Value::Object(props));
                }
            }
            "items" => {
                out.insert(key.clone(), convert(value, defs, depth));
            }
            k if KEPT.contains(&k) => {
                out.insert(key.clone(), value.clone());
            }
            _ => {}
        }
    }
    Value::Object(out)
}

/// `"type": "string"` stays; `["string", "null"]` becomes `string` + `nullable`; several
/// non-null types become an `anyOf`.
fn convert_type(value: &Value, out: &mut Map<String, Value>) {
    let Value::Array(types) = value else {
        out.insert("type".into(), value.clone());
        return;
    };
    let mut named: Vec<&Value> = Vec::new();
    for t in types {
        if t.as_str() == Some("null") {
            out.insert("nullable".into(), Value::Bool(true));
        } else {
            named.push(t);
        }
    }
    match named.as_slice() {
        [] => {}
        [one] => {
            out.insert("type".into(), (*one).clone());
        }
        many => {
            let any_of = many
                .iter()
                .map(|t| {
                    let mut m = Map::new();
                    m.insert("type".into(), (*t).clone());
                    Value::Object(m)
                })
                .collect();
            out.insert("anyOf".into(), Value::Array(any_of));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn drops_unknown_keywords_and_inlines_refs() {
        let schema = json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "unit": {"type": ["string", "null"], "enum": ["c", "f"]},
                "kind": {"const": "weather"},
                "place": {"$ref": "#/$defs/place"},
                "either": {"oneOf": [{"type": "string"}, {"type": "integer"}]}
            },
            "required": ["place"],
            "$defs": {"place": {"type": "string", "description": "City"}}
        });
        assert_eq!(
            to_gemini(&schema),
            json!({
                "type": "object",
                "properties": {
                    "unit": {"type": "string", "nullable": true, "enum": ["c", "f"]},
                    "kind": {"enum": ["weather"]},
                    "place": {"type": "string", "description": "City"},
                    "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]}
                },
                "required": ["place"]
            })
        );
    }

    #[test]
    fn recursive_refs_stop() {
        let schema = json!({"$ref": "#/$defs/n", "$defs": {"n": {"type": "object",
            "properties": {"next": {"$ref": "#/$defs/n"}}}}});
        let out = to_gemini(&schema);
        assert_eq!(out["type"], "object");
    }

    #[test]
    fn gemini_types_become_json_schema() {
        let schema = json!({"type": "OBJECT", "properties": {
            "a": {"type": "STRING", "nullable": true},
            "b": {"type": "ARRAY", "items": {"type": "INTEGER"}}
        }});
        assert_eq!(
            from_gemini(&schema),
            json!({"type": "object", "properties": {
                "a": {"type": ["string", "null"]},
                "b": {"type": "array", "items": {"type": "integer"}}
            }})
        );
    }
}

//! Parsing the serialized forms (JSON, TOML) into a [`ConfigSpec`](crate::ConfigSpec), reporting
//! the field path of whatever did not parse, so that malformed input gets the same kind of answer
//! as invalid input. Every unknown field is listed, not just the first.

use serde::de::DeserializeOwned;

use crate::validate::{FieldError, ValidationErrors};

/// Parses JSON, naming every unknown field and the field that failed to parse.
pub fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ValidationErrors> {
    let mut unknown = Vec::new();
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let mut record = |p: serde_ignored::Path<'_>| unknown.push(path_string(&p));
    let de = serde_ignored::Deserializer::new(de, &mut record);
    let result: Result<T, _> = serde_path_to_error::deserialize(de);
    finish(
        result.map_err(|err| {
            let path = clean(err.path().to_string());
            FieldError {
                path,
                message: format!("malformed JSON: {}", err.inner()),
            }
        }),
        unknown,
    )
}

/// Parses TOML, naming every unknown field and the field that failed to parse.
pub fn from_toml<T: DeserializeOwned>(text: &str) -> Result<T, ValidationErrors> {
    let mut unknown = Vec::new();
    let de = toml::Deserializer::new(text);
    let mut record = |p: serde_ignored::Path<'_>| unknown.push(path_string(&p));
    let de = serde_ignored::Deserializer::new(de, &mut record);
    let result: Result<T, _> = serde_path_to_error::deserialize(de);
    finish(
        result.map_err(|err| {
            let path = clean(err.path().to_string());
            let msg = err.inner().message().to_string();
            let at = err
                .inner()
                .span()
                .map(|s| {
                    let line = text.get(..s.start).unwrap_or(text).matches('\n').count() + 1;
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            FieldError {
                path,
                message: format!("malformed TOML: {msg}{at}"),
            }
        }),
        unknown,
    )
}

/// Parses a document by sniffing its form: JSON when it starts with `{`, TOML otherwise.
pub fn from_any<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ValidationErrors> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'{') {
        return from_json(bytes);
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => from_toml(text),
        Err(_) => Err(ValidationErrors::single("", "document is not UTF-8")),
    }
}

/// How a document is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Toml,
    /// JSON when it starts with `{`, TOML otherwise.
    Sniff,
}

/// Parses a whole [`ConfigSpec`](crate::ConfigSpec), collecting the type errors of every object
/// rather than stopping at the first: each element of each list is parsed on its own, so one
/// answer names every object that does not parse, with its path.
pub fn spec_from(bytes: &[u8], format: Format) -> Result<crate::ConfigSpec, ValidationErrors> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    let json = match format {
        Format::Json => true,
        Format::Toml => false,
        Format::Sniff => first == Some(&b'{'),
    };
    // Syntax first: a document that does not parse at all gets one error.
    let value: serde_json::Value = if json {
        serde_json::from_slice(bytes)
            .map_err(|e| ValidationErrors::single("", format!("malformed JSON: {e}")))?
    } else {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| ValidationErrors::single("", "document is not UTF-8"))?;
        toml::from_str(text)
            .map_err(|e| ValidationErrors::single("", format!("malformed TOML: {}", e.message())))?
    };
    let label = if json { "JSON" } else { "TOML" };
    let Some(top) = value.as_object() else {
        return Err(ValidationErrors::single(
            "",
            format!("malformed {label}: the document must be a table of fields"),
        ));
    };
    let mut errors = Vec::new();
    for (key, v) in top {
        let Some(items) = v.as_array() else { continue };
        for (i, item) in items.iter().enumerate() {
            let kind = crate::ObjectKind::parse(key);
            let Some(kind) = kind else { continue };
            let bytes = item.to_string();
            if let Err(e) = crate::Object::parse(kind, bytes.as_bytes()) {
                for mut fe in e.errors {
                    fe.path = if fe.path.is_empty() {
                        format!("{key}[{i}]")
                    } else {
                        format!("{key}[{i}].{}", fe.path)
                    };
                    fe.message =
                        fe.message
                            .replacen("malformed JSON", &format!("malformed {label}"), 1);
                    errors.push(fe);
                }
            }
        }
    }
    if !errors.is_empty() {
        errors.extend(validation_of_the_rest(&value, &errors));
        return Err(ValidationErrors { errors });
    }
    from_json(value.to_string().as_bytes()).map_err(|mut e| {
        for fe in &mut e.errors {
            fe.message = fe
                .message
                .replacen("malformed JSON", &format!("malformed {label}"), 1);
        }
        let rest = validation_of_the_rest(&value, &e.errors);
        e.errors.extend(rest);
        e
    })
}

/// The validation errors of a document beside its unknown fields and type errors, so that one
/// answer lists every problem: the fields at fault are taken out (each object keeps its
/// place, so the paths stay true), and what remains is validated. Errors at or under a field
/// already reported are left out. Nothing when the rest does not parse either (a required
/// field was the one at fault).
fn validation_of_the_rest(value: &serde_json::Value, reported: &[FieldError]) -> Vec<FieldError> {
    let mut patched = value.clone();
    for e in reported {
        remove_path(&mut patched, &e.path);
    }
    let Ok(spec) = serde_json::from_value::<crate::ConfigSpec>(patched) else {
        return Vec::new();
    };
    let Err(found) = crate::validate(&spec) else {
        return Vec::new();
    };
    let covered = |path: &str| {
        reported.iter().any(|r| {
            !r.path.is_empty()
                && (path == r.path
                    || path.starts_with(&format!("{}.", r.path))
                    || path.starts_with(&format!("{}[", r.path)))
        })
    };
    found
        .errors
        .into_iter()
        .filter(|e| !covered(&e.path))
        .collect()
}

/// Removes the field at `path` (`pools[0].retries`) from `value`, if it is there.
fn remove_path(value: &mut serde_json::Value, path: &str) {
    // `a.b[2].c` as steps: key a, key b, index 2, key c.
    enum Step<'a> {
        Key(&'a str),
        Index(usize),
    }
    let mut steps = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
        if !key.is_empty() {
            steps.push(Step::Key(key));
        }
        while let Some((index, after)) = rest.split_once(']') {
            match index.parse() {
                Ok(i) => steps.push(Step::Index(i)),
                Err(_) => return,
            }
            rest = after.strip_prefix('[').unwrap_or(after);
        }
    }
    let Some((last, parents)) = steps.split_last() else {
        return;
    };
    let mut at = value;
    for step in parents {
        let next = match step {
            Step::Key(k) => at.get_mut(*k),
            Step::Index(i) => at.get_mut(*i),
        };
        match next {
            Some(v) => at = v,
            None => return,
        }
    }
    match (last, at) {
        (Step::Key(k), serde_json::Value::Object(map)) => {
            map.remove(*k);
        }
        (Step::Index(_), _) | (Step::Key(_), _) => {}
    }
}

fn finish<T>(result: Result<T, FieldError>, unknown: Vec<String>) -> Result<T, ValidationErrors> {
    let mut errors: Vec<FieldError> = unknown
        .into_iter()
        .map(|path| FieldError {
            message: format!(
                "unknown field `{}`",
                path.rsplit(['.', '['])
                    .next()
                    .unwrap_or(&path)
                    .trim_end_matches(']')
            ),
            path,
        })
        .collect();
    match result {
        Ok(v) if errors.is_empty() => Ok(v),
        Ok(_) => Err(ValidationErrors { errors }),
        Err(e) => {
            errors.push(e);
            Err(ValidationErrors { errors })
        }
    }
}

fn clean(path: String) -> String {
    if path == "." {
        String::new()
    } else {
        path
    }
}

/// `pools[0].colour`, the same form validation uses.
fn path_string(p: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match p {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", path_string(parent)),
        Path::Map { parent, key } => {
            let parent = path_string(parent);
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => path_string(parent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_errors_of_every_object_are_collected() {
        let doc = br#"{"api_version":"meridian/v1",
            "pools":[{"name":"a","retries":"many"},{"name":"b"},{"name":7}],
            "listeners":[{"name":"l","bind":"127.0.0.1:1","idle_timeout_ms":-1}]}"#;
        let e = spec_from(doc, Format::Json).expect_err("three type errors");
        let paths: Vec<&str> = e.errors.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(e.errors.len(), 3, "{paths:?}");
        assert!(paths.contains(&"pools[0].retries"), "{paths:?}");
        assert!(paths.contains(&"pools[2].name"), "{paths:?}");
        assert!(paths.contains(&"listeners[0].idle_timeout_ms"), "{paths:?}");
    }

    #[test]
    fn unknown_fields_and_type_errors_come_with_the_rest_of_the_validation() {
        let doc = br#"{"api_version":"meridian/v1",
            "pools":[{"name":"a","retries":"many","colour":"red",
                      "members":[{"address":"nowhere"}]}],
            "routes":[{"name":"r","listener":"missing","pool":"a"}]}"#;
        let e = spec_from(doc, Format::Json).expect_err("errors");
        let paths: Vec<&str> = e.errors.iter().map(|f| f.path.as_str()).collect();
        assert!(paths.contains(&"pools[0].retries"), "{paths:?}");
        // The rest is validated too: the bad member address and the dangling listener.
        assert!(paths.contains(&"pools[0].members[0].address"), "{paths:?}");
        assert!(paths.contains(&"routes[0].listener"), "{paths:?}");
        assert!(!paths.iter().any(|p| p.starts_with("pools[0].retries.")));

        let doc = br#"{"api_version":"meridian/v1","colour":"red",
            "pools":[{"name":"a","members":[{"address":"nowhere"}]}]}"#;
        let e = spec_from(doc, Format::Json).expect_err("errors");
        let paths: Vec<&str> = e.errors.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["colour", "pools[0].members[0].address"]);

        // A required field at fault: the rest cannot be judged, the type error stands alone.
        let doc = br#"{"api_version":"meridian/v1","pools":[{"name":7}],
            "routes":[{"name":"r","listener":"missing","pool":"a"}]}"#;
        let e = spec_from(doc, Format::Json).expect_err("errors");
        assert_eq!(e.errors.len(), 1, "{:?}", e.errors);
    }

    #[test]
    fn the_error_names_the_format_the_body_was_in() {
        let e = spec_from(b"not json at all", Format::Json).expect_err("bad");
        assert!(e.errors[0].message.starts_with("malformed JSON"), "{e:?}");
        let e = spec_from(b"[[pools]]\nname = 7\n", Format::Toml).expect_err("bad");
        assert!(e.errors[0].message.starts_with("malformed TOML"), "{e:?}");
        assert_eq!(e.errors[0].path, "pools[0].name");
        let e = spec_from(b"[1, 2]", Format::Json).expect_err("bad");
        assert!(e.errors[0].message.contains("table of fields"), "{e:?}");
    }

    #[test]
    fn a_good_document_parses_either_way() {
        let json = br#"{"api_version":"meridian/v1","pools":[{"name":"a"}]}"#;
        let a = spec_from(json, Format::Sniff).expect("json");
        let b = spec_from(
            b"api_version = \"meridian/v1\"\n[[pools]]\nname = \"a\"\n",
            Format::Sniff,
        )
        .expect("toml");
        assert_eq!(a, b);
    }
}

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

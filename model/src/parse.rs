//! Parsing the serialized forms (JSON, TOML) into a [`ConfigSpec`], reporting the field path of
//! whatever did not parse so that malformed input gets the same kind of answer as invalid input.

use serde::de::DeserializeOwned;

use crate::validate::ValidationErrors;

/// Parses JSON, naming the field that failed (unknown fields included).
pub fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ValidationErrors> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let path = if path == "." { String::new() } else { path };
        ValidationErrors::single(path, format!("malformed JSON: {}", err.inner()))
    })
}

/// Parses TOML, naming the field that failed (unknown fields included).
pub fn from_toml<T: DeserializeOwned>(text: &str) -> Result<T, ValidationErrors> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let msg = err.inner().message().to_string();
        let at = err
            .inner()
            .span()
            .map(|s| {
                let line = text.get(..s.start).unwrap_or(text).matches('\n').count() + 1;
                format!(" (line {line})")
            })
            .unwrap_or_default();
        ValidationErrors::single(path, format!("malformed TOML: {msg}{at}"))
    })
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

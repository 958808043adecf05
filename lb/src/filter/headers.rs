//! Header edits: remove, set (replace), add (append), with names and values parsed once per
//! revision.

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

use crate::error::CompileError;

#[derive(Debug, Default)]
pub struct HeaderEdit {
    remove: Vec<HeaderName>,
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
}

fn pair(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), CompileError> {
    let n = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| CompileError::Header(name.to_string()))?;
    let v = HeaderValue::from_str(value).map_err(|_| CompileError::Header(name.to_string()))?;
    Ok((n, v))
}

impl HeaderEdit {
    pub fn compile(spec: &model::HeaderEdit) -> Result<HeaderEdit, CompileError> {
        Ok(HeaderEdit {
            remove: spec
                .remove
                .iter()
                .map(|n| {
                    HeaderName::from_bytes(n.as_bytes())
                        .map_err(|_| CompileError::Header(n.clone()))
                })
                .collect::<Result<_, _>>()?,
            set: spec
                .set
                .iter()
                .map(|(n, v)| pair(n, v))
                .collect::<Result<_, _>>()?,
            add: spec
                .add
                .iter()
                .map(|(n, v)| pair(n, v))
                .collect::<Result<_, _>>()?,
        })
    }

    pub fn apply(&self, headers: &mut HeaderMap) {
        for n in &self.remove {
            headers.remove(n);
        }
        for (n, v) in &self.set {
            headers.insert(n.clone(), v.clone());
        }
        for (n, v) in &self.add {
            headers.append(n.clone(), v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_then_set_then_add() {
        let edit = HeaderEdit::compile(&model::HeaderEdit {
            remove: vec!["x-secret".into()],
            set: vec![("x-env".into(), "prod".into())],
            add: vec![("x-tag".into(), "b".into())],
        })
        .expect("compiles");
        let mut h = HeaderMap::new();
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("x-env", HeaderValue::from_static("dev"));
        h.append("x-env", HeaderValue::from_static("qa"));
        h.insert("x-tag", HeaderValue::from_static("a"));
        edit.apply(&mut h);
        assert!(h.get("x-secret").is_none());
        assert_eq!(h.get_all("x-env").iter().collect::<Vec<_>>(), ["prod"]);
        assert_eq!(h.get_all("x-tag").iter().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn a_value_with_a_newline_does_not_compile() {
        let bad = model::HeaderEdit {
            set: vec![("x-a".into(), "1\r\nx-b: 2".into())],
            ..Default::default()
        };
        assert!(HeaderEdit::compile(&bad).is_err());
    }
}

//! What changed between two config revisions, object by object, with a line diff of each
//! changed object's pretty-printed spec. Shared by the console's history page and the API.

use model::{ConfigSpec, Object, ObjectKind};
use serde::Serialize;
use similar::{ChangeTag, TextDiff};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum What {
    Added,
    Removed,
    Changed,
}

/// One line of a diff: `' '` unchanged, `'+'` added, `'-'` removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Line {
    pub sign: char,
    pub text: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ObjectDiff {
    /// The object kind (`pools`), or `settings` for config-wide fields.
    pub kind: &'static str,
    pub name: String,
    pub what: What,
    pub lines: Vec<Line>,
}

fn pretty(o: Option<&Object>) -> String {
    o.map(|o| serde_json::to_string_pretty(&o.spec_json()).unwrap_or_default())
        .unwrap_or_default()
}

/// The objects that differ between `before` and `after`, in kind order then name order of
/// `after` (removed objects last within their kind).
pub fn diff(before: &ConfigSpec, after: &ConfigSpec) -> Vec<ObjectDiff> {
    let mut out = Vec::new();
    for kind in ObjectKind::ALL {
        let old = before.list(kind);
        let new = after.list(kind);
        for n in &new {
            let o = old.iter().find(|o| o.name() == n.name());
            if o == Some(n) {
                continue;
            }
            out.push(ObjectDiff {
                kind: kind.as_str(),
                name: n.name().to_string(),
                what: if o.is_some() {
                    What::Changed
                } else {
                    What::Added
                },
                lines: lines(&pretty(o), &pretty(Some(n))),
            });
        }
        for o in old
            .iter()
            .filter(|o| !new.iter().any(|n| n.name() == o.name()))
        {
            out.push(ObjectDiff {
                kind: kind.as_str(),
                name: o.name().to_string(),
                what: What::Removed,
                lines: lines(&pretty(Some(o)), ""),
            });
        }
    }
    if before.audit_retention_days != after.audit_retention_days {
        let show = |d: Option<u32>| match d {
            Some(d) => format!("audit_retention_days = {d}"),
            None => "audit_retention_days = (default)".to_string(),
        };
        out.push(ObjectDiff {
            kind: "settings",
            name: "audit_retention_days".into(),
            what: What::Changed,
            lines: vec![
                Line {
                    sign: '-',
                    text: show(before.audit_retention_days),
                },
                Line {
                    sign: '+',
                    text: show(after.audit_retention_days),
                },
            ],
        });
    }
    out
}

/// A line diff that keeps three lines of context around each change.
fn lines(a: &str, b: &str) -> Vec<Line> {
    let d = TextDiff::from_lines(a, b);
    let mut out = Vec::new();
    for group in d.grouped_ops(3) {
        if !out.is_empty() {
            out.push(Line {
                sign: ' ',
                text: "…".into(),
            });
        }
        for op in group {
            for change in d.iter_changes(&op) {
                out.push(Line {
                    sign: match change.tag() {
                        ChangeTag::Equal => ' ',
                        ChangeTag::Insert => '+',
                        ChangeTag::Delete => '-',
                    },
                    text: change.value().trim_end_matches('\n').to_string(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> ConfigSpec {
        model::parse::from_toml(text).expect("spec")
    }

    #[test]
    fn names_added_removed_and_changed_objects_with_their_lines() {
        let a = spec(
            r#"api_version = "meridian/v1"
[[pools]]
name = "keep"
[[pools]]
name = "edit"
members = [{ address = "127.0.0.1:1" }]
[[pools]]
name = "gone"
"#,
        );
        let b = spec(
            r#"api_version = "meridian/v1"
[[pools]]
name = "keep"
[[pools]]
name = "edit"
members = [{ address = "127.0.0.1:2" }]
[[pools]]
name = "new"
"#,
        );
        let d = diff(&a, &b);
        let summary: Vec<(&str, &What)> = d.iter().map(|o| (o.name.as_str(), &o.what)).collect();
        assert_eq!(
            summary,
            vec![
                ("edit", &What::Changed),
                ("new", &What::Added),
                ("gone", &What::Removed)
            ]
        );
        let edit = &d[0];
        assert!(edit
            .lines
            .iter()
            .any(|l| l.sign == '-' && l.text.contains("127.0.0.1:1")));
        assert!(edit
            .lines
            .iter()
            .any(|l| l.sign == '+' && l.text.contains("127.0.0.1:2")));
        assert!(diff(&a, &a).is_empty());
    }
}

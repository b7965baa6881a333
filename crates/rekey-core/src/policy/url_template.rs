//! Link templates: the field-action subset of Go's text/template (SPEC §3.1). `{{.UserID}}`,
//! `{{.Code}}` and `{{.OrgID}}`, with optional spaces and `-` trim markers; no pipelines,
//! functions or other actions. Rendered values are URL-query-escaped.

use crate::error::Error;

pub const MAX_TEMPLATE_LEN: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    UserId,
    Code,
    OrgId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(Field),
}

/// A parsed, valid link template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlTemplate {
    parts: Vec<Part>,
}

/// The values a template is rendered with.
pub struct Values<'a> {
    pub user_id: &'a str,
    pub code: &'a str,
    pub org_id: &'a str,
}

impl UrlTemplate {
    /// Parses a caller-supplied template (1..200 characters).
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let len = raw.chars().count();
        if len == 0 || len > MAX_TEMPLATE_LEN {
            return Err(Error::url_template_syntax());
        }
        Self::parse_unbounded(raw)
    }

    /// Parses an operator-configured template (tenant default link), no length cap.
    pub fn parse_unbounded(raw: &str) -> Result<Self, Error> {
        let mut parts = Vec::new();
        let mut rest = raw;
        let mut text = String::new();
        while let Some(open) = rest.find("{{") {
            text.push_str(&rest[..open]);
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or_else(Error::url_template_syntax)?;
            let mut action = &after[..close];
            // `{{- ` trims whitespace before the action; ` -}}` after it.
            let trim_left = action.starts_with("- ") || action == "-";
            if trim_left {
                action = &action[1..];
                let kept = text.trim_end().len();
                text.truncate(kept);
            }
            let trim_right = action.ends_with(" -");
            if trim_right {
                action = &action[..action.len() - 1];
            }
            let field = parse_action(action.trim())?;
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            parts.push(Part::Field(field));
            rest = &after[close + 2..];
            if trim_right {
                rest = rest.trim_start();
            }
        }
        text.push_str(rest);
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Self { parts })
    }

    pub fn render(&self, values: &Values<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Field(field) => {
                    let value = match field {
                        Field::UserId => values.user_id,
                        Field::Code => values.code,
                        Field::OrgId => values.org_id,
                    };
                    out.extend(url::form_urlencoded::byte_serialize(value.as_bytes()));
                }
            }
        }
        out
    }
}

fn parse_action(action: &str) -> Result<Field, Error> {
    let name = action
        .strip_prefix('.')
        .ok_or_else(Error::url_template_syntax)?;
    let is_ident = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !is_ident {
        return Err(Error::url_template_syntax());
    }
    match name {
        "UserID" => Ok(Field::UserId),
        "Code" => Ok(Field::Code),
        "OrgID" => Ok(Field::OrgId),
        _ => Err(Error::url_template_field()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: Values<'static> = Values {
        user_id: "123",
        code: "AB CD&",
        org_id: "9",
    };

    #[test]
    fn renders_fields_escaped() {
        let t = UrlTemplate::parse("https://x.test/reset?u={{.UserID}}&c={{ .Code }}&o={{.OrgID}}")
            .unwrap();
        assert_eq!(t.render(&V), "https://x.test/reset?u=123&c=AB+CD%26&o=9");
    }

    #[test]
    fn trim_markers_remove_adjacent_whitespace() {
        let t = UrlTemplate::parse("a  {{- .UserID -}}  b").unwrap();
        assert_eq!(t.render(&V), "a123b");
    }

    #[test]
    fn syntax_errors_and_unknown_fields_have_their_own_ids() {
        for bad in [
            "x{{.UserID",
            "{{UserID}}",
            "{{}}",
            "{{.UserID | html}}",
            "{{printf \"%s\" .Code}}",
            "{{.User.ID}}",
            "",
        ] {
            assert_eq!(
                UrlTemplate::parse(bad).unwrap_err().id,
                "DOMAIN-oGh5e",
                "{bad}"
            );
        }
        assert_eq!(
            UrlTemplate::parse("{{.Password}}").unwrap_err().id,
            "DOMAIN-ieYa7"
        );
        assert!(UrlTemplate::parse(&"a".repeat(201)).is_err());
        assert!(UrlTemplate::parse("no placeholders").is_ok());
    }
}

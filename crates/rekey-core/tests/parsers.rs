//! Property tests of the input parsers: `EmailAddress`, `PhoneNumber` and `Cname` (round trips,
//! refusals, never a panic) and link templates (any template built from valid pieces parses and
//! renders its values URL-query-escaped; invalid placeholders are refused). The fuzz targets in
//! `fuzz/` explore the same parsers with unstructured input.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use rekey_core::domain::{Cname, EmailAddress, PhoneNumber};
use rekey_core::policy::url_template::{UrlTemplate, Values, MAX_TEMPLATE_LEN};

const SYNTAX: &str = "DOMAIN-oGh5e";
const UNKNOWN_FIELD: &str = "DOMAIN-ieYa7";

fn email() -> impl Strategy<Value = String> {
    (
        "[a-zA-Z0-9._%+-]{1,20}",
        "[a-zA-Z0-9.-]{1,20}",
        "[a-zA-Z]{2,6}",
    )
        .prop_map(|(local, host, tld)| format!("{local}@{host}.{tld}"))
}

proptest! {
    #[test]
    fn parsers_never_panic(raw in any::<String>()) {
        let _ = EmailAddress::parse(&raw);
        let _ = PhoneNumber::parse(&raw);
        let _ = Cname::parse(&raw);
        let _ = UrlTemplate::parse(&raw);
        let _ = UrlTemplate::parse_unbounded(&raw);
    }

    #[test]
    fn parsers_never_panic_on_near_misses(raw in "[+0-9a-zA-Z@.{}| _-]{0,40}") {
        let kept = [
            EmailAddress::parse(&raw).map(|e| e.to_string()),
            PhoneNumber::parse(&raw).map(|p| p.as_str().to_owned()),
            Cname::parse(&raw).map(|c| c.as_str().to_owned()),
        ];
        for kept in kept.into_iter().flatten() {
            prop_assert_eq!(kept, raw.clone());
        }
        let _ = UrlTemplate::parse(&raw);
    }

    #[test]
    fn valid_emails_round_trip(raw in email()) {
        let parsed = EmailAddress::parse(&raw).unwrap();
        prop_assert_eq!(parsed.as_str(), raw.as_str());
        prop_assert_eq!(parsed.to_string(), raw);
        prop_assert_eq!(EmailAddress::parse(parsed.as_str()).unwrap(), parsed);
    }

    #[test]
    fn emails_with_a_foreign_character_are_refused(
        raw in email(),
        at in any::<prop::sample::Index>(),
        bad in "[^a-zA-Z0-9._%+@-]",
    ) {
        let mut chars: Vec<char> = raw.chars().collect();
        chars.insert(at.index(chars.len() + 1), bad.chars().next().unwrap());
        let raw: String = chars.into_iter().collect();
        prop_assert_eq!(EmailAddress::parse(&raw).unwrap_err().id, "REKEY-Email");
    }

    #[test]
    fn emails_need_a_letters_only_tld(raw in email(), tld in "[a-zA-Z]?[0-9_-][a-zA-Z0-9_-]{0,3}|[a-zA-Z]") {
        let (head, _) = raw.rsplit_once('.').unwrap();
        let raw = format!("{head}.{tld}");
        prop_assert!(EmailAddress::parse(&raw).is_err(), "{}", raw);
    }

    #[test]
    fn valid_phones_round_trip(raw in r"\+[1-9][0-9]{7,14}") {
        let parsed = PhoneNumber::parse(&raw).unwrap();
        prop_assert_eq!(parsed.as_str(), raw.as_str());
        prop_assert_eq!(PhoneNumber::parse(parsed.as_str()).unwrap(), parsed);
    }

    #[test]
    fn phones_outside_e164_are_refused(
        raw in r"[1-9][0-9]{7,14}|\+0[0-9]{7,14}|\+[1-9][0-9]{0,6}|\+[1-9][0-9]{15,20}|\+[1-9][0-9]{3,7}[ a-z-][0-9]{3,7}",
    ) {
        prop_assert_eq!(PhoneNumber::parse(&raw).unwrap_err().id, "REKEY-Phone");
    }

    #[test]
    fn valid_cnames_round_trip(raw in r"[^\s\p{Cc}]{1,64}") {
        prop_assume!(!raw.chars().all(|c| c.is_ascii_digit()));
        let parsed = Cname::parse(&raw).unwrap();
        prop_assert_eq!(parsed.as_str(), raw.as_str());
        prop_assert_eq!(Cname::parse(parsed.as_str()).unwrap(), parsed);
    }

    #[test]
    fn cnames_with_space_or_all_digits_are_refused(
        digits in "[0-9]{1,30}",
        name in r"[^\s\p{Cc}]{0,20}",
        space in r"[\s\p{Cc}]",
        tail in r"[^\s\p{Cc}]{0,20}",
    ) {
        prop_assert_eq!(Cname::parse(&digits).unwrap_err().id, "REKEY-CnDig");
        let spaced = format!("{name}{space}{tail}");
        prop_assume!(!spaced.chars().all(|c| c.is_ascii_digit()));
        prop_assert_eq!(Cname::parse(&spaced).unwrap_err().id, "REKEY-CnSpc");
    }
}

/// One piece of a generated template.
#[derive(Debug, Clone)]
enum Piece {
    Text(String),
    Field {
        name: &'static str,
        trim_left: bool,
        trim_right: bool,
        pad_left: usize,
        pad_right: usize,
    },
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        "[a-zA-Z0-9 :/?&=#%._~-]{1,12}".prop_map(Piece::Text),
        (
            prop::sample::select(vec!["UserID", "Code", "OrgID"]),
            any::<bool>(),
            any::<bool>(),
            0..3usize,
            0..3usize,
        )
            .prop_map(
                |(name, trim_left, trim_right, pad_left, pad_right)| Piece::Field {
                    name,
                    trim_left,
                    trim_right,
                    pad_left,
                    pad_right,
                }
            ),
    ]
}

/// The template's source text.
fn source(pieces: &[Piece]) -> String {
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Field {
                name,
                trim_left,
                trim_right,
                pad_left,
                pad_right,
            } => {
                out.push_str("{{");
                if *trim_left {
                    out.push_str("- ");
                }
                out.push_str(&" ".repeat(*pad_left));
                out.push('.');
                out.push_str(name);
                out.push_str(&" ".repeat(*pad_right));
                if *trim_right {
                    out.push_str(" -");
                }
                out.push_str("}}");
            }
        }
    }
    out
}

/// URL query escaping (application/x-www-form-urlencoded), written out for the test.
fn query_escape(value: &str) -> String {
    let mut out = String::new();
    for &b in value.as_bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// What the pieces render to: text as written (less the whitespace a trim marker removes from
/// the text right next to it, as in Go), fields as their escaped values.
fn expected(pieces: &[Piece], values: &Values<'_>) -> String {
    let mut out = String::new();
    let mut trim_next = false;
    // Where the text since the last field starts: `{{-` trims that text only.
    let mut text_start = 0;
    for piece in pieces {
        match piece {
            Piece::Text(text) => {
                if trim_next {
                    let kept = text.trim_start();
                    trim_next = kept.is_empty();
                    out.push_str(kept);
                } else {
                    out.push_str(text);
                }
            }
            Piece::Field {
                name,
                trim_left,
                trim_right,
                ..
            } => {
                if *trim_left {
                    let kept = text_start + out[text_start..].trim_end().len();
                    out.truncate(kept);
                }
                let value = match *name {
                    "UserID" => values.user_id,
                    "Code" => values.code,
                    _ => values.org_id,
                };
                out.push_str(&query_escape(value));
                trim_next = *trim_right;
                text_start = out.len();
            }
        }
    }
    out
}

proptest! {
    #[test]
    fn templates_from_valid_pieces_render_values_escaped(
        pieces in prop::collection::vec(piece(), 1..8),
        user_id in any::<String>(),
        code in "[A-Za-z0-9]{0,8}|.{0,8}",
        org_id in "[0-9&=#? /+%]{0,8}",
    ) {
        let raw = source(&pieces);
        let values = Values { user_id: &user_id, code: &code, org_id: &org_id };
        let template = UrlTemplate::parse_unbounded(&raw).unwrap();
        prop_assert_eq!(template.render(&values), expected(&pieces, &values));
        if raw.chars().count() <= MAX_TEMPLATE_LEN {
            prop_assert_eq!(UrlTemplate::parse(&raw).unwrap(), template);
        } else {
            prop_assert!(UrlTemplate::parse(&raw).is_err());
        }
    }

    #[test]
    fn unknown_fields_are_refused(
        before in "[a-z:/?=&]{0,10}",
        name in "[A-Za-z_][A-Za-z0-9_]{0,10}",
        after in "[a-z:/?=&]{0,10}",
    ) {
        prop_assume!(!["UserID", "Code", "OrgID"].contains(&name.as_str()));
        let raw = format!("{before}{{{{.{name}}}}}{after}");
        prop_assert_eq!(UrlTemplate::parse(&raw).unwrap_err().id, UNKNOWN_FIELD);
    }

    #[test]
    fn actions_that_are_not_a_field_are_refused(
        before in "[a-z:/?=&]{0,10}",
        action in r#"[a-zA-Z0-9 |"()$]{0,12}|\.[A-Za-z]+[ .|(][A-Za-z]+|\.[0-9][A-Za-z]*|\.Code \| html"#,
        after in "[a-z:/?=&]{0,10}",
    ) {
        // Valid fields start with a dot; every action here lacks it or has more after the name.
        let raw = format!("{before}{{{{{action}}}}}{after}");
        prop_assert_eq!(UrlTemplate::parse(&raw).unwrap_err().id, SYNTAX);
        // An action that is never closed is refused too.
        let open = format!("{before}{{{{.Code{after}");
        prop_assert_eq!(UrlTemplate::parse(&open).unwrap_err().id, SYNTAX);
    }
}

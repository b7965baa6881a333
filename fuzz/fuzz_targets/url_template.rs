//! Link templates (`rekey_core::policy::url_template`): arbitrary templates and values.
//!
//! Invariants: `parse` is `parse_unbounded` plus the 1..=200 character bound; a template
//! without `{{` is all text and renders to itself; whatever the values, rendering only adds
//! URL-query-escaped characters to the template's text (a value never brings its own `&`, `=`,
//! `#`, `?`, `/` or space into the link).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rekey_core::policy::url_template::{UrlTemplate, Values, MAX_TEMPLATE_LEN};
use std::collections::HashMap;

/// What `form_urlencoded::byte_serialize` may emit: unreserved bytes, `+` for space and `%XX`.
fn escaped_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '*' | '-' | '.' | '_' | '+' | '%')
}

fn counts(s: &str) -> HashMap<char, usize> {
    let mut map = HashMap::new();
    for c in s.chars() {
        *map.entry(c).or_insert(0) += 1;
    }
    map
}

fuzz_target!(|input: (&str, &str, &str, &str)| {
    let (raw, user_id, code, org_id) = input;
    let bounded = UrlTemplate::parse(raw);
    let unbounded = UrlTemplate::parse_unbounded(raw);
    let len = raw.chars().count();
    if (1..=MAX_TEMPLATE_LEN).contains(&len) {
        assert_eq!(bounded, unbounded, "parse and parse_unbounded disagree");
    } else {
        assert!(bounded.is_err(), "length {len} accepted");
    }
    if let Err(err) = &unbounded {
        assert!(
            err.id == "DOMAIN-oGh5e" || err.id == "DOMAIN-ieYa7",
            "unexpected error id {}",
            err.id
        );
    }
    let Ok(template) = unbounded else {
        assert!(raw.contains("{{"), "a template without actions was refused");
        return;
    };

    let empty = Values {
        user_id: "",
        code: "",
        org_id: "",
    };
    let text = template.render(&empty);
    if !raw.contains("{{") {
        assert_eq!(text, raw, "a template without actions changed");
    }
    let rendered = template.render(&Values {
        user_id,
        code,
        org_id,
    });
    let before = counts(&text);
    for (c, n) in counts(&rendered) {
        let had = before.get(&c).copied().unwrap_or(0);
        assert!(
            n >= had,
            "rendering with values lost a {c:?} of the template's text"
        );
        assert!(
            n == had || escaped_char(c),
            "a value brought an unescaped {c:?} into {rendered:?}"
        );
    }
    assert!(rendered.len() >= text.len());
});

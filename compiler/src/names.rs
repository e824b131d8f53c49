//! Rust names for proto names: snake_case methods and modules, SCREAMING_SNAKE constants,
//! and keyword escaping.

use heck::{ToShoutySnakeCase, ToSnakeCase, ToUpperCamelCase};

/// Words that cannot be identifiers as they are.
const KEYWORDS: &[&str] = &[
    "as", "break", "const", "continue", "else", "enum", "false", "fn", "for", "if", "impl", "in",
    "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return", "static", "struct",
    "trait", "true", "type", "unsafe", "use", "where", "while", "dyn", "abstract", "become", "box",
    "do", "final", "macro", "override", "priv", "typeof", "unsized", "virtual", "yield", "async",
    "await", "try", "gen",
];

/// Keywords that cannot even be raw identifiers: they get a `_` suffix instead.
const NOT_RAW: &[&str] = &["_", "self", "Self", "super", "crate", "extern"];

/// `ident` as a valid Rust identifier: `r#` for keywords, `_` suffix for the few that
/// cannot be raw, `_` prefix for a leading digit.
pub(crate) fn escape(ident: &str) -> String {
    if NOT_RAW.contains(&ident) {
        format!("{ident}_")
    } else if KEYWORDS.contains(&ident) {
        format!("r#{ident}")
    } else if ident.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{ident}")
    } else {
        ident.to_string()
    }
}

/// A method or module name: `GetFeature` → `get_feature`, `Match` → `r#match`.
pub(crate) fn snake(name: &str) -> String {
    escape(&name.to_snake_case())
}

/// A constant name: `GetFeature` → `GET_FEATURE`.
pub(crate) fn shouty(name: &str) -> String {
    escape(&name.to_shouty_snake_case())
}

/// A type name: `route_guide` → `RouteGuide`, `Self` → `Self_`.
pub(crate) fn camel(name: &str) -> String {
    escape(&name.to_upper_camel_case())
}

/// The name without a leading `r#` (to build other names from it).
pub(crate) fn unraw(ident: &str) -> &str {
    ident.strip_prefix("r#").unwrap_or(ident)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_and_std_names() {
        assert_eq!(snake("Match"), "r#match");
        assert_eq!(snake("Box"), "r#box");
        assert_eq!(snake("Self"), "self_");
        assert_eq!(snake("async"), "r#async");
        assert_eq!(snake("GetFeature"), "get_feature");
        assert_eq!(shouty("GetFeature"), "GET_FEATURE");
        assert_eq!(camel("Self"), "Self_");
        assert_eq!(camel("Type"), "Type");
        assert_eq!(camel("route_guide"), "RouteGuide");
        assert_eq!(unraw("r#match"), "match");
    }
}

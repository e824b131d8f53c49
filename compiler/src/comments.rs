//! Proto comments as Rust doc comments.
//!
//! A comment is rustdoc Markdown once copied, so a few things are made safe: indented
//! blocks and unlabelled ``` fences become `text` blocks (rustdoc would otherwise run them
//! as Rust doc tests), brackets and `<` are escaped (no broken intra-doc links, no stray
//! HTML tags) and bare URLs are put in angle brackets (rustdoc's `bare_urls` lint).
//!
//! Why not `prost_build::Comments` (checked with prost-build 0.14): it has no public way
//! in from a descriptor's location, and its `append_with_indent` keeps indented blocks and
//! unlabelled fences as Rust (doc tests that fail to compile), leaves `<name>` unescaped,
//! and wraps URLs with their full stop and again when already in angle brackets
//! (`<http://x.y>.` becomes `<<http://x.y>.>`). Its code-block cleanup exists only behind
//! its `cleanup-markdown` feature (two more Markdown crates in every user's build), inside
//! that private constructor.

use prost_types::FileDescriptorProto;

/// The comment lines of the element at `path` in `file` (leading, then trailing), as
/// doc-comment lines; empty when the file has no source info or the element no comment.
pub(crate) fn doc_lines(file: &FileDescriptorProto, path: &[i32]) -> Vec<String> {
    let Some(info) = &file.source_code_info else {
        return Vec::new();
    };
    let Some(location) = info.location.iter().find(|l| l.path == path) else {
        return Vec::new();
    };
    let mut text = String::new();
    for part in [&location.leading_comments, &location.trailing_comments]
        .into_iter()
        .flatten()
    {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(part);
    }
    markdown(&text)
}

/// Turns raw comment text into safe doc lines.
pub(crate) fn markdown(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    let indent = lines
        .iter()
        .filter(|l| !l.is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let mut out = Vec::new();
    let mut in_fence = false;
    let mut in_indented = false;
    for line in lines {
        let line = if line.len() >= indent {
            &line[indent..]
        } else {
            line.trim_start()
        };
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") {
            if in_indented {
                out.push("```".to_string());
                in_indented = false;
            }
            if in_fence {
                out.push("```".to_string());
            } else {
                // Whatever the label said, the block is not Rust to compile.
                out.push("```text".to_string());
            }
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            out.push(line.to_string());
            continue;
        }
        let code_indent = line.starts_with("    ") || line.starts_with('\t');
        if code_indent && !in_indented && out.last().map_or(true, |l: &String| l.is_empty()) {
            out.push("```text".to_string());
            in_indented = true;
        }
        if in_indented {
            if code_indent || line.is_empty() {
                out.push(
                    line.trim_start_matches('\t')
                        .strip_prefix("    ")
                        .unwrap_or(line)
                        .to_string(),
                );
                continue;
            }
            close_indented(&mut out);
            in_indented = false;
        }
        out.push(escape_line(line));
    }
    if in_indented {
        close_indented(&mut out);
    }
    if in_fence {
        out.push("```".to_string());
    }
    while out.last().is_some_and(|l| l.is_empty()) {
        out.pop();
    }
    while out.first().is_some_and(|l| l.is_empty()) {
        out.remove(0);
    }
    out
}

/// Ends an indented block turned into a fence, keeping a blank line after it.
fn close_indented(out: &mut Vec<String>) {
    let mut blanks = 0;
    while out.last().is_some_and(|l| l.is_empty()) {
        out.pop();
        blanks += 1;
    }
    out.push("```".to_string());
    out.extend(std::iter::repeat(String::new()).take(blanks));
}

/// Escapes brackets and wraps bare URLs, leaving `code spans` alone.
fn escape_line(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_code = false;
    let mut rest = line;
    while let Some(c) = rest.chars().next() {
        if c == '`' {
            in_code = !in_code;
        } else if !in_code {
            if let Some(url_len) = bare_url_len(rest) {
                let preceded_by_bracket = out.ends_with('<') || out.ends_with('(');
                if preceded_by_bracket {
                    out.push_str(&rest[..url_len]);
                } else {
                    out.push('<');
                    out.push_str(&rest[..url_len]);
                    out.push('>');
                }
                rest = &rest[url_len..];
                continue;
            }
            // `<name>` would be an unclosed HTML tag to rustdoc; `<https://…>` stays a link.
            let autolink = c == '<' && bare_url_len(&rest[1..]).is_some();
            if c == '[' || c == ']' || (c == '<' && !autolink) {
                out.push('\\');
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The length of the URL `text` starts with, if it starts with one.
fn bare_url_len(text: &str) -> Option<usize> {
    if !(text.starts_with("http://") || text.starts_with("https://")) {
        return None;
    }
    let end = text
        .find(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"' | '`' | ')'))
        .unwrap_or(text.len());
    // A sentence's full stop or comma is not part of the URL.
    let url = text[..end].trim_end_matches(['.', ',', ';', ':']);
    Some(url.len())
}

#[cfg(test)]
mod tests {
    use super::markdown;

    #[test]
    fn dedents_and_trims() {
        assert_eq!(markdown(" Hello.\n  More.\n"), vec!["Hello.", " More."]);
        assert_eq!(markdown("\n\n x\n\n"), vec!["x"]);
    }

    #[test]
    fn code_is_never_a_doctest() {
        assert_eq!(
            markdown(" Example:\n\n     foo(bar);\n     baz();\n\n Done."),
            vec![
                "Example:",
                "",
                "```text",
                "foo(bar);",
                "baz();",
                "```",
                "",
                "Done."
            ]
        );
        assert_eq!(
            markdown(" ```\n let x;\n ```"),
            vec!["```text", "let x;", "```"]
        );
        assert_eq!(
            markdown(" ```rust\n let x;"),
            vec!["```text", "let x;", "```"]
        );
    }

    #[test]
    fn brackets_and_urls() {
        assert_eq!(
            markdown(" See [foo] and `a[0]`."),
            vec![r"See \[foo\] and `a[0]`."]
        );
        assert_eq!(
            markdown(" Docs: https://grpc.io/docs. And <http://x.y>."),
            vec!["Docs: <https://grpc.io/docs>. And <http://x.y>."]
        );
        assert_eq!(markdown(" Hello <name>."), vec![r"Hello \<name>."]);
    }
}

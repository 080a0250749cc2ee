//! `${VAR}` and `${VAR:-default}` in the configuration text, resolved before parsing.
//!
//! This module and `zero` are the only places that read the process environment.

/// Replaces every `${VAR}` / `${VAR:-default}` outside comments. An unset `${VAR}` without a
/// default is an error naming the variable and its line; the value itself is never echoed.
pub fn interpolate(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<(usize, String)>> {
    let mut out = String::with_capacity(text.len());
    let mut problems = Vec::new();
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let code_end = comment_start(line).unwrap_or(line.len());
        let (code, comment) = line.split_at(code_end);
        let mut rest = code;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                problems.push((
                    n + 1,
                    "unterminated '${' (write ${VAR} or ${VAR:-default})".to_string(),
                ));
                out.push_str(&rest[start..]);
                rest = "";
                break;
            };
            let expr = &after[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (expr, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                problems.push((
                    n + 1,
                    format!("'${{{expr}}}' is not a valid variable reference"),
                ));
            } else {
                match (lookup(name), default) {
                    (Some(v), _) if !v.is_empty() || default.is_none() => out.push_str(&v),
                    (_, Some(d)) => out.push_str(d),
                    (None, None) => problems.push((
                        n + 1,
                        format!("environment variable {name} is not set (write ${{{name}:-default}} to make it optional)"),
                    )),
                    (Some(v), None) => out.push_str(&v),
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out.push_str(comment);
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Where a YAML comment starts on this line: a `#` at the start or after whitespace, outside
/// quotes.
fn comment_start(line: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut prev_space = true;
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' && prev_space => return Some(i),
            None => {}
        }
        prev_space = c.is_whitespace();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "KEY" => Some("sk-1".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn interpolates() {
        let out =
            interpolate("a: ${KEY}\nb: ${NOPE:-x}\nc: ${EMPTY:-d} # ${NOPE}\n", &env).unwrap();
        assert_eq!(out, "a: sk-1\nb: x\nc: d # ${NOPE}\n");
    }

    #[test]
    fn unset_is_an_error_with_line() {
        let err = interpolate("a: 1\nb: ${NOPE}\n", &env).unwrap_err();
        assert_eq!(err[0].0, 2);
        assert!(err[0].1.contains("NOPE"));
    }
}

//! Command-line flags in the style every interop binary uses: `--name=value` or
//! `--name value`; a boolean may also stand alone (`--use_tls` means `--use_tls=true`).

use std::collections::BTreeMap;

/// Parsed flags, checked against the names a binary accepts.
#[derive(Debug, Default)]
pub struct Flags {
    values: BTreeMap<String, String>,
}

/// What a binary accepts: flag names, and which of them are booleans.
pub struct Spec {
    /// Flags taking a value.
    pub values: &'static [&'static str],
    /// Boolean flags.
    pub bools: &'static [&'static str],
}

fn parse_bool(name: &str, v: &str) -> Result<bool, String> {
    match v {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!("--{name}: expected true or false, got {v:?}")),
    }
}

impl Flags {
    /// Parses `args` (without the program name).
    pub fn parse(spec: &Spec, args: impl IntoIterator<Item = String>) -> Result<Flags, String> {
        let mut values = BTreeMap::new();
        let mut args = args.into_iter().peekable();
        while let Some(arg) = args.next() {
            let Some(body) = arg.strip_prefix("--") else {
                return Err(format!("unexpected argument {arg:?} (flags look like --name=value)"));
            };
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (body.to_string(), None),
            };
            let value = if spec.bools.contains(&name.as_str()) {
                match inline {
                    Some(v) => v,
                    // `--use_tls true` / `--use_tls false`, or a bare `--use_tls`.
                    None => match args.peek().map(String::as_str) {
                        Some(v @ ("true" | "false")) => {
                            let v = v.to_string();
                            args.next();
                            v
                        }
                        _ => "true".to_string(),
                    },
                }
            } else if spec.values.contains(&name.as_str()) {
                match inline {
                    Some(v) => v,
                    None => args.next().ok_or_else(|| format!("--{name} needs a value"))?,
                }
            } else {
                return Err(format!("unknown flag --{name}"));
            };
            if spec.bools.contains(&name.as_str()) {
                parse_bool(&name, &value)?;
            }
            values.insert(name, value);
        }
        Ok(Flags { values })
    }

    /// A value flag, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// A boolean flag (false when absent).
    pub fn bool(&self, name: &str) -> bool {
        self.values.get(name).is_some_and(|v| parse_bool(name, v).unwrap_or(false))
    }

    /// A port number flag.
    pub fn port(&self, name: &str) -> Result<Option<u16>, String> {
        self.get(name)
            .map(|v| v.parse().map_err(|_| format!("--{name}: not a port number: {v:?}")))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: Spec = Spec {
        values: &["port", "test_case"],
        bools: &["use_tls", "use_test_ca"],
    };

    fn parse(args: &[&str]) -> Result<Flags, String> {
        Flags::parse(&SPEC, args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn both_spellings() {
        let f = parse(&["--port=8080", "--test_case", "large_unary", "--use_tls=true", "--use_test_ca", "false"]).unwrap();
        assert_eq!(f.port("port").unwrap(), Some(8080));
        assert_eq!(f.get("test_case"), Some("large_unary"));
        assert!(f.bool("use_tls"));
        assert!(!f.bool("use_test_ca"));
    }

    #[test]
    fn bare_booleans_and_errors() {
        let f = parse(&["--use_tls", "--port", "1"]).unwrap();
        assert!(f.bool("use_tls"));
        assert_eq!(f.port("port").unwrap(), Some(1));
        assert!(parse(&["--nope=1"]).is_err());
        assert!(parse(&["--port"]).is_err());
        assert!(parse(&["--use_tls=maybe"]).is_err());
        assert!(parse(&["stray"]).is_err());
        assert!(parse(&["--port=x"]).unwrap().port("port").is_err());
    }
}

//! Executor labels and the selectors jobs place with.
//!
//! Keys and values follow the original system's rule: 1 to 63 characters of letters, digits, `-` and `.`,
//! starting and ending with a letter or digit. A selector is validated once, when it enters the system, and its
//! regex is compiled then; matching never fails afterwards.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::text::{bounded, quote};

/// An executor's labels, one value per key, in key order.
pub type Labels = BTreeMap<String, String>;

/// The longest label key or value.
pub const LABEL_MAX_LEN: usize = 63;
/// The longest selector regex, in bytes.
pub const REGEX_MAX_LEN: usize = 256;
/// The most labels one executor may carry.
pub const LABELS_MAX: usize = 64;
/// The most selectors one job or task may carry.
pub const SELECTORS_MAX: usize = 32;
/// The compiled-size limit of a selector regex (bytes of the regex crate's program).
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// The most bytes of the regex crate's explanation a message keeps (it quotes the pattern, which may be long).
const REASON_MAX: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum LabelError {
    #[error("label {what} {} is not valid: use 1 to 63 letters, digits, '-' and '.', starting and ending with a letter or digit", quote(.value))]
    Invalid { what: &'static str, value: String },
    #[error("{count} labels given; at most {max} are allowed")]
    TooMany { count: usize, max: usize },
    #[error("{count} selectors given; at most {max} are allowed")]
    TooManySelectors { count: usize, max: usize },
    #[error("selector on {} has no operator: use = (equal), != (not equal) or ~ (regex)", quote(.key))]
    NoOperator { key: String },
    #[error("selector regex {} on {} is not valid: {}", quote(.pattern), quote(.key), bounded(.reason, REASON_MAX))]
    BadRegex { key: String, pattern: String, reason: String },
    #[error("selector {} is not valid: write key=value, key!=value or key~regex", quote(.text))]
    Syntax { text: String },
}

fn valid_label_part(s: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_alphanumeric();
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= LABEL_MAX_LEN
        && alnum(bytes[0])
        && alnum(bytes[bytes.len() - 1])
        && bytes.iter().all(|&b| alnum(b) || b == b'-' || b == b'.')
}

/// Checks one label key.
pub fn validate_key(key: &str) -> Result<(), LabelError> {
    if valid_label_part(key) {
        Ok(())
    } else {
        Err(LabelError::Invalid { what: "key", value: key.to_owned() })
    }
}

/// Checks one label value.
pub fn validate_value(value: &str) -> Result<(), LabelError> {
    if valid_label_part(value) {
        Ok(())
    } else {
        Err(LabelError::Invalid { what: "value", value: value.to_owned() })
    }
}

/// Checks a whole label set.
pub fn validate_labels(labels: &Labels) -> Result<(), LabelError> {
    if labels.len() > LABELS_MAX {
        return Err(LabelError::TooMany { count: labels.len(), max: LABELS_MAX });
    }
    for (k, v) in labels {
        validate_key(k)?;
        validate_value(v)?;
    }
    Ok(())
}

/// Parses `key=value`, the command-line form of a label.
pub fn parse_label(text: &str) -> Result<(String, String), LabelError> {
    let (k, v) = text.split_once('=').ok_or_else(|| LabelError::Syntax { text: text.to_owned() })?;
    validate_key(k)?;
    validate_value(v)?;
    Ok((k.to_owned(), v.to_owned()))
}

/// How a selector matches a label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SelectorOp {
    /// The label is present with exactly this value.
    Eq,
    /// The label is absent or has another value.
    Neq,
    /// The label is present and its value matches the regex somewhere (unanchored).
    Regex,
}

/// A validated label selector. Cheap to clone (the compiled regex is shared).
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "SelectorSpec", into = "SelectorSpec")]
pub struct Selector {
    spec: SelectorSpec,
    regex: Option<regex::Regex>,
}

/// A selector as data: what travels and is stored.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SelectorSpec {
    pub key: String,
    pub op: SelectorOp,
    pub target: String,
}

impl Selector {
    pub fn new(key: &str, op: SelectorOp, target: &str) -> Result<Selector, LabelError> {
        validate_key(key)?;
        let regex = match op {
            SelectorOp::Eq | SelectorOp::Neq => {
                validate_value(target)?;
                None
            }
            SelectorOp::Regex => {
                let bad =
                    |reason: String| LabelError::BadRegex { key: key.to_owned(), pattern: target.to_owned(), reason };
                if target.len() > REGEX_MAX_LEN {
                    return Err(bad(format!("longer than {REGEX_MAX_LEN} bytes")));
                }
                let re = regex::RegexBuilder::new(target)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| bad(e.to_string().lines().last().unwrap_or("invalid").trim().to_owned()))?;
                Some(re)
            }
        };
        Ok(Selector { spec: SelectorSpec { key: key.to_owned(), op, target: target.to_owned() }, regex })
    }

    /// Parses the command-line forms `key=value`, `key!=value` and `key~regex`.
    pub fn parse(text: &str) -> Result<Selector, LabelError> {
        let syntax = || LabelError::Syntax { text: text.to_owned() };
        // The first operator character decides; keys cannot contain '!', '=' or '~'.
        let pos = text.find(['=', '!', '~']).ok_or_else(syntax)?;
        let (key, rest) = text.split_at(pos);
        if key.is_empty() {
            return Err(syntax());
        }
        if let Some(v) = rest.strip_prefix("!=") {
            Selector::new(key, SelectorOp::Neq, v)
        } else if let Some(v) = rest.strip_prefix('=') {
            Selector::new(key, SelectorOp::Eq, v)
        } else if let Some(v) = rest.strip_prefix('~') {
            Selector::new(key, SelectorOp::Regex, v)
        } else {
            Err(syntax())
        }
    }

    pub fn key(&self) -> &str {
        &self.spec.key
    }

    pub fn op(&self) -> SelectorOp {
        self.spec.op
    }

    pub fn target(&self) -> &str {
        &self.spec.target
    }

    pub fn spec(&self) -> &SelectorSpec {
        &self.spec
    }

    /// Whether an executor with these labels satisfies the selector.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matches_value(labels.get(&self.spec.key).map(String::as_str))
    }

    /// Whether a label value (`None`: the label is absent) satisfies the selector.
    pub fn matches_value(&self, value: Option<&str>) -> bool {
        match (self.spec.op, value) {
            (SelectorOp::Eq, Some(v)) => v == self.spec.target,
            (SelectorOp::Eq, None) => false,
            (SelectorOp::Neq, Some(v)) => v != self.spec.target,
            (SelectorOp::Neq, None) => true,
            (SelectorOp::Regex, Some(v)) => self.regex.as_ref().is_some_and(|re| re.is_match(v)),
            (SelectorOp::Regex, None) => false,
        }
    }
}

/// Checks the number of selectors a job or task carries.
pub fn validate_selectors(selectors: &[Selector]) -> Result<(), LabelError> {
    if selectors.len() > SELECTORS_MAX {
        return Err(LabelError::TooManySelectors { count: selectors.len(), max: SELECTORS_MAX });
    }
    Ok(())
}

impl TryFrom<SelectorSpec> for Selector {
    type Error = LabelError;
    fn try_from(spec: SelectorSpec) -> Result<Selector, LabelError> {
        Selector::new(&spec.key, spec.op, &spec.target)
    }
}

impl From<Selector> for SelectorSpec {
    fn from(s: Selector) -> SelectorSpec {
        s.spec
    }
}

impl PartialEq for Selector {
    fn eq(&self, other: &Selector) -> bool {
        self.spec == other.spec
    }
}

impl Eq for Selector {}

impl fmt::Debug for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Selector({self})")
    }
}

impl fmt::Display for Selector {
    /// The command-line form: `key=value`, `key!=value`, `key~regex`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.spec.op {
            SelectorOp::Eq => "=",
            SelectorOp::Neq => "!=",
            SelectorOp::Regex => "~",
        };
        write!(f, "{}{}{}", self.spec.key, op, self.spec.target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn label_parts() {
        for ok in ["a", "zone-1", "a.b", "A9", &"x".repeat(63)] {
            assert!(validate_key(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "a_b", "a b", "é", &"x".repeat(64)] {
            assert!(validate_key(bad).is_err(), "{bad}");
            assert!(validate_value(bad).is_err(), "{bad}");
        }
        let many: Labels = (0..65).map(|i| (format!("k{i}"), "v".to_string())).collect();
        assert_eq!(validate_labels(&many), Err(LabelError::TooMany { count: 65, max: 64 }));
    }

    #[test]
    fn selector_matching_table() {
        let l = labels(&[("zone", "east-1"), ("disk", "ssd")]);
        // (selector, matches l?)
        let table = [
            ("zone=east-1", true),
            ("zone=west", false),
            ("gpu=yes", false),
            ("zone!=west", true),
            ("zone!=east-1", false),
            ("gpu!=yes", true),
            ("zone~east", true),
            ("zone~^east-[0-9]$", true),
            ("zone~^west", false),
            ("gpu~.*", false),
        ];
        for (text, want) in table {
            let s = Selector::parse(text).unwrap();
            assert_eq!(s.matches(&l), want, "{text}");
            assert_eq!(s.to_string(), text);
        }
    }

    #[test]
    fn selector_parse_errors() {
        // (input, expected error kind)
        assert!(matches!(Selector::parse("zone"), Err(LabelError::Syntax { .. })));
        assert!(matches!(Selector::parse("=x"), Err(LabelError::Syntax { .. })));
        assert!(matches!(Selector::parse("zone!x"), Err(LabelError::Syntax { .. })));
        assert!(matches!(Selector::parse("zone=bad value"), Err(LabelError::Invalid { what: "value", .. })));
        assert!(matches!(Selector::parse("bad_key=x"), Err(LabelError::Invalid { what: "key", .. })));
        let e = Selector::parse("zone~(").unwrap_err();
        assert!(matches!(e, LabelError::BadRegex { .. }), "{e}");
        assert!(e.to_string().contains("zone"), "{e}");
        let long = format!("zone~{}", "a".repeat(REGEX_MAX_LEN + 1));
        assert!(matches!(Selector::parse(&long), Err(LabelError::BadRegex { .. })));
    }

    #[test]
    fn selectors_round_trip_through_serde_and_are_revalidated() {
        let s = Selector::parse("zone~^e").unwrap();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#"{"key":"zone","op":"regex","target":"^e"}"#);
        let back: Selector = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        assert!(back.matches(&labels(&[("zone", "east")])));
        assert!(serde_json::from_str::<Selector>(r#"{"key":"zone","op":"regex","target":"("}"#).is_err());
    }

    #[test]
    fn parse_label_forms() {
        assert_eq!(parse_label("a=b").unwrap(), ("a".into(), "b".into()));
        assert!(parse_label("a").is_err());
        assert!(parse_label("a=").is_err());
    }
}

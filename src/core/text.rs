//! How messages show what they were given: a refusal names the input it refuses, but never all of it, so that a
//! message stays short whatever arrives (a 100 KB job id must not come back as a 100 KB status, which a client
//! cannot even read).
//!
//! Invariant: [`quote`] is at most about [`QUOTE_CHARS_MAX`] escaped characters plus the input's length, and
//! [`bounded`] never returns more than the bytes it is allowed.

use std::borrow::Cow;

/// The most characters of an input a message quotes.
pub const QUOTE_CHARS_MAX: usize = 64;

/// `input` as a message shows it: in quotes, escaped (`"a\nb"`); past [`QUOTE_CHARS_MAX`] characters only the
/// first ones and the input's size: `"aaaa…"…(100000 bytes)`.
pub fn quote(input: &str) -> String {
    match input.char_indices().nth(QUOTE_CHARS_MAX) {
        None => format!("{input:?}"),
        Some((cut, _)) => format!("{:?}…({} bytes)", &input[..cut], input.len()),
    }
}

/// `text` cut to at most `max` bytes at a character boundary; a cut text ends with `…(N bytes in all)`.
pub fn bounded(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let suffix = format!("…({} bytes in all)", text.len());
    let mut cut = max.saturating_sub(suffix.len());
    while cut > 0 && !text.is_char_boundary(cut) {
        cut -= 1;
    }
    if suffix.len() > max {
        // Not even the suffix fits: as much of the text as fits.
        let mut end = max;
        while end > 0 && !text.is_char_boundary(end) {
            end -= 1;
        }
        return Cow::Owned(text[..end].to_owned());
    }
    Cow::Owned(format!("{}{suffix}", &text[..cut]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_short_whatever_the_input() {
        // (input, quoted)
        let table: &[(&str, &str)] = &[("a b", "\"a b\""), ("", "\"\""), ("a\nb", "\"a\\nb\"")];
        for (input, want) in table {
            assert_eq!(quote(input), *want);
        }
        let long = "x".repeat(100_000);
        assert_eq!(quote(&long), format!("\"{}\"…(100000 bytes)", "x".repeat(QUOTE_CHARS_MAX)));
        let exactly = "y".repeat(QUOTE_CHARS_MAX);
        assert_eq!(quote(&exactly), format!("\"{exactly}\""));
        let wide = "é".repeat(1000);
        assert_eq!(quote(&wide), format!("\"{}\"…(2000 bytes)", "é".repeat(QUOTE_CHARS_MAX)));
    }

    #[test]
    fn bounded_texts_fit_and_cut_at_characters() {
        assert_eq!(bounded("short", 10), "short");
        let wide = "é".repeat(1000);
        let cut = bounded(&wide, 100);
        assert!(cut.len() <= 100, "{cut}");
        assert!(cut.ends_with("…(2000 bytes in all)"), "{cut}");
        assert!(cut.starts_with("éé"));
        assert_eq!(bounded("abcdefgh", 3), "abc");
        for max in 0..40 {
            assert!(bounded(&"ü".repeat(50), max).len() <= max, "{max}");
        }
    }
}

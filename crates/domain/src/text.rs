//! FHIR strings "SHALL NOT contain Unicode character points below 32, except for u0009
//! (horizontal tab), u000D (carriage return) and u000A (line feed)"
//! (http://hl7.org/fhir/R4/datatypes.html#string). The same holds for search values, which are
//! compared with such strings; a NUL would also be refused by PostgreSQL's text type.

/// The first character a FHIR string may not hold, if any.
pub fn forbidden_char(text: &str) -> Option<char> {
    text.chars().find(|&c| c < ' ' && !matches!(c, '\t' | '\r' | '\n'))
}

/// How an issue names a forbidden character: `U+0000`.
pub fn describe(c: char) -> String {
    format!("U+{:04X}", u32::from(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tab_carriage_return_and_line_feed_are_allowed_below_space() {
        assert_eq!(forbidden_char("plain text, ünïcode ✓"), None);
        assert_eq!(forbidden_char("tab\tcr\rlf\n"), None);
        assert_eq!(forbidden_char("nul\0"), Some('\0'));
        assert_eq!(forbidden_char("bell\u{7}"), Some('\u{7}'));
        assert_eq!(forbidden_char("esc\u{1b}[0m"), Some('\u{1b}'));
        assert_eq!(describe('\0'), "U+0000");
    }
}

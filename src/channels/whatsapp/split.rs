//! Splitting a long reply into WhatsApp-sized messages (a text body is at most 4096
//! characters), cutting where a reader would: between paragraphs, else between lines, else after
//! a sentence, else between words, and only as a last resort inside a word.
//!
//! Written here rather than taken from `text-splitter`: that crate brings ICU segmentation data
//! and several proc-macro crates for what is, for chat replies, a short greedy loop.

/// Characters of a text message WhatsApp accepts.
pub const MAX_TEXT_CHARS: usize = 4096;

/// Splits `text` into parts of at most `limit` characters (Unicode scalar values), each trimmed
/// of the whitespace at the cut. Text within `limit` comes back as one part; empty or blank text
/// as none. A `limit` of 0 is treated as 1.
pub fn split_message(text: &str, limit: usize) -> Vec<String> {
    let limit = limit.max(1);
    let mut parts = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        // The byte offset just past the first `limit` characters, if there are more.
        let Some((window_end, _)) = rest.char_indices().nth(limit) else {
            parts.push(rest.to_owned());
            break;
        };
        let cut = best_cut(rest, window_end);
        let (head, tail) = rest.split_at(cut);
        let head = head.trim_end();
        if !head.is_empty() {
            parts.push(head.to_owned());
        }
        rest = tail.trim_start();
    }
    parts
}

/// Where to end the next part: a byte offset in `1..=window_end`, on a character boundary.
fn best_cut(text: &str, window_end: usize) -> usize {
    // Look a few characters past the window so that a separator starting right at its end (the
    // window is then a clean part) is seen; no cut may go past `window_end`.
    let lookahead = text[window_end..]
        .char_indices()
        .nth(4)
        .map_or(text.len(), |(i, _)| window_end + i);
    let view = &text[..lookahead];
    last_break(view, window_end, &["\n\n", "\r\n\r\n"])
        .or_else(|| last_break(view, window_end, &["\n"]))
        .or_else(|| last_sentence_end(view, window_end))
        .or_else(|| last_whitespace(view, window_end))
        .unwrap_or_else(|| hard_cut(text, window_end))
}

fn last_break(view: &str, max: usize, separators: &[&str]) -> Option<usize> {
    separators
        .iter()
        .filter_map(|sep| {
            view.rmatch_indices(sep)
                .map(|(i, _)| i)
                .find(|&i| i > 0 && i <= max)
        })
        .max()
}

/// Just after the last `.`, `!`, `?` or `…` that is followed by whitespace, or after CJK
/// full-width sentence punctuation, which needs none.
fn last_sentence_end(view: &str, max: usize) -> Option<usize> {
    let mut next: Option<char> = None;
    for (i, c) in view.char_indices().rev() {
        let end = i + c.len_utf8();
        let ends_sentence = (matches!(c, '.' | '!' | '?' | '…')
            && next.is_some_and(char::is_whitespace))
            || (matches!(c, '。' | '！' | '？') && next.is_some());
        if ends_sentence && end <= max {
            return Some(end);
        }
        next = Some(c);
    }
    None
}

fn last_whitespace(view: &str, max: usize) -> Option<usize> {
    view.char_indices()
        .rev()
        .find(|&(i, c)| i > 0 && i <= max && c.is_whitespace())
        .map(|(i, _)| i)
}

/// Cuts inside a word, backing off so that a character and the marks that modify it (combining
/// accents, emoji modifiers and zero-width joiner sequences) stay together when possible.
fn hard_cut(text: &str, window_end: usize) -> usize {
    let mut cut = window_end;
    while cut > 0 {
        let next = text[cut..].chars().next();
        let prev = text[..cut].chars().next_back();
        let glued = next.is_some_and(joins_previous) || prev == Some('\u{200D}');
        if !glued {
            return cut;
        }
        cut -= prev.map_or(1, char::len_utf8);
    }
    // One cluster longer than the limit: cut it at the window rather than loop forever.
    window_end
}

/// Characters that belong with the character before them.
fn joins_previous(c: char) -> bool {
    matches!(c,
        '\u{0300}'..='\u{036F}'   // combining diacritical marks
        | '\u{1AB0}'..='\u{1AFF}'
        | '\u{1DC0}'..='\u{1DFF}'
        | '\u{20D0}'..='\u{20FF}'
        | '\u{FE00}'..='\u{FE0F}' // variation selectors
        | '\u{FE20}'..='\u{FE2F}'
        | '\u{200D}'              // zero-width joiner
        | '\u{1F3FB}'..='\u{1F3FF}' // skin tone modifiers
        | '\u{E0020}'..='\u{E007F}' // tag characters (flag sequences)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(s: &str) -> usize {
        s.chars().count()
    }

    fn assert_within(parts: &[String], limit: usize) {
        for p in parts {
            assert!(chars(p) <= limit, "part of {} chars: {p:?}", chars(p));
            assert!(!p.is_empty());
        }
    }

    /// Everything but whitespace survives, in order.
    fn assert_lossless(text: &str, parts: &[String]) {
        let squash = |s: &str| s.split_whitespace().collect::<String>();
        assert_eq!(squash(&parts.concat()), squash(text));
    }

    #[test]
    fn a_short_reply_is_one_part_unchanged() {
        assert_eq!(split_message("Hello there!", 4096), vec!["Hello there!"]);
    }

    #[test]
    fn blank_text_gives_no_parts() {
        assert!(split_message("  \n\n ", 10).is_empty());
    }

    #[test]
    fn text_of_exactly_the_limit_is_one_part() {
        let text = "a".repeat(4096);
        assert_eq!(split_message(&text, MAX_TEXT_CHARS), vec![text]);
    }

    #[test]
    fn paragraphs_are_kept_whole_when_they_fit() {
        let text = "First paragraph here.\n\nSecond one, a bit longer.\n\nThird.";
        let parts = split_message(text, 50);
        assert_eq!(
            parts,
            vec![
                "First paragraph here.\n\nSecond one, a bit longer.",
                "Third."
            ]
        );
    }

    #[test]
    fn a_long_paragraph_is_split_after_a_sentence() {
        let text = "One sentence here. Another sentence there. And a third one.";
        let parts = split_message(text, 45);
        assert_eq!(
            parts,
            vec![
                "One sentence here. Another sentence there.",
                "And a third one."
            ]
        );
    }

    #[test]
    fn without_sentences_it_splits_between_words() {
        let text = "alpha beta gamma delta epsilon";
        let parts = split_message(text, 12);
        assert_eq!(parts, vec!["alpha beta", "gamma delta", "epsilon"]);
    }

    #[test]
    fn a_word_longer_than_the_limit_is_cut_inside() {
        let parts = split_message("abcdefghij", 4);
        assert_eq!(parts, vec!["abcd", "efgh", "ij"]);
    }

    #[test]
    fn multibyte_text_is_cut_on_character_boundaries_and_counted_in_characters() {
        let text = "é".repeat(10) + " " + &"日本語".repeat(5);
        let parts = split_message(&text, 7);
        assert_within(&parts, 7);
        assert_lossless(&text, &parts);
    }

    #[test]
    fn an_emoji_with_a_skin_tone_is_not_separated_from_its_modifier() {
        // 👍🏽 is two scalars; a cut between them would show two odd glyphs.
        let text = "👍🏽".repeat(3);
        let parts = split_message(&text, 3);
        assert_eq!(parts, vec!["👍🏽", "👍🏽", "👍🏽"]);
    }

    #[test]
    fn a_long_real_reply_fits_whatsapps_limit_and_loses_nothing() {
        let paragraph = "Our two-bedroom flats start at 250,000 euros. Each has a balcony, \
            a fitted kitchen and a parking space! Would you like to book a visit? "
            .repeat(20);
        let text = [paragraph.as_str(); 6].join("\n\n");
        assert!(chars(&text) > 3 * MAX_TEXT_CHARS);
        let parts = split_message(&text, MAX_TEXT_CHARS);
        assert!(parts.len() >= 4);
        assert_within(&parts, MAX_TEXT_CHARS);
        assert_lossless(&text, &parts);
        for p in &parts[..parts.len() - 1] {
            assert!(
                p.ends_with('.') || p.ends_with('!') || p.ends_with('?'),
                "part ends mid-sentence: ...{:?}",
                &p[p.len() - 20..]
            );
        }
    }
}

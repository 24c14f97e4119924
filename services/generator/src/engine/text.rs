//! Generated text as it streams: deltas never split a UTF-8 character (bytes of a character
//! that spans tokens are held back until it is whole), never show the start of what may turn
//! out to be a stop string, and concatenate to exactly the final text. A sentence budget ends
//! the text after its n-th complete sentence (see [`sentences_end`]).

/// The text state of one sequence.
#[derive(Debug, Default)]
pub struct TextStream {
    stop: Vec<String>,
    /// Sentences after which the text ends; 0: no limit.
    max_sentences: usize,
    emitted: usize,
}

/// What a new token changed.
#[derive(Debug, PartialEq)]
pub struct Update {
    /// Text to send now (may be empty).
    pub delta: String,
    /// Set when a stop string appeared: the final text (cut before it).
    pub stopped: Option<String>,
}

impl TextStream {
    /// A stream that ends at any of `stop`, or after `max_sentences` sentences (0: no limit).
    pub fn new(stop: Vec<String>, max_sentences: usize) -> Self {
        Self { stop: stop.into_iter().filter(|s| !s.is_empty()).collect(), max_sentences, emitted: 0 }
    }

    /// Takes the full decoded text so far and returns what may be sent.
    pub fn update(&mut self, text: &str) -> Update {
        let budget = (self.max_sentences > 0).then(|| sentences_end(text, self.max_sentences)).flatten();
        if let Some(at) = [self.first_stop(text), budget].into_iter().flatten().min() {
            let end = at.max(self.emitted);
            let delta = text[self.emitted..end].to_string();
            self.emitted = end;
            return Update { delta, stopped: Some(text[..end].to_string()) };
        }
        // Hold back an unfinished character (decoded as U+FFFD) ...
        let mut safe = text.trim_end_matches('\u{FFFD}').len();
        // ... and any tail that is the start of a stop string.
        let held = self
            .stop
            .iter()
            .flat_map(|s| s.char_indices().skip(1).map(move |(k, _)| &s[..k]))
            .filter(|prefix| text[..safe].ends_with(prefix))
            .map(str::len)
            .max()
            .unwrap_or(0);
        safe -= held;
        let safe = safe.max(self.emitted);
        let delta = text[self.emitted..safe].to_string();
        self.emitted = safe;
        Update { delta, stopped: None }
    }

    /// The rest of the text when generation ends for another reason.
    pub fn finish(&mut self, text: &str) -> String {
        let delta = text.get(self.emitted..).unwrap_or_default().to_string();
        self.emitted = text.len();
        delta
    }

    fn first_stop(&self, text: &str) -> Option<usize> {
        // A stop string can only newly appear near the end; search from a little before what
        // was already sent.
        let longest = self.stop.iter().map(String::len).max()?;
        let mut from = self.emitted.saturating_sub(longest);
        while !text.is_char_boundary(from) {
            from -= 1;
        }
        self.stop.iter().filter_map(|s| text[from..].find(s.as_str()).map(|i| from + i)).min()
    }
}

/// Words after which a full stop does not end a sentence.
const ABBREVIATIONS: &[&str] = &["mr", "mrs", "ms", "dr", "prof", "st", "vs", "etc", "e.g", "i.e", "no", "jr", "sr", "inc", "ltd", "co", "mt", "ft", "approx", "fig"];

/// The byte offset just past the `n`-th complete sentence of `text` (n >= 1), if it has that
/// many: a sentence ends at `.`, `!` or `?` (with any closing quotes or brackets) followed by
/// white space, or at a blank line; a full stop after a known abbreviation, a single letter
/// (an initial) or between digits does not end one. The last sentence counts only once the
/// white space after it is there, so a stream never ends mid-number ("3.5").
pub fn sentences_end(text: &str, n: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut count = 0;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let end = if c == b'\n' && bytes.get(i + 1) == Some(&b'\n') && !text[..i].trim().is_empty() {
            Some(i)
        } else if matches!(c, b'.' | b'!' | b'?') {
            let mut j = i + 1;
            while j < bytes.len() && matches!(bytes[j], b'.' | b'!' | b'?' | b'"' | b'\'' | b')' | b']') {
                j += 1;
            }
            let closed = bytes.get(j).is_some_and(u8::is_ascii_whitespace);
            (closed && (c != b'.' || !abbreviation(&text[..i]))).then_some(j)
        } else {
            None
        };
        if let Some(at) = end {
            count += 1;
            if count == n {
                return Some(at);
            }
            i = at.max(i + 1);
            continue;
        }
        i += 1;
    }
    None
}

/// Whether the word `before` ends with is an abbreviation or an initial.
fn abbreviation(before: &str) -> bool {
    let word = before.rsplit(|c: char| c.is_whitespace() || c == '(').next().unwrap_or("");
    let lower = word.to_lowercase();
    (word.chars().count() == 1 && word.chars().all(char::is_uppercase)) || ABBREVIATIONS.contains(&lower.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_end_after_the_budget_and_not_at_abbreviations_or_numbers() {
        let text = "It opened in 1987. Mr. J. Smith paid 3.5 million! Then it closed. More";
        assert_eq!(sentences_end(text, 1), Some(18));
        assert_eq!(&text[..sentences_end(text, 2).unwrap()], "It opened in 1987. Mr. J. Smith paid 3.5 million!");
        assert_eq!(sentences_end(text, 4), None);
        // Not yet known to be over: the next character may be a digit.
        assert_eq!(sentences_end("It cost 3.", 1), None);
        assert_eq!(sentences_end("A list:\n\nB", 1), Some(7));
    }

    #[test]
    fn a_sentence_budget_ends_the_stream() {
        let mut t = TextStream::new(vec![], 1);
        assert_eq!(t.update("In 1987.").delta, "In 1987.");
        let u = t.update("In 1987. It");
        assert_eq!(u.stopped.as_deref(), Some("In 1987."));
    }

    #[test]
    fn holds_back_split_characters() {
        let mut t = TextStream::new(vec![], 0);
        assert_eq!(t.update("caf").delta, "caf");
        assert_eq!(t.update("caf\u{FFFD}").delta, "");
        assert_eq!(t.update("café!").delta, "é!");
        assert_eq!(t.finish("café!"), "");
    }

    #[test]
    fn stop_strings_are_cut_and_never_partly_sent() {
        let mut t = TextStream::new(vec!["\nUser:".into()], 0);
        assert_eq!(t.update("Hello").delta, "Hello");
        assert_eq!(t.update("Hello\nUs").delta, "");
        let u = t.update("Hello\nUser: hi");
        assert_eq!(u, Update { delta: String::new(), stopped: Some("Hello".into()) });
        // A tail that turned out not to be a stop string is released.
        let mut t = TextStream::new(vec!["END".into()], 0);
        assert_eq!(t.update("aE").delta, "a");
        assert_eq!(t.update("aEN").delta, "");
        assert_eq!(t.update("aENx").delta, "ENx");
    }

    #[test]
    fn deltas_concatenate_to_the_final_text() {
        let mut t = TextStream::new(vec!["##".into()], 0);
        let mut sent = String::new();
        for text in ["a", "a#", "a#b", "a#b\u{FFFD}", "a#bü", "a#bü#", "a#bü##c"] {
            let u = t.update(text);
            sent += &u.delta;
            if let Some(final_text) = u.stopped {
                assert_eq!(sent, final_text);
                assert_eq!(final_text, "a#bü");
                return;
            }
        }
        panic!("stop string not seen");
    }
}

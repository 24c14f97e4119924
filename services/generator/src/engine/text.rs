//! Generated text as it streams: deltas never split a UTF-8 character (bytes of a character
//! that spans tokens are held back until it is whole), never show the start of what may turn
//! out to be a stop string, and concatenate to exactly the final text.

/// The text state of one sequence.
#[derive(Debug, Default)]
pub struct TextStream {
    stop: Vec<String>,
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
    /// A stream that ends at any of `stop`.
    pub fn new(stop: Vec<String>) -> Self {
        Self { stop: stop.into_iter().filter(|s| !s.is_empty()).collect(), emitted: 0 }
    }

    /// Takes the full decoded text so far and returns what may be sent.
    pub fn update(&mut self, text: &str) -> Update {
        if let Some(at) = self.first_stop(text) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_back_split_characters() {
        let mut t = TextStream::new(vec![]);
        assert_eq!(t.update("caf").delta, "caf");
        assert_eq!(t.update("caf\u{FFFD}").delta, "");
        assert_eq!(t.update("café!").delta, "é!");
        assert_eq!(t.finish("café!"), "");
    }

    #[test]
    fn stop_strings_are_cut_and_never_partly_sent() {
        let mut t = TextStream::new(vec!["\nUser:".into()]);
        assert_eq!(t.update("Hello").delta, "Hello");
        assert_eq!(t.update("Hello\nUs").delta, "");
        let u = t.update("Hello\nUser: hi");
        assert_eq!(u, Update { delta: String::new(), stopped: Some("Hello".into()) });
        // A tail that turned out not to be a stop string is released.
        let mut t = TextStream::new(vec!["END".into()]);
        assert_eq!(t.update("aE").delta, "a");
        assert_eq!(t.update("aEN").delta, "");
        assert_eq!(t.update("aENx").delta, "ENx");
    }

    #[test]
    fn deltas_concatenate_to_the_final_text() {
        let mut t = TextStream::new(vec!["##".into()]);
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

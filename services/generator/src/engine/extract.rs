//! Extractive answers: decoding constrained to spans of the memories' tokens. Every position
//! of every memory is a possible start; after each token only the positions whose memory
//! continues with that token stay live, so the next token must be one of their next tokens,
//! or EOS (allowed after any token). The answer is then a verbatim span of a memory, whose
//! character offsets come from the tokens' byte offsets.

use std::collections::HashSet;
use std::sync::Arc;

use memgpt_models::text::tokenizer::TextTokenizer;

/// A memory's tokens as they stand in the prompt, with the byte range of its text each covers.
#[derive(Debug, Clone)]
pub struct MemoryTokens {
    /// The memory's text.
    pub text: String,
    /// The tokens of its text (the segment's leading blank line left out).
    pub tokens: Vec<u32>,
    /// Byte range `[start, end)` of `text` of each token.
    pub offsets: Vec<(usize, usize)>,
    /// Per token: a quote should not start there (see [`Self::guide`]); empty: none marked.
    pub avoided: Vec<bool>,
    /// Per token: it opens a new clause (`,` `;` `:` or a sentence's end before white space, or
    /// ` (`), so a quote ends before it (see [`Self::guide`]); empty: none marked.
    pub breaks: Vec<bool>,
}

impl MemoryTokens {
    /// Whether a span may start at token `p`: it begins a word (a quote never starts inside
    /// one).
    fn starts_word(&self, p: usize) -> bool {
        let (s, e) = self.offsets[p];
        s == 0 || self.text[s..e.max(s)].starts_with(char::is_whitespace) || !self.text[..s].ends_with(char::is_alphanumeric)
    }

    /// Guides quotes by `question`. A quote should not start at a word the question itself uses
    /// (letters and digits, case aside), since an answer is what the question does not already
    /// say and a small model likes to start by repeating its subject; nor at a word that only
    /// leads into a phrase ([`LEADS`]: "In July 1973", "While experimenting"); nor outside the
    /// sentence that shares the most of the question's words (its function words aside, each
    /// word weighed by how few of the memory's sentences hold it), where the answer to a
    /// reading question nearly always stands. And it ends at a clause's end: a
    /// short answer is a phrase, and a small model runs on to the end of the sentence.
    pub fn guide(&mut self, question: &str) {
        let asked: HashSet<String> = words(question).collect();
        let content: HashSet<&String> = asked.iter().filter(|w| !FUNCTION_WORDS.contains(&w.as_str())).collect();
        let mut bounds = Vec::new();
        while let Some(end) = super::text::sentences_end(&self.text, bounds.len() + 1) {
            bounds.push(end);
        }
        let sentence_of = |byte: usize| bounds.iter().filter(|&&end| end <= byte).count();
        let mut shared = vec![HashSet::new(); bounds.len() + 1];
        let mut from = 0;
        for (i, sentence) in shared.iter_mut().enumerate() {
            let to = bounds.get(i).copied().unwrap_or(self.text.len());
            sentence.extend(words(&self.text[from..to]).filter(|w| content.contains(w)));
            from = to;
        }
        // Each shared word weighs by how few of the sentences hold it (inverse document
        // frequency within the memory): the passage's own subject, in every sentence, says
        // little of which one answers.
        let held_by = |w: &String| shared.iter().filter(|s| s.contains(w)).count() as f32;
        let n = shared.len() as f32;
        let weight = |sentence: &HashSet<String>| sentence.iter().map(|w| (1.0 + n / held_by(w)).ln()).sum::<f32>();
        let best = shared
            .iter()
            .enumerate()
            .map(|(i, words)| (i, weight(words), words.len()))
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
            .map(|(i, _, len)| (i, len));
        self.avoided = (0..self.tokens.len())
            .map(|p| {
                // From the token's first character that is not white space.
                let from = floor_boundary(&self.text, self.offsets[p].0);
                let rest = self.text[from..].trim_start();
                let outside = best.is_some_and(|(b, n)| n > 0 && sentence_of(self.text.len() - rest.len()) != b);
                let word = words(rest).next().filter(|_| self.starts_word(p));
                outside || word.is_some_and(|w| asked.contains(&w) || LEADS.contains(&w.as_str()))
            })
            .collect();
        self.breaks = (0..self.tokens.len()).map(|p| self.opens_clause(p)).collect();
    }

    /// Whether token `p` opens a clause: it begins with `,` `;` `:` `.` `!` or `?` followed by
    /// white space or the end (not "1,000" or "3.5"), or it is ` (`.
    fn opens_clause(&self, p: usize) -> bool {
        let (s, e) = (floor_boundary(&self.text, self.offsets[p].0), ceil_boundary(&self.text, self.offsets[p].1));
        let token = &self.text[s..e.max(s)];
        let spaced = token.starts_with(char::is_whitespace);
        let mut rest = self.text[s..].trim_start().chars();
        match rest.next() {
            Some('(') => spaced,
            Some(',' | ';' | ':' | '.' | '!' | '?') => rest.next().is_none_or(char::is_whitespace),
            _ => false,
        }
    }

    /// Whether a span may end after token `p`: it ends a word.
    fn ends_word(&self, p: usize) -> bool {
        let e = self.offsets[p].1;
        e >= self.text.len() || !self.text[e..].starts_with(char::is_alphanumeric)
    }
}

/// Words of a question that say nothing of what it asks about.
const FUNCTION_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "been", "by", "did", "do", "does", "for", "from", "had", "has", "have", "how",
    "in", "into", "is", "it", "its", "of", "on", "or", "that", "the", "their", "there", "these", "this", "those", "to", "was",
    "were", "what", "when", "where", "which", "who", "whom", "whose", "why", "with",
];

/// Words that lead into a phrase rather than being the answer (prepositions, conjunctions,
/// words that open a clause): a small model likes to start a quote at a sentence's first word.
const LEADS: &[&str] = &[
    "about", "after", "against", "also", "although", "among", "and", "as", "at", "because", "before", "between", "both", "but",
    "by", "during", "for", "from", "if", "in", "into", "is", "it", "its", "of", "on", "or", "over", "since", "so", "such",
    "than", "that", "their", "then", "there", "these", "they", "this", "those", "though", "through", "to", "under", "upon",
    "was", "were", "when", "where", "which", "while", "who", "with", "within", "without",
];

/// The words of `text`: runs of letters and digits, lower-cased.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase)
}

/// What the constraint needs of the vocabulary, found once per tokenizer.
#[derive(Debug, Default)]
pub struct QuoteTokens {
    /// Tokens that end the answer: EOS, and every token that starts with the quotation mark
    /// closing the lead-in ([`crate::prompt::QUOTE_LEAD`]).
    pub ends: Vec<u32>,
    /// Per token: an answer may not start with it (an article, or no letter or digit at all:
    /// SQuAD's scoring leaves articles out, and a small model likes to start at "The").
    pub no_start: Vec<bool>,
}

impl QuoteTokens {
    /// Scans the vocabulary of `tokenizer` (tens of milliseconds).
    pub fn new(tokenizer: &TextTokenizer) -> Self {
        let mut ends = tokenizer.eos.clone();
        let mut no_start = Vec::with_capacity(tokenizer.vocab_size());
        for t in 0..tokenizer.vocab_size() as u32 {
            let text = tokenizer.decode(&[t]).unwrap_or_default();
            if text.starts_with('"') {
                ends.push(t);
            }
            let word = text.trim().to_lowercase();
            no_start.push(matches!(word.as_str(), "the" | "a" | "an") || !word.chars().any(char::is_alphanumeric));
        }
        Self { ends, no_start }
    }
}

/// The span an answer quotes: memory index and character offsets in its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub memory: usize,
    pub start: usize,
    pub end: usize,
}

/// The constraint of one sequence.
#[derive(Debug)]
pub struct Extract {
    memories: Vec<MemoryTokens>,
    vocab: Arc<QuoteTokens>,
    /// (memory, position of the next token) of every span the answer so far matches.
    live: Vec<(usize, usize)>,
    /// Tokens of the answer so far.
    len: usize,
}

impl Extract {
    /// A constraint over `memories`, ending at any of `ends`.
    pub fn new(memories: Vec<MemoryTokens>, vocab: Arc<QuoteTokens>) -> Self {
        let live = memories.iter().enumerate().flat_map(|(m, mem)| (0..mem.tokens.len()).map(move |p| (m, p))).collect();
        Self { memories, vocab, live, len: 0 }
    }

    /// Before the first token: the answer may start only in the memory with the highest of
    /// `shares` (the attention the last prompt token pays each memory). The model still
    /// chooses where in it the span starts and where it ends; what it no longer does is
    /// start a quote in a passage the question does not attend to, which a small model does
    /// by the prior of a passage's first word.
    pub fn focus(&mut self, shares: &[f32]) {
        if self.len > 0 {
            return;
        }
        let Some(top) = shares.iter().enumerate().take(self.memories.len()).max_by(|a, b| a.1.total_cmp(b.1)).map(|(m, _)| m) else { return };
        if self.memories[top].tokens.is_empty() {
            return;
        }
        self.live.retain(|&(m, _)| m == top);
    }

    /// Whether `token` ends the answer (it is not part of the span).
    pub fn ends(&self, token: u32) -> bool {
        self.vocab.ends.contains(&token)
    }

    /// Sets every logit the constraint does not allow to -inf.
    pub fn mask(&self, logits: &mut [f32]) {
        let mut allowed = self.allowed(logits.len(), true);
        if !allowed.contains(&true) {
            // Every way on is avoided: one of them, rather than none.
            allowed = self.allowed(logits.len(), false);
        }
        for (l, a) in logits.iter_mut().zip(allowed) {
            if !a {
                *l = f32::NEG_INFINITY;
            }
        }
    }

    /// The tokens that continue a live span (at the first token: that may start one), and the
    /// ends where the answer may end; with `avoid`, not where [`MemoryTokens::guide`] says
    /// not to start or go on.
    fn allowed(&self, vocab: usize, avoid: bool) -> Vec<bool> {
        let mut allowed = vec![false; vocab];
        for &(m, p) in &self.live {
            let mem = &self.memories[m];
            if let Some(&t) = mem.tokens.get(p) {
                let marked = |marks: &[bool]| avoid && marks.get(p).copied().unwrap_or(false);
                let barred = if self.len == 0 {
                    self.vocab.no_start.get(t as usize).copied().unwrap_or(false) || !mem.starts_word(p) || marked(&mem.avoided)
                } else {
                    marked(&mem.breaks)
                };
                if let Some(a) = allowed.get_mut(t as usize).filter(|_| !barred) {
                    *a = true;
                }
            }
        }
        if self.complete().is_some() {
            for &t in &self.vocab.ends {
                if let Some(a) = allowed.get_mut(t as usize) {
                    *a = true;
                }
            }
        }
        allowed
    }

    /// Takes the token chosen (one the mask allowed; an end leaves the spans as they are).
    pub fn advance(&mut self, token: u32) {
        if self.ends(token) {
            return;
        }
        let memories = &self.memories;
        self.live.retain_mut(|(m, p)| {
            let hit = memories[*m].tokens.get(*p) == Some(&token);
            *p += 1;
            hit
        });
        self.len += 1;
    }

    /// Whether no span can be continued (every live span reached its memory's end): the
    /// answer is complete.
    pub fn exhausted(&self) -> bool {
        self.len > 0 && self.live.iter().all(|&(m, p)| p >= self.memories[m].tokens.len())
    }

    /// The first live span (in request order) that ends a word, if any.
    fn complete(&self) -> Option<(usize, usize)> {
        if self.len == 0 {
            return None;
        }
        self.live.iter().copied().find(|&(m, p)| self.memories[m].ends_word(p - 1))
    }

    /// The span the answer quotes (the first memory, in request order, that holds it whole
    /// words, else the first that holds it), with leading and trailing white space left out;
    /// None before the first token.
    pub fn span(&self) -> Option<Span> {
        let (m, end) = self.complete().or_else(|| self.live.first().copied().filter(|_| self.len > 0))?;
        let mem = &self.memories[m];
        let (from, to) = (mem.offsets[end - self.len].0, mem.offsets[end - 1].1);
        let (from, to) = (floor_boundary(&mem.text, from), ceil_boundary(&mem.text, to));
        let quoted = &mem.text[from..to];
        let from = from + (quoted.len() - quoted.trim_start().len());
        let to = to - (quoted.len() - quoted.trim_end().len());
        let to = to.max(from);
        let start = mem.text[..from].chars().count();
        Some(Span { memory: m, start, end: start + mem.text[from..to].chars().count() })
    }

    /// The text of `span`.
    pub fn quoted(&self, span: Span) -> String {
        self.memories[span.memory].text.chars().skip(span.start).take(span.end - span.start).collect()
    }
}

fn floor_boundary(text: &str, mut i: usize) -> usize {
    i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_boundary(text: &str, mut i: usize) -> usize {
    i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Words as tokens, as byte-level BPE makes them (the space before a word is its
    /// token's): token id = index in `vocab`.
    fn memory(text: &str, vocab: &mut Vec<String>) -> MemoryTokens {
        let (mut tokens, mut offsets, mut at) = (Vec::new(), Vec::new(), 0);
        for (i, word) in text.split(' ').enumerate() {
            let w = if i == 0 { word.to_string() } else { format!(" {word}") };
            let id = vocab.iter().position(|v| *v == w).unwrap_or_else(|| {
                vocab.push(w.clone());
                vocab.len() - 1
            });
            tokens.push(id as u32);
            offsets.push((at, at + w.len()));
            at += w.len();
        }
        MemoryTokens { text: text.into(), tokens, offsets, avoided: Vec::new(), breaks: Vec::new() }
    }

    #[test]
    fn only_continuations_of_a_span_and_eos_after_the_first_token() {
        let mut vocab = Vec::new();
        let a = memory("the light was built in 1987", &mut vocab);
        let b = memory("the bakery opened in 1990", &mut vocab);
        let eos = 100u32;
        let mut x = Extract::new(vec![a.clone(), b], Arc::new(QuoteTokens { ends: vec![eos], no_start: Vec::new() }));
        let mut logits = vec![0.0f32; 101];
        x.mask(&mut logits);
        assert!(logits[eos as usize].is_infinite(), "EOS is not an empty answer");
        let the = a.tokens[0];
        x.advance(the);
        let mut logits = vec![0.0f32; 101];
        x.mask(&mut logits);
        let open: Vec<usize> = (0..101).filter(|&t| logits[t].is_finite()).collect();
        // "the" continues with "light" or "bakery", or the answer ends.
        assert_eq!(open, vec![a.tokens[1] as usize, vocab.iter().position(|v| v == " bakery").unwrap(), eos as usize]);
        x.advance(a.tokens[1]);
        let span = x.span().unwrap();
        assert_eq!((span.memory, span.start, span.end), (0, 0, 9));
        assert_eq!(x.quoted(span), "the light");
        assert!(!x.exhausted());
    }

    #[test]
    fn a_focused_answer_starts_only_in_the_most_attended_memory() {
        let mut vocab = Vec::new();
        let a = memory("the light was built in 1987", &mut vocab);
        let b = memory("the bakery opened in 1990", &mut vocab);
        let mut x = Extract::new(vec![a.clone(), b.clone()], Arc::new(QuoteTokens { ends: vec![100], no_start: Vec::new() }));
        x.focus(&[0.2, 0.5]);
        let mut logits = vec![0.0f32; 101];
        x.mask(&mut logits);
        let open: Vec<u32> = (0..101).filter(|&t| logits[t as usize].is_finite()).collect();
        let mut want = b.tokens.clone();
        want.sort_unstable();
        want.dedup();
        assert_eq!(open, want, "only the second memory's tokens may start the answer");
        // " in" is in both; the span it starts is the second memory's.
        x.advance(b.tokens[3]);
        x.advance(b.tokens[4]);
        assert_eq!(x.quoted(x.span().unwrap()), "in 1990");
    }

    #[test]
    fn offsets_are_characters_and_the_end_of_a_memory_exhausts_it() {
        let mut vocab = Vec::new();
        let m = memory("café à 1987", &mut vocab);
        let mut x = Extract::new(vec![m.clone()], Arc::new(QuoteTokens { ends: vec![99], no_start: Vec::new() }));
        x.advance(m.tokens[1]);
        x.advance(m.tokens[2]);
        let span = x.span().unwrap();
        assert_eq!((span.start, span.end), (5, 11));
        assert_eq!(x.quoted(span), "à 1987");
        assert!(x.exhausted());
    }

    #[test]
    fn a_span_starts_and_ends_at_words_and_never_at_an_article() {
        // "from Kourou" as the tokens " from", " Kour", "ou"; "the" may not start it.
        let text = "the rocket left from Kourou";
        let offsets = vec![(0, 3), (3, 10), (10, 15), (15, 20), (20, 25), (25, 27)];
        let m = MemoryTokens { text: text.into(), tokens: vec![0, 1, 2, 3, 4, 5], offsets, avoided: Vec::new(), breaks: Vec::new() };
        let no_start = (0..10).map(|t| t == 0).collect();
        let mut x = Extract::new(vec![m], Arc::new(QuoteTokens { ends: vec![9], no_start }));
        let open = |x: &Extract| {
            let mut logits = vec![0.0f32; 10];
            x.mask(&mut logits);
            (0..10).filter(|&t| logits[t].is_finite()).collect::<Vec<_>>()
        };
        // Not "the", not "ou" (inside a word), no end yet.
        assert_eq!(open(&x), vec![1, 2, 3, 4]);
        x.advance(4);
        // After " Kour" the word goes on: only "ou", no end.
        assert_eq!(open(&x), vec![5]);
        x.advance(5);
        assert_eq!(open(&x), vec![9]);
        let span = x.span().unwrap();
        assert_eq!(x.quoted(span), "Kourou");
    }

    #[test]
    fn a_quote_starts_in_the_sentence_closest_to_the_question_not_at_its_words_unless_nothing_else_is_left() {
        let mut vocab = Vec::new();
        let mut a = memory("The bakery opened in 1990. Kourou launched the rocket in 1987. It rained.", &mut vocab);
        a.guide("When was the rocket launched from Kourou?");
        let mut b = memory("the rocket", &mut vocab);
        b.guide("the rocket?");
        let starts = |x: &Extract| {
            let mut logits = vec![0.0f32; 100];
            x.mask(&mut logits);
            let mut open: Vec<String> = (0..100u32).filter(|&t| logits[t as usize].is_finite()).map(|t| vocab[t as usize].trim().to_string()).collect();
            open.sort();
            open
        };
        let x = Extract::new(vec![a], Arc::new(QuoteTokens { ends: vec![99], no_start: Vec::new() }));
        assert_eq!(starts(&x), ["1987."], "the second sentence, less Kourou, launched, the and rocket (the question's) and in (a lead)");
        let x = Extract::new(vec![b], Arc::new(QuoteTokens { ends: vec![99], no_start: Vec::new() }));
        assert_eq!(starts(&x), ["rocket", "the"], "only the question's words left: they may start it");
    }

    #[test]
    fn a_guided_quote_ends_before_a_clause_opens() {
        // "From Italy, it spread (in 1348)." as tokens.
        let text = "From Italy, it spread (in 1348).";
        let offsets = vec![(0, 4), (4, 10), (10, 11), (11, 14), (14, 21), (21, 23), (23, 25), (25, 30), (30, 32)];
        let mut m = MemoryTokens { text: text.into(), tokens: (0..9).collect(), offsets, avoided: Vec::new(), breaks: Vec::new() };
        m.guide("Where did it spread from?");
        assert_eq!(m.breaks, [false, false, true, false, false, true, false, false, false], "`,` and ` (` open clauses, `).` ends the text");
        let open = |x: &Extract| {
            let mut logits = vec![0.0f32; 10];
            x.mask(&mut logits);
            (0..10).filter(|&t| logits[t].is_finite()).collect::<Vec<_>>()
        };
        // Punctuation never starts a quote.
        let no_start = (0..10).map(|t| matches!(t, 2 | 5 | 8)).collect();
        let quote = Arc::new(QuoteTokens { ends: vec![9], no_start });
        let mut x = Extract::new(vec![m.clone()], Arc::clone(&quote));
        assert_eq!(open(&x), [1, 7], "Italy or 1348: not From, it or spread (the question's) nor in (a lead)");
        x.advance(1);
        assert_eq!(open(&x), [9], "after Italy only the end: the comma opens a clause");
        assert_eq!(x.quoted(x.span().unwrap()), "Italy");
        let mut x = Extract::new(vec![m], quote);
        x.advance(7);
        assert_eq!(open(&x), [8, 9], "`).` closes, it opens nothing");
    }
}

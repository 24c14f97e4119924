//! HTML: the page's main text (html5gum's tokenizer). Scripts, styles, navigation, headers,
//! footers, asides and forms are dropped; where the page marks its main content (`<main>`,
//! `<article>`) only that is kept. The `<title>` becomes the document's
//! `title`, and each heading starts a section carrying its heading path.

use html5gum::{DefaultEmitter, Token, Tokenizer};

use super::{tidy, Section};

/// Elements whose content is never text of the page.
const SKIP: &[&str] = &[
    "script", "style", "noscript", "template", "nav", "header", "footer", "aside", "svg", "iframe", "form", "button", "select", "canvas", "object", "head",
];
/// Elements that break lines.
const BLOCK: &[&str] = &[
    "p", "div", "br", "li", "tr", "section", "article", "main", "blockquote", "pre", "table", "ul", "ol", "dl", "dt", "dd", "figure", "figcaption", "hr", "body",
];

fn tokens(html: &str) -> Vec<Token> {
    let mut emitter = DefaultEmitter::default();
    // Script and style content is raw text, not markup.
    emitter.naively_switch_states(true);
    Tokenizer::new_with_emitter(html, emitter).flatten().collect()
}

fn name(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_ascii_lowercase()
}

fn heading_level(name: &str) -> Option<usize> {
    match name.as_bytes() {
        [b'h', d @ b'1'..=b'6'] => Some((d - b'0') as usize),
        _ => None,
    }
}

fn is_main(tag: &html5gum::StartTag<()>) -> bool {
    let n = name(&tag.name);
    n == "main" || n == "article"
}

/// Sections being built: the current one's text and the heading path over it.
#[derive(Default)]
struct Sections {
    done: Vec<Section>,
    text: String,
    path: Vec<(usize, String)>,
}

impl Sections {
    fn flush(&mut self) {
        let text = tidy(&std::mem::take(&mut self.text));
        // A heading straight followed by a deeper one has no text of its own.
        let heading_only = self.path.last().is_some_and(|(_, h)| *h == text);
        if !text.is_empty() && !heading_only {
            let mut metadata = Vec::new();
            if !self.path.is_empty() {
                metadata.push(("heading".into(), self.path.iter().map(|(_, h)| h.as_str()).collect::<Vec<_>>().join(" > ")));
            }
            self.done.push(Section { text, metadata });
        }
    }

    fn heading(&mut self, level: usize, text: String) {
        self.flush();
        while self.path.last().is_some_and(|(l, _)| *l >= level) {
            self.path.pop();
        }
        self.text = format!("{text}\n");
        self.path.push((level, text));
    }
}

pub(super) fn extract(html: &str) -> (Vec<Section>, Vec<(String, String)>) {
    let tokens = tokens(html);
    let scoped = tokens.iter().any(|t| matches!(t, Token::StartTag(tag) if is_main(tag)));
    let (mut skip, mut main_depth, mut in_title) = (0usize, 0usize, false);
    let mut title = String::new();
    let mut heading: Option<(usize, String)> = None;
    let mut out = Sections::default();
    for token in &tokens {
        match token {
            Token::StartTag(tag) => {
                let n = name(&tag.name);
                if n == "title" {
                    in_title = true;
                } else if SKIP.contains(&n.as_str()) && !tag.self_closing {
                    skip += 1;
                } else if scoped && is_main(tag) {
                    main_depth += 1;
                }
                if let Some(level) = heading_level(&n) {
                    heading = Some((level, String::new()));
                } else if BLOCK.contains(&n.as_str()) {
                    out.text.push('\n');
                }
            }
            Token::EndTag(tag) => {
                let n = name(&tag.name);
                if n == "title" {
                    in_title = false;
                } else if SKIP.contains(&n.as_str()) {
                    skip = skip.saturating_sub(1);
                } else if scoped && (n == "main" || n == "article") {
                    main_depth = main_depth.saturating_sub(1);
                }
                if heading_level(&n).is_some() {
                    if let Some((level, text)) = heading.take() {
                        let text = tidy(&text).replace('\n', " ");
                        if !text.is_empty() {
                            out.heading(level, text);
                        }
                    }
                } else if BLOCK.contains(&n.as_str()) {
                    out.text.push('\n');
                }
            }
            Token::String(s) => {
                let s = String::from_utf8_lossy(s);
                if in_title {
                    title.push_str(&s);
                } else if skip == 0 && (!scoped || main_depth > 0) {
                    match &mut heading {
                        Some((_, h)) => h.push_str(&s),
                        None => out.text.push_str(&s),
                    }
                }
            }
            _ => {}
        }
    }
    out.flush();
    let title = tidy(&title).replace('\n', " ");
    let metadata = if title.is_empty() { Vec::new() } else { vec![("title".to_string(), title)] };
    (out.done, metadata)
}

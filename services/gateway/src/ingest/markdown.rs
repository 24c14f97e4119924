//! Markdown (pulldown-cmark): plain text, one section per heading, each carrying its heading
//! path (`Install > Linux`) and starting with the heading's own line. Front matter, inline
//! HTML and images' URLs are not text.

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

use super::{tidy, Section};

pub(super) fn extract(markdown: &str) -> Vec<Section> {
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_YAML_STYLE_METADATA_BLOCKS | Options::ENABLE_TASKLISTS;
    let mut done = Vec::new();
    let mut path: Vec<(usize, String)> = Vec::new();
    let mut text = String::new();
    let mut heading: Option<(usize, String)> = None;
    let mut metadata_block = false;
    let flush = |text: &mut String, path: &[(usize, String)], done: &mut Vec<Section>| {
        let body = tidy(&std::mem::take(text));
        // A heading straight followed by a deeper one has no text of its own.
        let heading_only = path.last().is_some_and(|(_, h)| *h == body);
        if !body.is_empty() && !heading_only {
            let metadata = if path.is_empty() { Vec::new() } else { vec![("heading".to_string(), path.iter().map(|(_, h)| h.as_str()).collect::<Vec<_>>().join(" > "))] };
            done.push(Section { text: body, metadata });
        }
    };
    for event in Parser::new_ext(markdown, options) {
        let sink = match &mut heading {
            Some((_, h)) => h,
            None => &mut text,
        };
        match event {
            Event::Start(Tag::Heading { level, .. }) => heading = Some((level as usize, String::new())),
            Event::End(TagEnd::Heading(_)) => {
                if let Some((level, h)) = heading.take() {
                    let h = tidy(&h).replace('\n', " ");
                    flush(&mut text, &path, &mut done);
                    while path.last().is_some_and(|(l, _)| *l >= level) {
                        path.pop();
                    }
                    text = format!("{h}\n");
                    path.push((level, h));
                }
            }
            Event::Start(Tag::MetadataBlock(_)) => metadata_block = true,
            Event::End(TagEnd::MetadataBlock(_)) => metadata_block = false,
            Event::Start(Tag::Item) => sink.push_str("\n- "),
            Event::Start(Tag::Paragraph | Tag::CodeBlock(_) | Tag::BlockQuote(_) | Tag::Table(_) | Tag::TableRow | Tag::TableHead) => sink.push('\n'),
            Event::End(TagEnd::Paragraph | TagEnd::CodeBlock | TagEnd::BlockQuote(_) | TagEnd::Table | TagEnd::List(_)) => sink.push_str("\n\n"),
            Event::End(TagEnd::TableRow | TagEnd::TableHead) => sink.push('\n'),
            Event::End(TagEnd::TableCell) => sink.push_str(" | "),
            Event::Text(t) | Event::Code(t) if !metadata_block => sink.push_str(&t),
            Event::SoftBreak => sink.push(' '),
            Event::HardBreak => sink.push('\n'),
            _ => {}
        }
    }
    flush(&mut text, &path, &mut done);
    done
}

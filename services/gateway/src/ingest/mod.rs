//! Documents in the formats knowledge bases are kept in, read into sections of plain text
//! before chunking: PDF (the text layer, a section per page), HTML (the main text without
//! scripts, styles and navigation; title and headings), Markdown (a section per heading,
//! carrying its heading path) and plain text.
//!
//! The format comes from the media type when one is given, else from the content (`%PDF-`,
//! an HTML root). A document that cannot be read (not a PDF after all, encrypted, no text)
//! fails alone: [`extract`] says why and the request's other documents are stored.

mod html;
mod markdown;
mod pdf;

/// The formats a document may be given in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Plain text (UTF-8).
    Text,
    /// CommonMark / GitHub Markdown.
    Markdown,
    /// HTML or XHTML.
    Html,
    /// PDF with a text layer.
    Pdf,
}

impl Format {
    /// The name stored in each chunk's `format` metadata.
    pub fn name(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Markdown => "markdown",
            Self::Html => "html",
            Self::Pdf => "pdf",
        }
    }
}

/// The media types accepted, and their formats.
pub const MEDIA_TYPES: &[(&str, Format)] = &[
    ("text/plain", Format::Text),
    ("text/markdown", Format::Markdown),
    ("text/x-markdown", Format::Markdown),
    ("text/html", Format::Html),
    ("application/xhtml+xml", Format::Html),
    ("application/pdf", Format::Pdf),
];

/// The format a media type names (parameters such as `; charset=utf-8` aside; case does not
/// matter); `None` when it is not one of [`MEDIA_TYPES`].
pub fn media_type(media_type: &str) -> Option<Format> {
    let essence = media_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    MEDIA_TYPES.iter().find(|(m, _)| *m == essence).map(|(_, f)| *f)
}

/// The format of a file name's extension (what `memgpt remember` sends as the media type).
pub fn extension(ext: &str) -> Option<&'static str> {
    match ext.to_ascii_lowercase().as_str() {
        "pdf" => Some("application/pdf"),
        "html" | "htm" | "xhtml" => Some("text/html"),
        "md" | "markdown" | "mdown" | "mkd" => Some("text/markdown"),
        "txt" | "text" => Some("text/plain"),
        _ => None,
    }
}

/// The format of content given without a media type.
pub fn sniff(content: &[u8]) -> Format {
    let head = &content[..content.len().min(1024)];
    let start = head.iter().position(|b| !b.is_ascii_whitespace()).map_or(&[][..], |i| &head[i..]);
    let lower = String::from_utf8_lossy(&start[..start.len().min(64)]).to_ascii_lowercase();
    if start.starts_with(b"%PDF-") {
        Format::Pdf
    } else if lower.starts_with("<!doctype html") || lower.starts_with("<html") || (lower.starts_with("<?xml") && String::from_utf8_lossy(head).contains("<html")) {
        Format::Html
    } else {
        Format::Text
    }
}

/// A run of a document's text, and the metadata its chunks carry (`page`, `heading`).
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    /// Plain text.
    pub text: String,
    /// Metadata of every chunk cut from it.
    pub metadata: Vec<(String, String)>,
}

/// A document read: its sections and the metadata of the whole (`format`, `title`, `pages`).
#[derive(Debug, Clone, PartialEq)]
pub struct Extracted {
    /// In reading order.
    pub sections: Vec<Section>,
    /// Added to every chunk's metadata.
    pub metadata: Vec<(String, String)>,
}

impl Extracted {
    /// The bytes of text in all sections.
    pub fn text_bytes(&self) -> usize {
        self.sections.iter().map(|s| s.text.len()).sum()
    }
}

fn utf8(content: &[u8], format: Format) -> Result<&str, String> {
    std::str::from_utf8(content).map_err(|e| format!("not UTF-8 {} (invalid byte at offset {})", format.name(), e.valid_up_to()))
}

/// Reads a document's content in `format`. Errors say what is wrong with the document; they
/// are the document's, not the request's.
pub fn extract(content: &[u8], format: Format) -> Result<Extracted, String> {
    let (sections, mut metadata) = match format {
        Format::Pdf => pdf::extract(content)?,
        Format::Html => html::extract(utf8(content, format)?),
        Format::Markdown => (markdown::extract(utf8(content, format)?), Vec::new()),
        Format::Text => (vec![Section { text: utf8(content, format)?.to_string(), metadata: Vec::new() }], Vec::new()),
    };
    let sections: Vec<Section> = sections.into_iter().filter(|s| !s.text.trim().is_empty()).collect();
    if sections.is_empty() {
        return Err(match format {
            Format::Pdf => "the PDF has no text layer (a scanned document?): nothing to remember".into(),
            _ => format!("the {} document holds no text: nothing to remember", format.name()),
        });
    }
    metadata.push(("format".into(), format.name().into()));
    Ok(Extracted { sections, metadata })
}

/// The sections of a Remember document: its `content` read in its format, or its `text` (as
/// given, unless its media type names another format). Text over `max_text_bytes` fails.
pub fn read(doc: &memgpt_proto::gateway::v1::Document, max_text_bytes: usize) -> Result<Extracted, String> {
    let format = match (media_type(&doc.media_type), doc.content.is_empty()) {
        (Some(f), _) => f,
        (None, true) => Format::Text,
        (None, false) => sniff(&doc.content),
    };
    let extracted = match (doc.content.is_empty(), format) {
        (true, Format::Text) => Extracted { sections: vec![Section { text: doc.text.clone(), metadata: Vec::new() }], metadata: Vec::new() },
        (true, f) => extract(doc.text.as_bytes(), f)?,
        (false, f) => extract(&doc.content, f)?,
    };
    let bytes = extracted.text_bytes();
    if bytes > max_text_bytes {
        return Err(format!("its text is {bytes} bytes, over the limit of {max_text_bytes}"));
    }
    Ok(extracted)
}

/// Whitespace runs collapsed to one space, lines kept (blank-line runs to one blank line).
pub(crate) fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.lines() {
        // Control characters (a PDF's text layer has them) are spaces.
        let line = line.split(|c: char| c.is_whitespace() || c.is_control()).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ");
        if line.is_empty() {
            blank += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        out.push_str(&line);
    }
    out
}

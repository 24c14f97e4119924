//! PDF: the text layer of each page (lopdf), one section per page with its `page` number
//! (1-based). Encrypted documents that open without a password are read; others are refused.

use super::{tidy, Section};

/// Most decompressed bytes of one page's content streams (a small file may not inflate
/// without bound).
const MAX_PAGE_CONTENT: usize = 64 * 1024 * 1024;

pub(super) fn extract(content: &[u8]) -> Result<(Vec<Section>, Vec<(String, String)>), String> {
    if !content.starts_with(b"%PDF-") && !content.get(..1024).unwrap_or(content).windows(5).any(|w| w == b"%PDF-") {
        return Err("not a PDF (no `%PDF-` header)".into());
    }
    let doc = lopdf::Document::load_mem(content).map_err(|e| match e {
        lopdf::Error::Decryption(_) | lopdf::Error::InvalidPassword | lopdf::Error::UnsupportedSecurityHandler(_) => {
            format!("the PDF is encrypted and cannot be read without its password ({e})")
        }
        e => format!("unreadable PDF: {e}"),
    })?;
    if doc.is_encrypted() {
        return Err("the PDF is encrypted and cannot be read without its password".into());
    }
    let pages = doc.get_pages();
    let mut sections = Vec::with_capacity(pages.len());
    for &number in pages.keys() {
        let text = doc.extract_text_with_limit(&[number], MAX_PAGE_CONTENT).map_err(|e| format!("page {number}: unreadable text: {e}"))?;
        sections.push(Section { text: tidy(&text), metadata: vec![("page".into(), number.to_string())] });
    }
    let mut metadata = vec![("pages".to_string(), pages.len().to_string())];
    if let Some(title) = info_title(&doc) {
        metadata.push(("title".into(), title));
    }
    Ok((sections, metadata))
}

/// The document information dictionary's `/Title`, when it is text.
fn info_title(doc: &lopdf::Document) -> Option<String> {
    let info = doc.trailer.get(b"Info").ok()?;
    let info = match info {
        lopdf::Object::Reference(id) => doc.get_dictionary(*id).ok()?,
        lopdf::Object::Dictionary(d) => d,
        _ => return None,
    };
    let title = lopdf::decode_text_string(info.get(b"Title").ok()?).ok()?;
    let title = tidy(&title);
    (!title.is_empty()).then_some(title)
}
